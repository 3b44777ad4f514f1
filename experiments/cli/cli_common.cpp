#include "experiments/cli/cli_common.h"

#include "experiments/plan/executor.h"
#include "framework/runtime/progress.h"
#include "framework/toml/toml_reader.h"

#include <toml++/toml.h>

#include <cctype>
#include <cmath>
#include <iostream>
#include <sstream>
#include <stdexcept>

namespace robustlab {

void addConfigOptions(cxxopts::Options& opts) {
  opts.add_options()
      ("c,config", "TOML config file (default: the embedded default experiment)", cxxopts::value<std::string>()->default_value(""))
      ("set", "override a config key, e.g. --set train.epochs=3 (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("device", "auto | cpu | cuda (overrides config)", cxxopts::value<std::string>())
      ("threads", "intra-op CPU threads, 0 = measured default (overrides config)", cxxopts::value<int64_t>())
      ("seed", "master seed (overrides config)", cxxopts::value<int64_t>())
      ("q,quiet", "no progress output")
      ("dump-config", "print the resolved config and exit")
      ("h,help", "show this help");
}

bool parseOrHelp(cxxopts::Options& opts, int argc, char** argv, cxxopts::ParseResult& out) {
  try {
    out = opts.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw std::invalid_argument(std::string(e.what()) + " (see " + opts.program() + " --help)");
  }
  if (out.count("help")) {
    std::cout << opts.help() << std::endl;
    return false;
  }
  if (out.count("quiet")) Progress::setQuiet(true);
  return true;
}

Config resolveConfig(const cxxopts::ParseResult& args, const ConfigBase& base, const std::vector<std::string>& extra) {
  std::vector<std::string> sets;
  if (args.count("set")) sets = args["set"].as<std::vector<std::string>>();
  if (args.count("device"))
    sets.push_back(overrideFrom("--device " + args["device"].as<std::string>(), "device=" + tomlQuoted(args["device"].as<std::string>())));
  if (args.count("threads"))
    sets.push_back(overrideFrom("--threads " + std::to_string(args["threads"].as<int64_t>()), "threads=" + std::to_string(args["threads"].as<int64_t>())));
  if (args.count("seed")) sets.push_back(overrideFrom("--seed " + std::to_string(args["seed"].as<int64_t>()), "seed=" + std::to_string(args["seed"].as<int64_t>())));
  sets.insert(sets.end(), extra.begin(), extra.end());
  std::string path = args["config"].as<std::string>();
  if (args.count("positional")) {
    const auto& pos = args["positional"].as<std::vector<std::string>>();
    if (pos.size() > 1 || (!path.empty() && !pos.empty())) throw std::invalid_argument("give one config file, either as --config or as the argument");
    if (!pos.empty()) path = pos.front();
  }
  if (base.text.empty()) return loadConfig(path, sets);
  return loadConfigOver(base.text, base.what, path, sets);
}

std::string tomlQuoted(const std::string& s) {
  std::ostringstream os;
  os << toml::value<std::string>(s);
  return os.str();
}

bool maybeDumpConfig(const cxxopts::ParseResult& args, const Config& c) {
  if (!args.count("dump-config")) return false;
  std::cout << c.toToml();
  return true;
}

void addSlurmOptions(cxxopts::Options& opts) {
  opts.add_options()
      ("partition", "slurm: partition", cxxopts::value<std::string>()->default_value(""))
      ("time", "slurm: time limit per task", cxxopts::value<std::string>()->default_value("01:00:00"))
      ("cpus", "slurm: CPUs per task (and its threads)", cxxopts::value<int>()->default_value("1"))
      ("mem", "slurm: memory per task, e.g. 4G", cxxopts::value<std::string>()->default_value(""))
      ("gpus", "slurm: GPUs per task (runs with --device cuda)", cxxopts::value<int>()->default_value("0"))
      ("sbatch-line", "slurm: an extra #SBATCH line (repeatable)", cxxopts::value<std::vector<std::string>>());
}

int ntasksPerUnitFrom(const cxxopts::ParseResult& args) {
  const int n = args["ntasks-per-unit"].as<int>();
  if (n < 1 || n > 4096) throw std::invalid_argument("--ntasks-per-unit: must be in 1..4096, got " + std::to_string(n));
  return n;
}

SlurmOptions slurmOptionsFrom(const cxxopts::ParseResult& args) {
  SlurmOptions o;
  o.partition = args["partition"].as<std::string>();
  o.time = args["time"].as<std::string>();
  o.cpus = args["cpus"].as<int>();
  o.mem = args["mem"].as<std::string>();
  o.gpus = args["gpus"].as<int>();
  if (o.cpus < 1 || o.cpus > 4096) throw std::invalid_argument("--cpus: must be in 1..4096, got " + std::to_string(o.cpus));
  if (o.gpus < 0 || o.gpus > 64) throw std::invalid_argument("--gpus: must be in 0..64, got " + std::to_string(o.gpus));
  // These land in #SBATCH lines: plain words only (a newline would start a shell line on the node).
  auto word = [](const std::string& flag, const std::string& v) {
    for (char ch : v)
      if (!(std::isalnum(static_cast<unsigned char>(ch)) || std::string("._:-,=+").find(ch) != std::string::npos))
        throw std::invalid_argument(flag + ": '" + v + "' holds a character that is not allowed (letters, digits and . _ : - , = + only)");
  };
  word("--partition", o.partition);
  word("--time", o.time);
  word("--mem", o.mem);
  if (args.count("sbatch-line")) o.extraLines = args["sbatch-line"].as<std::vector<std::string>>();
  for (const auto& line : o.extraLines)
    for (char ch : line)
      if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f)
        throw std::invalid_argument("--sbatch-line: a control character (a newline, say) is not allowed in an #SBATCH line");
  return o;
}

std::vector<std::string> splitList(const std::string& s, const std::string& flag) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) throw std::invalid_argument(flag + ": empty item in '" + s + "' (expected a comma-separated list)");
    out.push_back(item);
  }
  if (out.empty() || s.back() == ',') throw std::invalid_argument(flag + ": '" + s + "' is not a comma-separated list");
  return out;
}

double parseNumber(const std::string& text, const std::string& flag) {
  const auto v = numberFromText(text);
  if (!v) throw std::invalid_argument(flag + ": '" + text + "' is not a number (expected e.g. 0.1 or 8/255)");
  return *v;
}

std::string commandLine(int argc, char** argv) {
  // argv[0] is the subcommand (main passes argv + 1): "robustlab attack --model m.pt ...", each word
  // quoted for a POSIX shell when it holds anything but plain characters, so it reruns as stored.
  std::string s = "robustlab";
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    const bool plain = !a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,/:@%") == std::string::npos;
    s += " " + (plain ? a : shellQuote(a));
  }
  return s;
}

}  // namespace robustlab
