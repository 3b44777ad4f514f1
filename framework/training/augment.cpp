#include "framework/training/augment.h"

#include <torch/nn/functional/padding.h>
#include <torch/nn/functional/vision.h>

#include <cmath>

#include <stdexcept>

namespace robustlab {

std::vector<std::string> augmentNames() { return {"auto", "none", "crop", "flip", "crop+flip"}; }

std::string resolveAugment(const std::string& augment, const std::string& source) {
  if (augment != "auto") return augment;
  return source.rfind("cifar", 0) == 0 ? "crop+flip" : "none";
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


void ViewOptions::validate() const {
  if (!(minScale > 0 && minScale <= 1)) throw std::invalid_argument("view_min_scale: must be in (0, 1]");
  if (!(jitter >= 0 && jitter < 1)) throw std::invalid_argument("view_jitter: must be in [0, 1)");
}

torch::Tensor contrastiveView(const torch::Tensor& x, const ViewOptions& o, at::Generator& gen) {
  namespace F = torch::nn::functional;
  const int64_t n = x.size(0);
  const auto uniform = [&](double a, double b) { return (torch::rand({n}, gen, torch::kFloat32) * (b - a) + a).to(x.device()); };
  const auto area = uniform(o.minScale, 1.0);
  // The aspect ratio r keeps the crop inside the image: its width sqrt(area r) and height
  // sqrt(area / r) are at most the image's when r lies in [area, 1 / area], so r is clamped there (a
  // whole-image crop is never stretched; torchvision retries, then falls back the same way).
  const auto logArea = area.log();
  const auto logAspect = torch::max(torch::min(uniform(std::log(3.0 / 4.0), std::log(4.0 / 3.0)), -logArea), logArea);
  const auto aspect = logAspect.exp();
  // The crop's width and height as shares of the image's (<= 1 up to rounding).
  const auto w = (area * aspect).sqrt().clamp_max(1.0), h = (area / aspect).sqrt().clamp_max(1.0);
  // Centre in affine_grid's [-1, 1] coordinates, anywhere the crop stays inside the image.
  const auto cx = uniform(-1.0, 1.0) * (1 - w), cy = uniform(-1.0, 1.0) * (1 - h);
  auto sx = w;
  if (o.flip) sx = torch::where(uniform(0.0, 1.0).lt(0.5), -w, w);
  const auto zero = torch::zeros_like(w);
  const auto theta = torch::stack({torch::stack({sx, zero, cx}, 1), torch::stack({zero, h, cy}, 1)}, 1);  // N x 2 x 3
  const auto grid = F::affine_grid(theta.to(x.dtype()), x.sizes(), /*align_corners=*/false);
  auto out = F::grid_sample(x, grid, F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kBorder).align_corners(false));
  if (o.jitter > 0) {
    const auto shape = std::vector<int64_t>{n, 1, 1, 1};
    const auto b = uniform(1 - o.jitter, 1 + o.jitter).view(shape).to(x.dtype()), c = uniform(1 - o.jitter, 1 + o.jitter).view(shape).to(x.dtype());
    out = out * b;
    const auto mean = out.mean({1, 2, 3}, /*keepdim=*/true);
    out = (mean + (out - mean) * c).clamp(0.0, 1.0);
  }
  return out;
}

}  // namespace robustlab
