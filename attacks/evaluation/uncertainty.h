#pragma once
// Robustness beyond adversarial examples, measured on a model's clean outputs (Hendrycks, Lee and
// Mazeika, "Using Pre-Training Can Improve Model Robustness and Uncertainty", ICML 2019): calibration
// of its confidence and detection of out-of-distribution inputs by its scores.
#include <torch/types.h>

#include <cstdint>

namespace robustlab {

/// Calibration of the softmax confidence (the maximum class probability) against correctness.
/// Bins hold equal numbers of examples ("equal-mass" or adaptive binning, Nguyen & O'Connor 2015;
/// the RMS calibration error of Hendrycks et al. 2019 is computed over such bins): the examples sorted
/// by confidence are cut into `bins` consecutive runs whose sizes differ by at most one.
struct Calibration {
  double rmsError = 0;  ///< sqrt(sum_b (n_b / N) (acc_b - conf_b)^2)
  double ece = 0;       ///< expected calibration error, sum_b (n_b / N) |acc_b - conf_b| (Guo et al. 2017, same bins)
  double nll = 0;       ///< mean negative log-likelihood of the true class
  double brier = 0;     ///< mean over examples of sum_k (p_k - [k = y])^2 (Brier 1950, all classes)
  torch::Tensor binConfidence, binAccuracy, binCount;  ///< per bin (float64, float64, int64): the reliability diagram
};

/// Calibration of `logits` (N x K) against `labels` (N). Throws std::invalid_argument for an empty
/// batch or bins < 1; bins above N are capped at N.
Calibration calibration(const torch::Tensor& logits, const torch::Tensor& labels, int64_t bins = 15);

/// Out-of-distribution detection by a score that is higher for in-distribution inputs (the maximum
/// softmax probability, Hendrycks & Gimpel 2017, or the maximum logit, Hendrycks et al. 2022), with the
/// in-distribution examples as the positive class.
struct Detection {
  double auroc = 0;   ///< P(score_in > score_out) + P(equal) / 2 (Mann-Whitney; ties count one half)
  double auprIn = 0;  ///< average precision with in-distribution as positive: sum_k (R_k - R_k-1) P_k over thresholds
  double auprOut = 0; ///< the same with out-of-distribution as positive and the score negated
  double fpr95 = 0;   ///< share of out-of-distribution inputs accepted at the threshold that accepts 95% of the
                      ///< in-distribution ones (the highest threshold with TPR >= 0.95; Liang et al. 2018)
};

/// Detection of `outScores` against `inScores` (1-D, any lengths >= 1).
Detection detection(const torch::Tensor& inScores, const torch::Tensor& outScores);

/// Maximum softmax probability per row of `logits`.
torch::Tensor maxSoftmax(const torch::Tensor& logits);

}  // namespace robustlab
