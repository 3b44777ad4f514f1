#pragma once
// The robustness axes beyond adversarial examples for one arm x seed (config [robustness]): the clean
// model's calibration on the test set and its out-of-distribution detection against each source,
// by the maximum softmax probability and the maximum logit; stored under /unit/robustness.
#include "attacks/evaluation/uncertainty.h"
#include "data/dataset.h"
#include "data/h5io.h"
#include "framework/config/config.h"
#include "framework/models/model.h"

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace robustlab {

struct OodResult {
  std::string source;
  int64_t images = 0;
  Detection msp, maxLogit;
};

struct CorruptionResult {
  std::string name;
  std::vector<double> accuracy;  ///< clean accuracy on the corrupted test images, severity 1..5
  torch::Tensor correct;         ///< 5 x N bool: each test image right at each severity
};

struct RobustnessResult {
  bool any = false;                  ///< false: nothing to store (every [robustness] key at its default)
  torch::Tensor corruptedLabels;     ///< fine-tuning training labels made wrong (N bool), or undefined
  torch::Tensor trainClassCounts;    ///< fine-tuning training examples per class
  torch::Tensor perClassAccuracy;    ///< clean test accuracy per class (float64)
  bool hasCalibration = false;
  Calibration calibration;
  std::vector<OodResult> ood;
  std::vector<CorruptionResult> corruptions;
};

/// Out-of-distribution images for `source` shaped like `like` (n x C x H x W in [0,1]): gaussian
/// (N(0.5, 1) clipped, as Hendrycks et al. 2019), uniform (U[0,1]), blobs (Bernoulli(0.7) pixels blurred
/// with a Gaussian of sigma 1.5 and set to 0 below 0.75, Hendrycks et al. 2019), or the test split of a
/// data source (a seeded subset; its image shape must be `like`'s). Seeded.
torch::Tensor oodImages(const std::string& source, const Dataset& like, int64_t n, uint64_t seed);

/// Before any unit runs: every data source named in [robustness] ood_sources can be read and has the
/// fine-tuning task's image shape; throws std::invalid_argument naming robustness.ood_sources otherwise.
void checkOodSources(const Config& c);

/// The seed a unit of seed `seed` draws corruption `severity`'s randomness from (the report redraws
/// its example strip with it).
inline uint64_t corruptionSeed(uint64_t seed, int severity) { return seed + 41 + static_cast<uint64_t>(severity); }

class Communicator;

/// Everything [robustness] asks for, on the clean test set `test`; `corrupted` and `trainClassCounts`
/// describe the fine-tuning training set (pipeline.h, StageResult). Data-parallel ranks (`comm`, as
/// severalRanks gives it; null: one process) share the corruptions' (corruption, severity) pairs and every rank returns the whole
/// result, the same numbers as one process; the rest (one pass over the test set, the OOD images) every
/// rank computes. Collective: every rank calls it.
RobustnessResult evaluateRobustness(ClassifierImpl& model, const Dataset& test, const torch::Tensor& corrupted,
                                    const torch::Tensor& trainClassCounts, const Config& c, torch::Device device,
                                    Communicator* comm = nullptr);

/// Writes `r` under `group` (nothing when !r.any).
void writeRobustness(H5File& f, const std::string& group, const RobustnessConfig& config, const RobustnessResult& r);

/// Per corruption, the stored 5 x N per-example correctness (for paired per-example tests); empty when
/// the group holds none.
std::map<std::string, torch::Tensor> readCorruptionCorrect(H5File& f, const std::string& group);

/// The scalar metrics of a stored /unit/robustness group, by name ("calibration/rms_error",
/// "ood/gaussian/msp/auroc", "corruptions/fog/severity_3", "corruptions/mean_accuracy", ...); empty when
/// the group is absent.
std::map<std::string, double> readRobustnessMetrics(H5File& f, const std::string& group);

}  // namespace robustlab

namespace robustlab {

/// Corruption errors of an arm against its baseline over the same corruptions (Hendrycks & Dietterich
/// 2019): mCE = mean_c [sum_s E_arm(c,s) / sum_s E_base(c,s)], relative mCE = mean_c [sum_s (E_arm(c,s) -
/// E_arm,clean) / sum_s (E_base(c,s) - E_base,clean)], E = 1 - accuracy; from the metrics of one seed
/// (readRobustnessMetrics) and the clean accuracies. NaN without corruptions; the relative mean leaves
/// out corruptions that do not raise the baseline's error above its clean error (undefined there).
struct CorruptionErrors {
  double mce = NAN, relativeMce = NAN;
};
CorruptionErrors corruptionErrors(const std::map<std::string, double>& arm, double armClean, const std::map<std::string, double>& base,
                                  double baseClean);

}  // namespace robustlab
