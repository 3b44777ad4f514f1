#include "data/task_shifts.h"

#include "data/tasks.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

namespace robustlab {

LabelNoise parseLabelNoise(const std::string& name) {
  if (name == "uniform") return LabelNoise::kUniform;
  if (name == "flip") return LabelNoise::kFlip;
  throw std::invalid_argument("label_noise_kind: unknown kind '" + name + "', expected uniform or flip");
}

std::pair<Dataset, torch::Tensor> corruptLabels(const Dataset& ds, double p, LabelNoise kind, uint64_t seed) {
  if (!(p >= 0 && p <= 1)) throw std::invalid_argument("label_noise: must be in [0, 1], got " + std::to_string(p));
  const int64_t n = ds.size(), k = ds.numClasses;
  auto mask = torch::zeros({n}, torch::kBool);
  const int64_t m = static_cast<int64_t>(std::llround(p * static_cast<double>(n)));
  if (m == 0) return {ds, mask};
  if (k < 2) throw std::invalid_argument("label_noise: needs at least 2 classes");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto chosen = torch::randperm(n, gen, torch::kInt64).slice(0, 0, m);
  // An offset in 1..k-1 added modulo k is uniform over the other classes; flip draws one per class.
  const auto offsets = kind == LabelNoise::kUniform ? torch::randint(1, k, {m}, gen, torch::kInt64)
                                                     : torch::randint(1, k, {k}, gen, torch::kInt64);
  Dataset out = ds;
  out.labels = ds.labels.clone();
  const auto old = ds.labels.index_select(0, chosen);
  const auto shift = kind == LabelNoise::kUniform ? offsets : offsets.index_select(0, old);
  out.labels.index_copy_(0, chosen, (old + shift).remainder(k));
  mask.index_fill_(0, chosen, true);
  return {out, mask};
}

std::vector<int64_t> imbalancedCounts(int64_t nMax, int64_t classes, double rho) {
  std::vector<int64_t> counts(static_cast<size_t>(classes), nMax);
  for (int64_t c = 1; c < classes; ++c)
    counts[static_cast<size_t>(c)] =
        std::max<int64_t>(1, std::llround(static_cast<double>(nMax) * std::pow(rho, -static_cast<double>(c) / static_cast<double>(classes - 1))));
  return counts;
}

Dataset imbalance(const Dataset& ds, double rho, uint64_t seed) {
  if (!(rho >= 1) || !std::isfinite(rho)) throw std::invalid_argument("imbalance: must be a finite number >= 1, got " + std::to_string(rho));
  const int64_t k = ds.numClasses;
  const auto perClass = torch::bincount(ds.labels, {}, k);
  const int64_t nMax = perClass.min().item<int64_t>();
  if (nMax == 0) throw std::invalid_argument("imbalance: a class of the task has no training example");
  return keepPerClass(ds, imbalancedCounts(nMax, k, rho), seed);
}

}  // namespace robustlab
