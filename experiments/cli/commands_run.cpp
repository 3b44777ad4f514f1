#include "experiments/cli/cli_common.h"
#include "data/atomic_write.h"
#include "experiments/cli/commands.h"
#include "experiments/plan/experiment.h"
#include "experiments/plan/pipeline.h"
#include "experiments/report/report.h"
#include "framework/runtime/progress.h"
#include "framework/runtime/runtime.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <filesystem>

namespace robustlab {
namespace {

void addRunOptions(cxxopts::Options& opts) {
  addConfigOptions(opts);
  opts.add_options()
      ("o,out", "results file (overrides config 'output')", cxxopts::value<std::string>()->default_value(""))
      ("backend", "auto | inprocess | local (worker processes here) | slurm (job arrays); auto: local with one 1-thread worker per core "
                  "when the units train on 1 thread (CPU, fp32, threads 0), else inprocess",
       cxxopts::value<std::string>()->default_value("auto"))
      ("j,jobs", "local: units computed at once (default: one per core, at most one per GiB of available memory)",
       cxxopts::value<int>()->default_value("0"))
      ("unit", "compute only unit K of the plan (what a worker does) and exit", cxxopts::value<int64_t>())
      ("nproc", "local: every unit runs as N data-parallel ranks (--unit: this unit; README: scaling out)", cxxopts::value<int>())
      ("ntasks-per-unit", "slurm: each pre-training unit runs as N tasks of one srun step, data-parallel; local, inside a Slurm allocation: "
                          "each pre-training unit's worker starts as such a step",
       cxxopts::value<int>()->default_value("1"));
  addSlurmOptions(opts);
  opts.positional_help("[CONFIG]");
  opts.add_options()("positional", "config file, same as --config", cxxopts::value<std::vector<std::string>>());
  opts.parse_positional({"positional"});
}

/// --nproc (local: ranks per unit worker, sharing the cores with the other workers) and
/// --ntasks-per-unit (slurm), each refused where it has no meaning.
void applyRanks(const cxxopts::ParseResult& args, const std::string& backend, ExecutorOptions& o) {
  o.nproc = args.count("nproc") ? args["nproc"].as<int>() : 1;
  o.ntasksPerUnit = ntasksPerUnitFrom(args);
  if (o.nproc < 1 || o.nproc > 1024) throw std::invalid_argument("--nproc: must be in 1..1024, got " + std::to_string(o.nproc));
  if (o.nproc > 1 && backend != "local")
    throw std::invalid_argument("--nproc: runs units as ranks of worker processes, expected --backend local (or auto), not " + backend +
                                (backend == "slurm" ? " (use --ntasks-per-unit)" : ""));
  if (o.ntasksPerUnit > 1 && backend != "slurm" && backend != "local")
    throw std::invalid_argument("--ntasks-per-unit: expected --backend slurm (or local inside a Slurm allocation), not " + backend);
  if (o.ntasksPerUnit > 1 && backend == "local") {
    const char* job = std::getenv("SLURM_JOB_ID");
    if (!job || !*job)
      throw std::invalid_argument("--ntasks-per-unit: with --backend local it starts pre-training units as srun steps, which needs a Slurm "
                                  "allocation (sbatch, salloc), and SLURM_JOB_ID is not set; use --nproc for ranks on this machine");
    if (o.nproc > 1) throw std::invalid_argument("--ntasks-per-unit: give it or --nproc, not both");
  }
  const bool jobsGiven = args.count("jobs") && args["jobs"].as<int>() > 0;
  // Given --nproc, the default number of workers leaves each rank a core; srun steps take the
  // allocation's tasks, one unit at a time.
  if (o.nproc > 1 && !jobsGiven) o.jobs = std::max(1, o.jobs / o.nproc);
  if (o.ntasksPerUnit > 1 && backend == "local" && !jobsGiven) o.jobs = 1;
}

/// MemAvailable from /proc/meminfo in MiB; 0 when unknown.
int64_t availableMemoryMiB() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib / 1024;
  return 0;
}

/// Units computed at once by the local backend: one per core, and at most one per GiB available
/// (a worker on the default experiment's CNN peaks at about 0.65 GiB; BENCHMARKS.md).
int autoJobs() {
  const int64_t mib = availableMemoryMiB();
  const int byMemory = mib > 0 ? static_cast<int>(std::max<int64_t>(1, mib / 1024)) : 1;
  return std::max(1, std::min(usableCores(), byMemory));
}

/// --backend auto. In fp32 on a CPU a unit trains fastest on one thread (BENCHMARKS.md: 1.6x faster
/// than on 2 on the small CNN), so one process would leave the other cores idle: the local backend
/// then computes one unit per core, each a 1-thread worker (the default experiment: 3 min 09 s
/// against 5 min 47 s in one process on a 2-core AMD EPYC; the same accuracies, unit for unit). With
/// bf16 (which trains on 2 threads), a thread count from the config, CUDA or one core: one process.
std::string autoBackend(const Config& c, const torch::Device& device, int jobs) {
  if (!device.is_cpu() || c.threads > 0 || defaultTrainThreads(c.resolvedPrecision) != 1) return "inprocess";
  return jobs >= 2 ? "local" : "inprocess";
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
  std::string backend = args["backend"].as<std::string>();
  // Slurm with --gpus plans for the compute nodes' CUDA device, which the submitting machine may lack.
  const bool slurmGpus = backend == "slurm" && args["gpus"].as<int>() > 0;
  const torch::Device device = slurmGpus ? torch::Device(torch::kCUDA) : setUpRuntime(c);
  const std::string command = commandLine(argc, argv);
  if (args.count("unit")) {
    runExperimentUnit(c, args["unit"].as<int64_t>(), device);
    return 0;
  }
  checkOutputTarget(c.output, args["out"].as<std::string>().empty() ? "output" : "-o");  // before any work
  ExecutorOptions o;
  if (backend == "slurm") o.slurm = slurmOptionsFrom(args);
  if (backend == "auto" || backend == "local") {  // local (auto's choice or asked for): given, else one per core within memory
    if (args.count("jobs") && args["jobs"].as<int>() < 1) throw std::invalid_argument("--jobs: must be >= 1");
    o.jobs = args["jobs"].as<int>() > 0 ? args["jobs"].as<int>() : autoJobs();
  }
  if (backend == "auto" && args.count("nproc") && args["nproc"].as<int>() > 1) backend = "local";  // ranks are processes
  applyRanks(args, backend, o);
  if (backend == "auto") {
    backend = autoBackend(c, device, o.jobs);
    if (backend == "local" && !Progress::quiet())
      std::fprintf(stderr, "backend: local, %d worker processes of 1 thread (fp32 trains fastest on 1 thread; --backend inprocess for one process)\n",
                   o.jobs);
  }
  o.threads = c.threads > 0 ? static_cast<int>(c.threads) : std::max(1, usableCores() / std::max(o.jobs * o.nproc, 1));
  const std::string job = runExperiment(backend, c, command, device, o);
  if (!job.empty()) {
    std::printf("submitted; job %s merges the results into %s and writes its report when the units are done\n", job.c_str(), c.output.c_str());
    return 0;
  }
  reportNextTo(c.output);
  return 0;
}

}  // namespace robustlab
