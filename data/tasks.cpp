#include "data/tasks.h"

#include <ATen/CPUGeneratorImpl.h>

#include <set>
#include <stdexcept>
#include <string>

namespace robustlab {
namespace {

torch::Tensor seededPermutation(int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return torch::randperm(n, gen, torch::kInt64);
}

}  // namespace

Dataset selectClasses(const Dataset& ds, const std::vector<int64_t>& classes) {
  if (classes.empty()) return ds;
  std::set<int64_t> seen;
  auto remap = torch::full({ds.numClasses}, -1, torch::kInt64);
  for (size_t i = 0; i < classes.size(); ++i) {
    const int64_t c = classes[i];
    if (c < 0 || c >= ds.numClasses)
      throw std::invalid_argument("classes: class " + std::to_string(c) + " out of range 0.." + std::to_string(ds.numClasses - 1));
    if (!seen.insert(c).second) throw std::invalid_argument("classes: class " + std::to_string(c) + " listed twice");
    remap[c] = static_cast<int64_t>(i);
  }
  auto newLabels = remap.index_select(0, ds.labels);
  auto keep = (newLabels >= 0).nonzero().squeeze(1);
  Dataset out = ds.select(keep);
  out.labels = newLabels.index_select(0, keep);
  out.numClasses = static_cast<int64_t>(classes.size());
  return out;
}

Dataset keepPerClass(const Dataset& ds, const std::vector<int64_t>& counts, uint64_t seed) {
  auto perm = seededPermutation(ds.size(), seed);
  auto labels = ds.labels.index_select(0, perm);
  std::vector<int64_t> taken(counts.size(), 0);
  std::vector<int64_t> chosen;
  const auto* lp = labels.data_ptr<int64_t>();
  const auto* pp = perm.data_ptr<int64_t>();
  for (int64_t i = 0; i < ds.size(); ++i) {
    const auto c = static_cast<size_t>(lp[i]);
    if (taken[c] < counts[c]) {
      ++taken[c];
      chosen.push_back(pp[i]);
    }
  }
  auto idx = torch::tensor(chosen, torch::kInt64);
  return ds.select(std::get<0>(idx.sort()));
}

Dataset limitPerClass(const Dataset& ds, int64_t perClass, uint64_t seed) {
  if (perClass <= 0) return ds;
  return keepPerClass(ds, std::vector<int64_t>(static_cast<size_t>(ds.numClasses), perClass), seed);
}

std::pair<Dataset, Dataset> splitValidation(const Dataset& ds, double fraction, uint64_t seed) {
  if (!(fraction >= 0.0 && fraction < 1.0))
    throw std::invalid_argument("val_fraction: must be in [0, 1), got " + std::to_string(fraction));
  if (fraction == 0.0) return {ds, Dataset{}};
  auto perm = seededPermutation(ds.size(), seed);
  auto labels = ds.labels.index_select(0, perm);
  const auto* lp = labels.data_ptr<int64_t>();
  const auto* pp = perm.data_ptr<int64_t>();
  std::vector<int64_t> total(ds.numClasses, 0), taken(ds.numClasses, 0);
  for (int64_t i = 0; i < ds.size(); ++i) ++total[lp[i]];
  std::vector<int64_t> train, val;
  for (int64_t i = 0; i < ds.size(); ++i) {
    const int64_t c = lp[i];
    const int64_t want = static_cast<int64_t>(fraction * static_cast<double>(total[c]) + 0.5);
    if (taken[c] < want) {
      ++taken[c];
      val.push_back(pp[i]);
    } else {
      train.push_back(pp[i]);
    }
  }
  auto sorted = [](const std::vector<int64_t>& v) { return std::get<0>(torch::tensor(v, torch::kInt64).sort()); };
  return {ds.select(sorted(train)), ds.select(sorted(val))};
}

Dataset sampleSubset(const Dataset& ds, int64_t n, uint64_t seed) {
  if (n <= 0 || n >= ds.size()) return ds;
  auto idx = seededPermutation(ds.size(), seed).slice(0, 0, n);
  return ds.select(std::get<0>(idx.sort()));
}

}  // namespace robustlab
