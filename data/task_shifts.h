#pragma once
// Training sets made harder on purpose, for asking whether pre-training helps beyond adversarial
// robustness (Hendrycks, Lee and Mazeika, ICML 2019): corrupted labels and class imbalance. Both are
// seeded and deterministic; the test set is never touched.
#include "data/dataset.h"

#include <cstdint>
#include <string>
#include <utility>

namespace robustlab {

enum class LabelNoise {
  kUniform,  ///< a corrupted label is drawn uniformly from the other classes
  kFlip,     ///< every corrupted example of class c gets the one class flip(c) != c, drawn once per class
};
LabelNoise parseLabelNoise(const std::string& name);  ///< "uniform" | "flip"

/// Label corruption (Hendrycks et al. 2018, "Using Trusted Data to Train Deep Networks on Labels
/// Corrupted by Severe Noise"; 2019): exactly round(p * N) examples, chosen by a permutation seeded by
/// `seed`, get a label other than their own (draws that would keep the label are excluded, so p is the
/// share of wrong labels). Returns the dataset with those labels and the N-bool mask of the changed
/// ones. p in [0, 1]; needs at least 2 classes when p > 0.
std::pair<Dataset, torch::Tensor> corruptLabels(const Dataset& ds, double p, LabelNoise kind, uint64_t seed);

/// Class imbalance with ratio rho = largest / smallest class (the long-tailed profile of Cui et al.
/// 2019): class c keeps round(n_max * rho^(-c / (K - 1))) examples (at least 1), n_max being the
/// smallest class count in `ds`, chosen by a seeded permutation; result in index order. rho = 1 keeps
/// n_max of every class. rho >= 1.
Dataset imbalance(const Dataset& ds, double rho, uint64_t seed);

/// The counts imbalance() keeps per class, for `nMax` and `classes` classes.
std::vector<int64_t> imbalancedCounts(int64_t nMax, int64_t classes, double rho);

}  // namespace robustlab
