#pragma once
// An experiment as a plan of units of work (layout in docs/results-format.md):
//
//   config -> plan (units keyed by a hash of everything their numbers depend on) -> executor
//   (in-process, local processes, Slurm job array; experiment.h) -> unit files -> merge -> results
//
// A pre-training unit is a checkpoint in <dir>/cache/ (shared: any experiment or sweep point that
// needs the same pre-training reuses it); an arm x seed unit is a file in <output stem>.units/.
// Each is written atomically under a lock on "<file>.lock", so a process killed at any moment
// (SIGKILL included) leaves no partial unit, a second process computing the same unit waits and
// then reuses it, and a rerun skips what is done and gives the same numbers.
#include "framework/config/config.h"

#include <torch/types.h>

#include <string>
#include <vector>

namespace robustlab {

inline constexpr const char* kExperimentFormat = "robustlab-experiment-1";

struct Unit {
  enum class Kind { kPretrain, kArm };
  Kind kind = Kind::kArm;
  std::string name;       ///< the pre-training variant's or the arm's name
  ArmConfig arm;          ///< arm units
  StageConfig stage;      ///< the variant's stage, or the arm's effective fine-tuning stage
  int64_t seed = 0;
  int64_t pretrain = -1;  ///< arm units: index in Plan::units of the pre-training they start from (-1: none)
  std::string hash, path;
  /// "pretrain clean seed 0" | "arm scratch seed 1"
  std::string label() const;
};

struct Plan {
  Config config;
  std::string device;                ///< resolved: "cpu" | "cuda"
  std::string unitsDir, cacheDir, stem;
  std::vector<Unit> units;           ///< pre-trainings first, then arms (in arm order, seed-minor)
  std::vector<size_t> indicesOf(Unit::Kind kind) const;
};

/// Plans every unit of `c` on `device`. Creates the output's folders.
Plan makePlan(const Config& c, torch::Device device);

/// Where an arm unit's trained model is kept (config keep_models): "<unit file stem>.model.h5", a
/// checkpoint `attack --checkpoint` and python/robustlab_io.load_checkpoint read.
std::string modelPathOf(const Unit& u);

/// Whether a unit's file exists and holds the unit's hash.
bool unitDone(const Unit& u);

/// Computes unit `i` unless it is done, and writes its file atomically under the unit's lock (a
/// second process on the same unit waits, then finds it done). An arm unit whose pre-training is not
/// done is an error. Returns the seconds spent (0 when it was done already). `how` receives a short
/// result line ("clean 88.70%, ...").
double computeUnit(const Plan& p, size_t i, torch::Device device, std::string* how = nullptr);

/// Writes the results file (config.output) from the unit files, which must all be done, and
/// "<stem>.summary.txt"; prints the summary table. `started` (UTC) and `seconds` are stored.
void mergeResults(const Plan& p, const std::string& command, const std::string& started, double seconds);

/// The resolved config a worker process runs (`robustlab run FILE --unit K`): the plan's config with
/// its precision and device pinned to what this process resolved them to, so every worker computes
/// the same units under the same hashes.
std::string workerConfigText(const Plan& p);

/// FNV-1a 64-bit hash as 16 hex digits (stable across builds and machines).
std::string stableHash(const std::string& text);

/// The hash that identifies an experiment: its resolved config without where the results go and
/// how many threads compute them.
std::string experimentHash(const Config& c);

/// The current time as "YYYY-MM-DDTHH:MM:SSZ".
std::string utcNow();

}  // namespace robustlab
