#pragma once
// Running an experiment's plan (plan.h) with one of three executors, all with the same resume and
// lock guarantees and the same numbers:
//
//   in-process        every unit here, one after another (the default);
//   local processes   `jobs` worker processes at a time on this machine;
//   slurm             the pre-trainings as one job array, the arms as a second one that starts when
//                     the first has finished, then a job that merges the results and writes the report.
//
// Workers run `robustlab run <stem>.units/worker.toml --unit K`: the plan's config with precision and
// device pinned (plan.h, workerConfigText).
#include "experiments/plan/executor.h"
#include "experiments/plan/plan.h"

#include <torch/types.h>

#include <functional>
#include <map>
#include <string>

namespace robustlab {

/// How the executors run: worker processes at a time, their threads and ranks (local), Slurm's flags and
/// tasks (slurm).
struct ExecutorOptions {
  int jobs = 1, threads = 1;
  int nproc = 1;          ///< local: each unit's worker runs as this many data-parallel ranks (--nproc)
  /// slurm: each pre-training unit runs as this many tasks of one srun step; local, inside a Slurm
  /// allocation (a sweep point's job): each pre-training unit's worker starts as such an srun step.
  int ntasksPerUnit = 1;
  SlurmOptions slurm;
};

/// Computes a plan's units, or hands them to a scheduler: true when they are done here (the results
/// are then merged here), false when a scheduler's job will merge them (its id into `mergeJob`).
using Executor = std::function<bool(const Plan& p, torch::Device device, const ExecutorOptions& o, std::string* mergeJob)>;

/// The executors by backend name (`run --backend`): "inprocess", "local", "slurm". A backend is one
/// function and one entry here.
const std::map<std::string, Executor>& executors();

/// The one run function: plans `c` on `device`, takes the run lock (<output>.lock: a second run writing
/// the same results stops at once), runs the backend's executor and, when its units are done, merges
/// the results (c.output, the summary it prints). Returns the Slurm merge job's id, or "" when the
/// results were written here. A unit that fails stops the run (finished units are kept).
std::string runExperiment(const std::string& backend, const Config& c, const std::string& command, torch::Device device,
                          const ExecutorOptions& o = {});

/// Computes one unit of the plan (a worker's job); `index` as in Plan::units.
void runExperimentUnit(const Config& c, int64_t index, torch::Device device);

}  // namespace robustlab
