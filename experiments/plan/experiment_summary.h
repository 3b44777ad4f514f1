#pragma once
// Summaries across seeds and comparisons between arms, computed from the unit files alone, so a
// resumed run and an uninterrupted one compute them from the same bytes.
#include "experiments/plan/statistics.h"
#include "framework/config/config.h"

#include <torch/types.h>

#include <array>
#include <map>
#include <string>
#include <vector>

namespace robustlab {

class H5File;

/// What the summary needs of one arm x seed unit.
struct ArmSeedData {
  double clean = 0;
  std::vector<double> worst;                               ///< E
  std::map<std::string, std::vector<double>> perAttack;    ///< attack -> E
  torch::Tensor worstRobust;                               ///< N x E bool
  int64_t failedChecks = 0;
  int64_t seed = 0;
  std::map<std::string, double> robustness;                ///< [robustness] metrics (robustness_eval.h), by name
  std::map<std::string, torch::Tensor> corruptionCorrect;  ///< per corruption: 5 x N bool, each test image right
};
ArmSeedData readUnit(const std::string& path);

/// One arm against its baseline, per eps.
struct Comparison {
  std::string arm, baseline;
  std::vector<double> meanDifference, pairedT, pairedP, cohensD, mcnemarP;  ///< E
  std::vector<int64_t> robustOnlyArm, robustOnlyBaseline;                    ///< E, pooled over seeds
  torch::Tensor mcnemarPerSeed;                                              ///< S x E
  /// Per [robustness] metric: the paired t-test over seeds of arm - baseline.
  std::map<std::string, PairedTest> robustness;
  /// Per seed, the corruption errors against the baseline (robustness_eval.h); empty without corruptions.
  std::vector<double> mce, relativeMce;
  /// Per corruption, pooled over seeds and severities: images only the arm got right, only the baseline,
  /// and the exact McNemar p of the two counts.
  std::map<std::string, std::array<double, 3>> corruptionMcnemar;
};
Comparison compareArms(const std::string& arm, const std::vector<ArmSeedData>& a, const std::string& baseline,
                       const std::vector<ArmSeedData>& b);

using ArmData = std::map<std::string, std::vector<ArmSeedData>>;

/// Writes /summary/<arm>/... and /comparisons/<arm>_vs_<baseline>/... (docs/results-format.md).
void writeSummaries(H5File& f, const Config& c, const ArmData& data, const std::vector<Comparison>& comparisons);
/// The eps of the grid the answer is given at: the one the arms were adversarially fine-tuned at when
/// the grid has it (`*trainingEps` true), else the largest.
size_t headlineEpsIndex(const Config& c, bool* trainingEps = nullptr);
/// The table and comparison lines printed at the end of a run, after the headline (verdict.h).
std::string summaryText(const Config& c, const ArmData& data, const std::vector<Comparison>& comparisons);

}  // namespace robustlab
