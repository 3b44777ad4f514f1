#pragma once
// A model's evaluation as a RobustBench-style JSON entry (the fields RobustBench's model_info files
// use), so a robustlab result can be compared with, or submitted beside, the leaderboard's.
#include "attacks/evaluation/evaluation.h"
#include "framework/models/model_spec.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace robustlab {

/// The numbers an entry reports, from an evaluation (attack) or from a unit file (run).
struct EvalNumbers {
  Norm norm = Norm::kLinf;
  std::string precision;
  std::vector<double> eps, worst;                         ///< E
  std::map<std::string, std::vector<double>> perAttack;   ///< attack -> robust accuracy per eps
  double clean = 0;
  int64_t examples = 0, failedChecks = 0;
};
EvalNumbers evalNumbers(const EvalResult& r);

struct ModelEntry {
  std::string name;          ///< the model (arm, checkpoint or TorchScript file)
  std::string dataset;       ///< data.source
  std::string architecture;  ///< model.arch (a TorchScript file: its name and SHA-256)
  std::string configHash;    ///< stableHash of the resolved config text
  std::string preprocessing; ///< the input range and normalisation the model was evaluated with (entryPreprocessing)
};

/// ModelEntry::preprocessing for a spec: a JSON object {"input_range": [lo, hi], "mean": m, "std": s}.
std::string entryPreprocessing(const ModelSpec& spec);
/// ModelEntry::architecture for a spec: its arch, or for a TorchScript model its file and SHA-256.
std::string entryArchitecture(const ModelSpec& spec);

/// The JSON text: name, dataset, threat_model, eps (the grid's largest; `per_eps` has each), clean_acc,
/// autoattack_acc (when the autoattack suite ran at that eps, else null), robust_acc (worst case over
/// the attacks run), number of examples, architecture, robustlab version, config hash. Accuracies in
/// percent, as RobustBench writes them.
std::string robustBenchJson(const EvalNumbers& r, const ModelEntry& entry);

/// The JSON text writeRobustBenchJson writes: one entry, or a JSON array of entries.
std::string robustBenchJsonText(const std::vector<std::pair<EvalNumbers, ModelEntry>>& entries);
/// Writes robustBenchJson atomically to `path`: one entry, or (run) a JSON array of entries.
void writeRobustBenchJson(const std::string& path, const std::vector<std::pair<EvalNumbers, ModelEntry>>& entries);

}  // namespace robustlab
