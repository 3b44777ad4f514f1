#include "data/dataset.h"

#include <stdexcept>

namespace robustlab {

Dataset Dataset::select(const torch::Tensor& index) const {
  Dataset out;
  out.images = images.index_select(0, index);
  out.labels = labels.index_select(0, index);
  if (sourceIndex.defined()) out.sourceIndex = sourceIndex.index_select(0, index);
  out.numClasses = numClasses;
  out.name = name;
  return out;
}

Dataset Dataset::head(int64_t n) const {
  if (n <= 0 || n >= size()) return *this;
  Dataset out = *this;
  out.images = images.slice(0, 0, n);
  out.labels = labels.slice(0, 0, n);
  if (sourceIndex.defined()) out.sourceIndex = sourceIndex.slice(0, 0, n);
  return out;
}

void Dataset::validate(const std::string& what) const {
  auto fail = [&](const std::string& msg) { throw std::runtime_error(what + ": " + msg); };
  if (!images.defined() || !labels.defined()) fail("dataset is empty");
  if (images.dim() != 4) fail("images must be N x C x H x W, got " + std::to_string(images.dim()) + " dimensions");
  if (images.scalar_type() != torch::kFloat32) fail("images must be float32");
  if (labels.dim() != 1 || labels.scalar_type() != torch::kInt64) fail("labels must be a 1-D int64 tensor");
  if (images.size(0) != labels.size(0))
    fail("image count " + std::to_string(images.size(0)) + " != label count " + std::to_string(labels.size(0)));
  if (size() == 0) fail("dataset has no examples");
  if (!torch::isfinite(images).all().item<bool>()) fail("pixel values must be finite numbers (found NaN or Inf)");
  if (images.min().item<float>() < 0.f || images.max().item<float>() > 1.f) fail("pixel values must lie in [0,1]");
  if (labels.min().item<int64_t>() < 0 || labels.max().item<int64_t>() >= numClasses)
    fail("labels must lie in [0," + std::to_string(numClasses) + ")");
}

}  // namespace robustlab
