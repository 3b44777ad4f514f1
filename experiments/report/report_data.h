#pragma once
// What a report shows, read from an experiment results file (format robustlab-experiment-1).
// Reading checks the layout first: a file that is not HDF5, not an experiment, or missing a group
// the report needs is one error naming the file and what is missing.
#include <torch/types.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace robustlab {

struct SeriesCi {
  std::vector<double> mean, std, lo, hi;
};

struct ArmReport {
  std::string name;
  int64_t nSeeds = 0;
  SeriesCi clean, worst;
  std::map<std::string, SeriesCi> perAttack;
  std::vector<double> trainEpoch, trainLoss, trainValAccuracy;  ///< fine-tuning curves, first seed
  std::string pretrain, objective, mode;
  std::string initialisation;  ///< what the first seed's model started from ("" in files of earlier versions)
  int64_t perClass = 0;
  std::vector<std::vector<double>> seedWorst;  ///< per seed (ReportData::seeds order): worst-case accuracy per eps
  int64_t failedChecks = 0;                    ///< sanity checks failed over its seeds
  /// Which attack did the work, at the largest eps, summed over seeds: examples that this attack alone
  /// fooled (every other attack of the suite left them robust).
  std::map<std::string, int64_t> onlyFooledBy;
  /// Suites (autoattack): stage names and the mean over seeds of the robust accuracy after each stage,
  /// at the largest eps.
  std::map<std::string, std::pair<std::vector<std::string>, std::vector<double>>> stages;
};

/// One [robustness] metric of a comparison: arm minus baseline, mean over seeds, and the paired t-test's p.
struct AxisDifference {
  double meanDifference = 0, pairedP = 1;
};

struct ComparisonReport {
  std::string arm, baseline;
  std::vector<double> meanDifference, pairedP, cohensD, mcnemarP;
  std::vector<double> ciLow, ciHigh;  ///< 95% t-interval of the per-seed paired difference (NaN with one seed)
  std::map<std::string, AxisDifference> axes;  ///< [robustness] metrics by name ("calibration/ece", "ood/mnist/msp/auroc", ...)
  double mce = NAN, relativeMce = NAN;         ///< mean over seeds; NaN without corruptions
};

struct SanityReport {
  std::string arm;
  int64_t seed = 0;
  std::string name, detail;
  bool passed = true;
};

struct GalleryItem {
  std::string arm, attack;
  double eps = 0;
  torch::Tensor clean, adversarial;  ///< C x H x W float32 in [0,1]
  int64_t label = 0, cleanPred = 0, advPred = 0;
};

struct ReportData {
  std::string path;
  std::map<std::string, std::string> meta;  ///< root attributes shown in the report
  std::vector<double> eps;
  std::string norm;
  std::vector<int64_t> seeds;
  std::vector<ArmReport> arms;
  std::vector<ComparisonReport> comparisons;
  std::vector<SanityReport> sanity;
  std::vector<GalleryItem> gallery;
  std::vector<std::string> classNames;  ///< names of the fine-tuning task's classes
  std::vector<std::string> attacks;     ///< the attack suite, in config order
  int64_t testImages = 0;               ///< test examples each arm x seed was evaluated on
  /// Index into eps of the answer's sentences: the eps the arms were adversarially fine-tuned at when
  /// the grid has it (the question the study asks: robust at the threat it trained for), else the
  /// grid's largest.
  size_t headline = 0;
  bool headlineIsTrainingEps = false;  ///< whether `headline` is the fine-tuning's eps (else the largest)

  const ArmReport& arm(const std::string& name) const;
};

/// Reads everything the report needs; throws std::runtime_error naming the file and what is wrong.
ReportData readReportData(const std::string& path);

}  // namespace robustlab
