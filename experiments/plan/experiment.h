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

#include <string>

namespace robustlab {

/// In-process: runs (or resumes) the experiment and writes c.output. Prints the summary table. A lock
/// on <output>.lock stops a second run writing the same results at the same time.
void runExperiment(const Config& c, const std::string& command, torch::Device device);

/// Computes one unit of the plan (a worker's job); `index` as in Plan::units.
void runExperimentUnit(const Config& c, int64_t index, torch::Device device);

/// Local processes: pre-trainings, then arms, `jobs` workers at a time with `threads` threads each,
/// then the merge here. Stops at the first unit that fails (the others running are stopped, finished
/// ones kept) and throws std::runtime_error with that unit's error line, label and log.
void runExperimentLocal(const Config& c, const std::string& command, torch::Device device, int jobs, int threads);

/// Slurm: submits the arrays and the merge job; returns the merge job's id ("" when every unit is
/// done and the results were merged here). The merge job is `robustlab run` on the worker config, so
/// it writes the report too.
std::string submitExperimentSlurm(const Config& c, const std::string& command, torch::Device device, const SlurmOptions& o);

}  // namespace robustlab
