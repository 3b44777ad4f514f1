#pragma once
// Robustness evaluation, kept apart from the attacks: for a model, a dataset, an attack suite and
// an eps grid it measures clean accuracy, robust accuracy per attack per eps (over ALL examples:
// clean mistakes count as not robust), attack success rate (over clean-correct examples only),
// perturbation norms, the per-example worst case over attacks and over the eps grid, and runs the
// gradient-masking sanity checks (sanity.h).
#include "attacks/attack.h"
#include "data/dataset.h"
#include "framework/runtime/runtime.h"

#include <memory>
#include <string>
#include <vector>

namespace robustlab {

class Communicator;

struct AttackSpec {
  std::string name;       ///< registry name
  AttackOptions options;  ///< eps and norm are set per grid point by evaluate()
};

struct EvalOptions {
  std::vector<AttackSpec> attacks;
  std::vector<double> epsGrid;   ///< in increasing order; 0 allowed
  Norm norm = Norm::kLinf;
  int64_t batchSize = 500;
  int64_t keepExamples = 8;      ///< adversarial examples stored per attack and eps (float32); -1: all
  bool sanityChecks = true;
  int64_t sanityLimit = 500;     ///< examples used by the extra sanity-check attacks
  bool progress = true;
  Precision precision = Precision::kFp32;  ///< arithmetic of every forward/backward pass
  /// Data-parallel ranks (null or one rank: this process alone): each attacks its contiguous share of
  /// the examples and the per-example results are gathered in order, so every rank holds the whole
  /// result; the sanity checks run on rank 0 only (the rank that writes).
  std::shared_ptr<Communicator> comm;
  void validate() const;
};

struct AttackRun {
  std::string attack;
  double eps = 0;
  torch::Tensor robust;          ///< N bool: correct on the adversarial example (and on the clean one)
  torch::Tensor advPred;         ///< N int64: prediction on the adversarial example
  double robustAccuracy = 0;     ///< robust.mean() over all N examples
  double successRate = 0;        ///< fooled / clean-correct
  double meanNorm = 0;           ///< mean perturbation norm (attack's norm) over successful examples
  double maxNorm = 0;            ///< max perturbation norm over all examples
  double meanLinf = 0, meanL2 = 0;  ///< over all examples
  double zeroGradFraction = 0;
  int64_t gradientEvaluations = 0;
  int64_t queries = 0;           ///< forward-only model queries (square), per example, summed
  /// Suites (autoattack): "clean" then each member in order, and the examples still robust after each
  /// (over all N: the last equals robust.sum()); empty for a single attack.
  std::vector<std::string> stageNames;
  std::vector<int64_t> stageRobust;
  double seconds = 0;
  torch::Tensor examples;        ///< K x C x H x W float32 adversarial examples of the first K inputs
};

struct SanityCheck {
  std::string name;
  bool passed = true;
  std::string detail;
};

struct EvalResult {
  Norm norm = Norm::kLinf;
  Precision precision = Precision::kFp32;
  std::vector<double> epsGrid;
  torch::Tensor labels, cleanPred, cleanCorrect;  ///< N
  double cleanAccuracy = 0;
  std::vector<AttackRun> runs;                    ///< one per attack per eps, attack-major
  torch::Tensor worstRobust;                      ///< N x E bool: worst case over attacks and eps <= eps_e (monotone)
  std::vector<double> worstAccuracy;              ///< E, non-increasing
  std::vector<double> rawWorstAccuracy;           ///< E, worst case over attacks at each eps alone
  std::vector<SanityCheck> checks;
  torch::Tensor exampleInputs;                    ///< K clean inputs matching AttackRun::examples
  int64_t failedChecks() const;
  const AttackRun* find(const std::string& attack, double eps) const;
};

/// Clean accuracy of `model` on `d`. With several data-parallel ranks (`comm`), each rank predicts its
/// contiguous share and the correct counts are summed over the ranks; alone, accuracy().
double sharedAccuracy(ClassifierImpl& model, const Dataset& d, torch::Device device, Communicator* comm, int64_t batchSize = 1000);

/// Runs the whole evaluation. The model's mode is restored afterwards.
EvalResult evaluate(ClassifierImpl& model, const Dataset& data, const EvalOptions& options, torch::Device device);

/// Prints the accuracy table (and failed checks) to stdout.
void printEvalTable(const EvalResult& r);

}  // namespace robustlab
