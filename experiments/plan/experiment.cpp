#include "experiments/plan/experiment.h"

#include "data/atomic_write.h"
#include "experiments/plan/executor.h"
#include "experiments/plan/file_lock.h"
#include "framework/models/kernels/conv_kernels.h"
#include "framework/runtime/progress.h"


#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <stdexcept>

namespace robustlab {
namespace fs = std::filesystem;
namespace {

/// The run lock on "<output>.lock": a second run writing the same results stops at once.
void lockRun(FileLock& lock, const std::string& output) {
  if (!lock.held())
    throw std::runtime_error(output + ": another robustlab run is writing these results now (lock " + output + ".lock is held)");
}

/// One progress line per unit, with an ETA from the units computed so far (cached ones cost nothing
/// and say nothing about the rest).
class UnitLog {
 public:
  explicit UnitLog(size_t total) : total_(static_cast<int64_t>(total)), t0_(std::chrono::steady_clock::now()) {}
  void line(const std::string& what, const std::string& how, double secs) {
    ++done_;
    if (secs > 0) {
      ++computed_;
      computedSeconds_ += secs;
    }
    if (Progress::quiet()) return;
    const double eta = computed_ ? computedSeconds_ / static_cast<double>(computed_) * static_cast<double>(total_ - done_) : NAN;
    std::fprintf(stderr, "[%lld/%lld] %s: %s (%s) elapsed %s ETA %s\n", static_cast<long long>(done_), static_cast<long long>(total_),
                 what.c_str(), how.c_str(), formatDuration(secs).c_str(), formatDuration(secondsSince(t0_)).c_str(),
                 done_ == total_ ? "0s" : formatDuration(eta).c_str());
  }

 private:
  int64_t total_, done_ = 0, computed_ = 0;
  double computedSeconds_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

void announce(const Plan& p) {
  if (Progress::quiet()) return;
  const auto& c = p.config;
  std::fprintf(stderr, "experiment '%s': %zu arms x %zu seeds, %zu pre-trainings, %zu units\n", c.name.c_str(), c.runArms().size(),
               c.runSeeds().size(), p.indicesOf(Unit::Kind::kPretrain).size(), p.units.size());
}

std::string workerConfigPath(const Plan& p) {
  const std::string path = p.unitsDir + "/worker.toml";
  writeTextAtomically(path, workerConfigText(p));
  return fs::absolute(path).string();
}

/// What a worker said of its unit: the last line of its log is "<label>: <how> (<seconds>)".
std::string workerSummary(const std::string& logPath, const std::string& label) {
  const std::string last = lastLogLine(logPath, label + ": ");
  return last.empty() ? "done" : last.substr(label.size() + 2);
}

std::vector<std::string> workerArgv(const std::string& binary, const std::string& config, size_t unit, int threads, int nproc = 1) {
  std::vector<std::string> argv{binary, "run", config, "--unit", std::to_string(unit), "--threads", std::to_string(threads), "-q"};
  if (nproc > 1) argv.insert(argv.end(), {"--nproc", std::to_string(nproc)});
  return argv;
}

/// In-process: every unit here, one after another.
bool computeInProcess(const Plan& p, torch::Device device, const ExecutorOptions&, std::string*) {
  UnitLog log(p.units.size());
  for (size_t i = 0; i < p.units.size(); ++i) {
    std::string how = "cached";
    const double secs = computeUnit(p, i, device, &how);
    log.line(p.units[i].label(), how, secs);
  }
  return true;
}

/// Local processes: pre-trainings, then arms, o.jobs workers at a time with o.threads threads each.
bool computeLocal(const Plan& p, torch::Device, const ExecutorOptions& o, std::string*) {
  if (o.jobs < 1) throw std::invalid_argument("--jobs: must be >= 1");
  const std::string config = workerConfigPath(p), binary = selfExecutable();
  for (auto kind : {Unit::Kind::kPretrain, Unit::Kind::kArm}) {  // arms start from finished pre-trainings
    std::vector<ProcessTask> tasks;
    std::vector<size_t> index;
    for (size_t i : p.indicesOf(kind)) {
      if (unitDone(p.units[i])) {
        if (!Progress::quiet()) std::fprintf(stderr, "%s: cached\n", p.units[i].label().c_str());
        continue;
      }
      auto argv = workerArgv(binary, config, i, o.threads, o.nproc);
      // Inside a Slurm allocation: a pre-training unit as one srun step of several tasks, its ranks.
      if (kind == Unit::Kind::kPretrain && o.ntasksPerUnit > 1) {
        const auto srun = srunStep(o.ntasksPerUnit, o.threads);
        argv.insert(argv.begin(), srun.begin(), srun.end());
      }
      tasks.push_back({p.units[i].label(), argv, p.unitsDir + "/unit-" + std::to_string(i) + ".log"});
      index.push_back(i);
    }
    // Like one process, the run stops at the first unit that fails, with that unit's error line.
    RunProcessesOptions ro;
    ro.ok = [&](size_t t) { return unitDone(p.units[index[t]]); };
    ro.describe = [&](size_t t) { return workerSummary(tasks[t].logPath, tasks[t].label); };
    ro.stopOnFailure = true;
    std::string failure;
    size_t failedTask = 0;
    ro.firstFailure = &failure;
    ro.firstFailed = &failedTask;
    if (runProcesses(tasks, o.jobs, ro)) {
      const std::string prefix = "robustlab run: error: ";  // the worker's own error line
      if (failure.rfind(prefix, 0) == 0) failure.erase(0, prefix.size());
      throw std::runtime_error(failure + " (unit '" + tasks[failedTask].label + "', log " + tasks[failedTask].logPath +
                               "; finished units are kept)");
    }
  }
  return true;
}

/// Slurm: the pre-trainings as one job array, the arms as a second after it, then a merge job (the
/// worker config run whole, so it writes the results and the report). Nothing to submit: done here.
bool submitSlurm(const Plan& p, torch::Device, const ExecutorOptions& o, std::string* mergeJob) {
  const auto& c = p.config;
  const std::string config = workerConfigPath(p), binary = selfExecutable();
  const std::string logDir = p.unitsDir + "/logs";
  fs::create_directories(logDir);
  SlurmArray base;
  base.logDir = logDir;
  base.workDir = fs::current_path().string();
  // Every worker computes on the kernel path this plan's keys were made for.
  if (p.device == "cpu" && singleChannelKernelsAvailable()) base.env.emplace_back("ROBUSTLAB_KERNELS", kernelPathName(kernelPath()));
  std::string last;
  const char* names[] = {"pretrain", "arms"};
  int stage = 0;
  for (auto kind : {Unit::Kind::kPretrain, Unit::Kind::kArm}) {
    SlurmArray a = base;
    a.jobName = "robustlab-" + c.name + "-" + names[stage];
    a.scriptPath = p.unitsDir + "/" + names[stage++] + ".sbatch";
    a.dependency = last;
    // A pre-training unit as one srun step of several tasks: its ranks (framework/distributed).
    if (kind == Unit::Kind::kPretrain) a.ntasks = o.ntasksPerUnit;
    for (size_t i : p.indicesOf(kind))
      if (!unitDone(p.units[i])) a.tasks.emplace_back(static_cast<int64_t>(i), workerArgv(binary, config, i, o.slurm.cpus));
    if (!a.tasks.empty()) last = submitSlurmArray(a, o.slurm);
  }
  if (last.empty()) return true;  // every unit is done: merge here
  SlurmArray merge = base;
  merge.jobName = "robustlab-" + c.name + "-merge";
  merge.scriptPath = p.unitsDir + "/merge.sbatch";
  merge.dependency = last;
  merge.tasks.emplace_back(0, std::vector<std::string>{binary, "run", config, "-q", "--threads", std::to_string(o.slurm.cpus)});
  *mergeJob = submitSlurmArray(merge, o.slurm);
  writeTextAtomically(p.unitsDir + "/slurm-merge-job.txt", *mergeJob + "\n");
  return false;
}

}  // namespace

const std::map<std::string, Executor>& executors() {
  static const std::map<std::string, Executor> table = {{"inprocess", computeInProcess}, {"local", computeLocal}, {"slurm", submitSlurm}};
  return table;
}

std::string runExperiment(const std::string& backend, const Config& c, const std::string& command, torch::Device device,
                          const ExecutorOptions& o) {
  const auto executor = executors().find(backend);
  if (executor == executors().end()) {
    std::string names = "auto";
    size_t k = 0;
    for (const auto& [name, _] : executors()) names += (++k == executors().size() ? " or " : ", ") + name;
    throw std::invalid_argument("--backend: unknown backend '" + backend + "', expected " + names);
  }
  const std::string started = utcNow();
  const auto t0 = std::chrono::steady_clock::now();
  const Plan p = makePlan(c, device);
  FileLock lock(c.output + ".lock", FileLock::Wait::kNo);
  lockRun(lock, c.output);
  announce(p);
  std::string mergeJob;
  if (!executor->second(p, device, o, &mergeJob)) return mergeJob;
  mergeResults(p, command, started, secondsSince(t0));
  std::printf("wrote %s (%s)\n", c.output.c_str(), formatDuration(secondsSince(t0)).c_str());
  return "";
}

void runExperimentUnit(const Config& c, int64_t index, torch::Device device) {
  const Plan p = makePlan(c, device);
  if (index < 0 || index >= static_cast<int64_t>(p.units.size()))
    throw std::invalid_argument("--unit: " + std::to_string(index) + " is not a unit of this experiment (it has units 0.." +
                                std::to_string(p.units.size() - 1) + ")");
  std::string how = "cached";
  const double secs = computeUnit(p, static_cast<size_t>(index), device, &how);
  std::fprintf(stderr, "%s: %s (%s)\n", p.units[static_cast<size_t>(index)].label().c_str(), how.c_str(), formatDuration(secs).c_str());
}

}  // namespace robustlab
