#pragma once
// Hyperparameter sweeps. A config's [sweep] table turns it into many ordinary experiment configs
// ("points"): a grid over any config key by its dotted path, and/or random samples. Each point has
// the hash of its resolved config, so a point is never run twice, and is run by `robustlab run` in
// its own process, here (local backend) or as one task of a Slurm job array.
//
//   [sweep]
//   mode = "grid"                 # grid | random | both: grid x random samples
//   samples = 4                   # random: samples per grid point
//   seed = 0                      # random: sampling seed
//   dir = ""                      # default: results/sweep-<name>
//   [sweep.grid]
//   "finetune.adv_eps" = [0.05, 0.1]
//   [sweep.random]
//   "finetune.lr" = { distribution = "log-uniform", low = 1e-3, high = 1e-1 }
//   "finetune.per_class" = { distribution = "choice", values = [50, 100] }
#include "experiments/plan/executor.h"
#include "framework/config/config.h"

#include <toml++/toml.h>

#include <string>
#include <utility>
#include <vector>

namespace robustlab {

struct SweepPoint {
  int64_t index = 0;
  std::vector<std::pair<std::string, std::string>> params;  ///< dotted key -> TOML value
  std::string hash;                                          ///< of the resolved config (output excluded)
  std::string configPath, resultPath, logPath;
};

struct Sweep {
  std::string name, dir, sourceFile;
  std::vector<std::string> keys;  ///< swept keys, in column order
  std::vector<SweepPoint> points;
};

/// Expands the [sweep] of `path` (with --set `overrides` applied to the base first) into points and
/// writes each point's resolved config to <dir>/configs/<hash>.toml. Errors (a key the config does
/// not have, an empty list, a bad distribution) are ConfigError naming the file and the sweep key.
/// `dir` (when not empty) replaces [sweep].dir.
/// Reads and validates a [sweep] table (errors name `what`) without planning anything; the
/// configuration reference records its keys this way.
void checkSweepTable(const toml::table& sweepTable, const std::string& what);

Sweep planSweep(const std::string& path, const std::vector<std::string>& overrides, const std::string& dir = "");

/// "key=value, key=value" of a point's parameters.
std::string describe(const std::vector<std::pair<std::string, std::string>>& params);

/// Whether a point's results file is complete (written by run, with the point's config hash).
bool pointDone(const SweepPoint& p);

/// Runs the points that are not done, `jobs` processes at a time with `threads` threads each.
/// Returns the number of points that failed.
int runSweepLocal(const Sweep& s, int jobs, int threads, const std::string& binary);

/// Writes <dir>/sweep.sbatch for the points not done and submits it with sbatch; returns the job id.
std::string submitSweepSlurm(const Sweep& s, const SlurmOptions& o, const std::string& binary, int ntasksPerUnit = 1);

/// One line per point: index, state (done, running, pending, failed, not started), params.
std::string sweepStatus(const Sweep& s);

/// Merges the done points into <dir>/sweep.h5 and returns the table (params + headline metrics).
std::string collectSweep(const Sweep& s);

}  // namespace robustlab
