#include "experiments/cli_common.h"
#include "experiments/commands.h"

#include "data/hdf5_dataset.h"
#include "data/sources.h"
#include "experiments/report.h"
#include "framework/progress.h"

#include <filesystem>

#include <cstdio>
#include <iostream>
#include <sstream>

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

Config resolveConfig(const cxxopts::ParseResult& args) {
  std::vector<std::string> sets;
  if (args.count("set")) sets = args["set"].as<std::vector<std::string>>();
  if (args.count("device")) sets.push_back("device=\"" + args["device"].as<std::string>() + "\"");
  if (args.count("threads")) sets.push_back("threads=" + std::to_string(args["threads"].as<int64_t>()));
  if (args.count("seed")) sets.push_back("seed=" + std::to_string(args["seed"].as<int64_t>()));
  std::string path = args["config"].as<std::string>();
  if (args.count("positional")) {
    const auto& pos = args["positional"].as<std::vector<std::string>>();
    if (pos.size() > 1 || (!path.empty() && !pos.empty())) throw std::invalid_argument("give one config file, either as --config or as the argument");
    if (!pos.empty()) path = pos.front();
  }
  return loadConfig(path, sets);
}

bool maybeDumpConfig(const cxxopts::ParseResult& args, const Config& c) {
  if (!args.count("dump-config")) return false;
  std::cout << c.toToml();
  return true;
}

std::vector<std::string> splitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string commandLine(int argc, char** argv) {
  std::string s = "robustlab";
  for (int i = 1; i < argc; ++i) s += std::string(" ") + argv[i];
  return s;
}

int cmdReport(int argc, char** argv) {
  cxxopts::Options opts("robustlab report", "Write report.html (self-contained) and report.md with figures from an experiment's results");
  opts.positional_help("RESULTS.h5");
  opts.add_options()
      ("results", "experiment results file", cxxopts::value<std::string>())
      ("o,out", "output directory (default: <results stem>-report)", cxxopts::value<std::string>()->default_value(""))
      ("compare", "a second experiment results file shown side by side", cxxopts::value<std::string>()->default_value(""))
      ("h,help", "show this help");
  opts.parse_positional({"results"});
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  if (!args.count("results")) throw std::invalid_argument("report: give the results file, e.g. robustlab report results/default.h5");
  ReportOptions o;
  o.results = args["results"].as<std::string>();
  o.outDir = args["out"].as<std::string>();
  if (o.outDir.empty()) {
    const std::filesystem::path p(o.results);
    o.outDir = (p.parent_path() / (p.stem().string() + "-report")).string();
  }
  o.compare = args["compare"].as<std::string>();
  writeReport(o);
  std::printf("wrote %s/report.html and %s/report.md\n", o.outDir.c_str(), o.outDir.c_str());
  return 0;
}

int cmdConvert(int argc, char** argv) {
  cxxopts::Options opts("robustlab convert", "Convert an IDX dataset directory (MNIST layout) to robustlab's HDF5 dataset format");
  opts.add_options()
      ("dir", "directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]", cxxopts::value<std::string>())
      ("split", "train | test", cxxopts::value<std::string>()->default_value("train"))
      ("classes", "number of classes", cxxopts::value<int64_t>()->default_value("10"))
      ("name", "dataset name stored in the file", cxxopts::value<std::string>()->default_value(""))
      ("o,out", "output .h5 file", cxxopts::value<std::string>())
      ("h,help", "show this help");
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  if (!args.count("dir") || !args.count("out")) throw std::invalid_argument("convert: --dir and --out are required");
  Dataset ds = loadIdxDirectory(args["dir"].as<std::string>(), args["split"].as<std::string>(), args["classes"].as<int64_t>());
  if (!args["name"].as<std::string>().empty()) ds.name = args["name"].as<std::string>();
  saveHdf5Dataset(args["out"].as<std::string>(), ds);
  std::printf("wrote %s: %lld images %lldx%lldx%lld, %lld classes\n", args["out"].as<std::string>().c_str(),
              static_cast<long long>(ds.size()), static_cast<long long>(ds.channels()), static_cast<long long>(ds.height()),
              static_cast<long long>(ds.width()), static_cast<long long>(ds.numClasses));
  return 0;
}

}  // namespace robustlab
