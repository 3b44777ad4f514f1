#pragma once
// Task construction: class subsets with label remapping, per-class label budgets and validation
// splits. Everything is seeded and deterministic.
#include "data/dataset.h"

#include <cstdint>
#include <utility>
#include <vector>

namespace robustlab {

/// Keeps the examples whose label is in `classes` and relabels classes[i] -> i. An empty list keeps
/// everything unchanged. Throws std::invalid_argument on duplicates or out-of-range classes.
Dataset selectClasses(const Dataset& ds, const std::vector<int64_t>& classes);

/// Keeps at most `perClass` examples of each class, chosen by a seeded permutation (order of the
/// result is by original index). perClass <= 0 keeps everything.
Dataset limitPerClass(const Dataset& ds, int64_t perClass, uint64_t seed);

/// Keeps at most counts[c] examples of each class c: the first ones of a permutation seeded by `seed`,
/// returned in original index order (limitPerClass with one count per class).
Dataset keepPerClass(const Dataset& ds, const std::vector<int64_t>& counts, uint64_t seed);

/// Splits off round(fraction * N) examples, stratified by class, as a validation set.
/// Returns {train, validation}. fraction must be in [0, 1).
std::pair<Dataset, Dataset> splitValidation(const Dataset& ds, double fraction, uint64_t seed);

/// A seeded random subset of at most n examples (the whole set when n <= 0 or n >= N), index order kept.
Dataset sampleSubset(const Dataset& ds, int64_t n, uint64_t seed);

}  // namespace robustlab
