#pragma once
// Flags every config-driven subcommand shares, and how they resolve into one Config.
#include "experiments/plan/executor.h"
#include "framework/config/config.h"

// --set values are TOML and may hold commas ("attack.eps=[0, 0.1]"): a repeated flag, not a comma,
// separates the items of a list option.
#define CXXOPTS_VECTOR_DELIMITER '\0'
#include <cxxopts.hpp>

#include <string>
#include <vector>

namespace robustlab {

/// Adds --config, --set, --device, --threads, --seed, --quiet, --dump-config, --help.
void addConfigOptions(cxxopts::Options& opts);

/// Parses argv; prints help and returns false when --help was given.
bool parseOrHelp(cxxopts::Options& opts, int argc, char** argv, cxxopts::ParseResult& out);

/// Where a command's config starts before --config: the embedded default (empty text), or a stored
/// config (a checkpoint's), named `what` in error messages.
struct ConfigBase {
  std::string text, what;
};

/// The resolved config: the base, the --config file's keys, --set overrides, the shorthand flags
/// (--device, --threads, --seed), then `extra` overrides (a command's own flags, in --set form).
Config resolveConfig(const cxxopts::ParseResult& args, const ConfigBase& base = {}, const std::vector<std::string>& extra = {});

/// A string as a TOML string literal, for building --set overrides.
std::string tomlQuoted(const std::string& s);

/// Prints the config and returns true when --dump-config was given.
bool maybeDumpConfig(const cxxopts::ParseResult& args, const Config& c);

/// Adds the Slurm flags --partition, --time, --cpus, --mem, --gpus, --sbatch-line.
void addSlurmOptions(cxxopts::Options& opts);
SlurmOptions slurmOptionsFrom(const cxxopts::ParseResult& args);
/// --ntasks-per-unit (run, sweep), checked: 1..4096.
int ntasksPerUnitFrom(const cxxopts::ParseResult& args);

/// Splits "a,b,c"; an empty item or list is an error naming `flag`.
std::vector<std::string> splitList(const std::string& s, const std::string& flag = "list");
/// The whole of `text` as a finite number, or a fraction ("8/255"); "0.1abc" is an error naming `flag`.
double parseNumber(const std::string& text, const std::string& flag);

/// The command line as run, for storing with results: "robustlab", the subcommand (argv[0], as main
/// passes it) and its arguments, each quoted for a POSIX shell where needed.
std::string commandLine(int argc, char** argv);

}  // namespace robustlab
