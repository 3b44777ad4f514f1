#include "framework/training/augment.h"

#include <torch/nn/functional/padding.h>

#include <stdexcept>

namespace robustlab {

std::vector<std::string> augmentNames() { return {"auto", "none", "crop", "flip", "crop+flip"}; }

std::string resolveAugment(const std::string& augment, const std::string& source) {
  if (augment != "auto") return augment;
  return source == "cifar10" || source == "cifar100" ? "crop+flip" : "none";
}

torch::Tensor augmentBatch(const torch::Tensor& x, const std::string& augment, int64_t padding, at::Generator& gen) {
  const bool crop = augment == "crop" || augment == "crop+flip", flip = augment == "flip" || augment == "crop+flip";
  if (!crop && !flip) {
    if (augment != "none" && augment != "auto") throw std::invalid_argument("augment: unknown value '" + augment + "'");
    return x;
  }
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  torch::Tensor out = x;
  if (crop && padding > 0) {
    namespace F = torch::nn::functional;
    const auto padded = F::pad(x, F::PadFuncOptions({padding, padding, padding, padding}));
    const auto dy = torch::randint(0, 2 * padding + 1, {n}, gen, torch::kInt64), dx = torch::randint(0, 2 * padding + 1, {n}, gen, torch::kInt64);
    const auto oy = dy.accessor<int64_t, 1>(), ox = dx.accessor<int64_t, 1>();
    out = torch::empty_like(x);
    for (int64_t i = 0; i < n; ++i) out[i].copy_(padded[i].narrow(1, oy[i], h).narrow(2, ox[i], w));
  }
  if (flip) {
    const auto mirror = torch::rand({n}, gen).lt(0.5).to(out.device()).view({n, 1, 1, 1});
    out = torch::where(mirror, out.flip({3}), out);
  }
  return out;
}

}  // namespace robustlab
