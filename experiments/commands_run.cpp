#include "experiments/cli_common.h"
#include "experiments/commands.h"
#include "experiments/experiment.h"
#include "experiments/pipeline.h"
#include "experiments/report.h"

#include <cstdio>
#include <filesystem>

namespace robustlab {

int cmdRun(int argc, char** argv) {
  cxxopts::Options opts("robustlab run",
                        "Run an experiment: every pre-training variant, every arm x seed (fine-tune or train from scratch, then "
                        "attack), summaries across seeds and comparisons; resumable; one HDF5 results file");
  addConfigOptions(opts);
  opts.add_options()("o,out", "results file (overrides config 'output')", cxxopts::value<std::string>()->default_value(""));
  opts.positional_help("[CONFIG]");
  opts.add_options()("positional", "config file, same as --config", cxxopts::value<std::vector<std::string>>());
  opts.parse_positional({"positional"});
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  Config c = resolveConfig(args);
  if (!args["out"].as<std::string>().empty()) c.output = args["out"].as<std::string>();
  if (maybeDumpConfig(args, c)) return 0;
  const torch::Device device = setUpRuntime(c);
  runExperiment(c, commandLine(argc, argv), device);
  // The results are safe on disk by now: a report that cannot be made is a warning, not a failure.
  ReportOptions report;
  report.results = c.output;
  const std::filesystem::path out(c.output);
  report.outDir = (out.parent_path() / (out.stem().string() + "-report")).string();
  try {
    writeReport(report);
    std::printf("wrote %s/report.html (robustlab report %s)\n", report.outDir.c_str(), c.output.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warning: report not written: %s\n", e.what());
  }
  return 0;
}

}  // namespace robustlab
