#pragma once
// An experiment: every pre-training (variant, seed) and every arm x seed, as resumable units of
// work, merged into one HDF5 results file (layout in README.md, "Results layout").
//
// Units are files: a pre-training is a checkpoint in <dir>/cache/, keyed by a hash of everything
// it depends on, so any experiment that needs the same pre-training reuses it; an arm x seed is a
// file in <output stem>.units/, keyed the same way. Each is written atomically, so a run killed at
// any moment (SIGKILL included) and started again skips what is done and gives the same numbers.
// A lock on <output>.lock stops a second run writing the same results at the same time.
#include "experiments/config.h"

#include <torch/types.h>

#include <string>

namespace robustlab {

inline constexpr const char* kExperimentFormat = "robustlab-experiment-1";

/// Runs (or resumes) the experiment and writes c.output. Prints the summary table to stdout.
void runExperiment(const Config& c, const std::string& command, torch::Device device);

/// FNV-1a 64-bit hash as 16 hex digits (stable across builds and machines).
std::string stableHash(const std::string& text);

/// The hash that identifies an experiment: its resolved config without where the results go and
/// how many threads compute them.
std::string experimentHash(const Config& c);

}  // namespace robustlab
