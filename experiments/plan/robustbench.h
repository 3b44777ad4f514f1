#pragma once
// A model's evaluation as a RobustBench-style JSON entry (the fields RobustBench's model_info files
// use), so a robustlab result can be compared with, or submitted beside, the leaderboard's.
#include "attacks/evaluation/evaluation.h"

#include <string>

namespace robustlab {

struct ModelEntry {
  std::string name;          ///< the model (arm, checkpoint or TorchScript file)
  std::string dataset;       ///< data.source
  std::string architecture;  ///< model.arch (a TorchScript file: its name and SHA-256)
  std::string configHash;    ///< stableHash of the resolved config text
};

/// The JSON text: name, dataset, threat_model, eps (the grid's largest; `per_eps` has each), clean_acc,
/// autoattack_acc (when the autoattack suite ran at that eps, else null), robust_acc (worst case over
/// the attacks run), number of examples, architecture, robustlab version, config hash. Accuracies in
/// percent, as RobustBench writes them.
std::string robustBenchJson(const EvalResult& r, const ModelEntry& entry);

/// Writes it atomically to `path`.
void writeRobustBenchJson(const std::string& path, const EvalResult& r, const ModelEntry& entry);

}  // namespace robustlab
