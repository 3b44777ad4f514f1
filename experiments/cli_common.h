#pragma once
// Flags every config-driven subcommand shares, and how they resolve into one Config.
#include "experiments/config.h"

#include <cxxopts.hpp>

#include <string>
#include <vector>

namespace robustlab {

/// Adds --config, --set, --device, --threads, --seed, --quiet, --dump-config, --help.
void addConfigOptions(cxxopts::Options& opts);

/// Parses argv; prints help and returns false when --help was given.
bool parseOrHelp(cxxopts::Options& opts, int argc, char** argv, cxxopts::ParseResult& out);

/// The resolved config: defaults, the --config file, --set overrides, then the shorthand flags.
Config resolveConfig(const cxxopts::ParseResult& args);

/// Prints the config and returns true when --dump-config was given.
bool maybeDumpConfig(const cxxopts::ParseResult& args, const Config& c);

/// Splits "a,b,c".
std::vector<std::string> splitList(const std::string& s);

/// The command line, for storing with results.
std::string commandLine(int argc, char** argv);

}  // namespace robustlab
