#include "experiments/cli/cli_common.h"
#include "experiments/cli/commands.h"
#include "experiments/plan/experiment.h"
#include "experiments/plan/pipeline.h"
#include "experiments/report/report.h"

#include <cstdio>
#include <filesystem>
#include <thread>

namespace robustlab {
namespace {

void addRunOptions(cxxopts::Options& opts) {
  addConfigOptions(opts);
  opts.add_options()
      ("o,out", "results file (overrides config 'output')", cxxopts::value<std::string>()->default_value(""))
      ("backend", "inprocess | local (worker processes here) | slurm (job arrays)", cxxopts::value<std::string>()->default_value("inprocess"))
      ("j,jobs", "local: units computed at once", cxxopts::value<int>()->default_value("1"))
      ("unit", "compute only unit K of the plan (what a worker does) and exit", cxxopts::value<int64_t>());
  addSlurmOptions(opts);
  opts.positional_help("[CONFIG]");
  opts.add_options()("positional", "config file, same as --config", cxxopts::value<std::vector<std::string>>());
  opts.parse_positional({"positional"});
}

/// The results are safe on disk by now: a report that cannot be made is a warning, not a failure.
void reportNextTo(const std::string& results) {
  ReportOptions report;
  report.results = results;
  const std::filesystem::path out(results);
  report.outDir = (out.parent_path() / (out.stem().string() + "-report")).string();
  try {
    writeReport(report);
    std::printf("wrote %s/report.html (robustlab report %s)\n", report.outDir.c_str(), results.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "warning: report not written: %s\n", e.what());
  }
}

}  // namespace

int cmdRun(int argc, char** argv) {
  cxxopts::Options opts("robustlab run",
                        "Run an experiment: every pre-training variant, every arm x seed (fine-tune or train from scratch, then "
                        "attack), summaries across seeds and comparisons; resumable; one HDF5 results file");
  addRunOptions(opts);
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  Config c = resolveConfig(args);
  if (!args["out"].as<std::string>().empty()) c.output = args["out"].as<std::string>();
  if (maybeDumpConfig(args, c)) return 0;
  const std::string backend = args["backend"].as<std::string>();
  // Slurm with --gpus plans for the compute nodes' CUDA device, which the submitting machine may lack.
  const bool slurmGpus = backend == "slurm" && args["gpus"].as<int>() > 0;
  const torch::Device device = slurmGpus ? torch::Device(torch::kCUDA) : setUpRuntime(c);
  const std::string command = commandLine(argc, argv);
  if (args.count("unit")) {
    runExperimentUnit(c, args["unit"].as<int64_t>(), device);
    return 0;
  }
  if (backend == "slurm") {
    const std::string job = submitExperimentSlurm(c, command, device, slurmOptionsFrom(args));
    if (job.empty()) reportNextTo(c.output);
    else std::printf("submitted; job %s merges the results into %s and writes its report when the units are done\n", job.c_str(), c.output.c_str());
    return 0;
  }
  if (backend == "local") {
    const int jobs = args["jobs"].as<int>();
    const int threads = c.threads > 0 ? static_cast<int>(c.threads) : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(jobs, 1));
    const int failed = runExperimentLocal(c, command, device, jobs, threads);
    if (failed) {
      std::fprintf(stderr, "robustlab run: %d unit(s) failed (logs in the units folder); run the same command again to retry them\n", failed);
      return 1;
    }
  } else if (backend == "inprocess") {
    runExperiment(c, command, device);
  } else {
    throw std::invalid_argument("--backend: unknown backend '" + backend + "', expected inprocess, local or slurm");
  }
  reportNextTo(c.output);
  return 0;
}

}  // namespace robustlab
