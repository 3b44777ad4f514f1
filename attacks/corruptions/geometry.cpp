// Geometry (MNIST-C's rotate, shear, scale, translate): an affine map per image with a random sign or
// direction, bilinear resampling, zeros outside.
#include "attacks/corruptions/corruptions.h"

#include <torch/nn/functional/vision.h>

#include <cmath>

namespace robustlab::corruption {
namespace F = torch::nn::functional;

torch::Tensor randomSigns(int64_t n, at::Generator& g) { return torch::randint(0, 2, {n}, g, torch::kFloat32) * 2 - 1; }

torch::Tensor affine(const torch::Tensor& x, const torch::Tensor& theta) {
  const auto grid = F::affine_grid(theta.to(x.scalar_type()), x.sizes().vec(), /*align_corners=*/false);
  return F::grid_sample(x, grid, F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false)).clamp(0, 1);
}

namespace {

/// N x 2 x 3 from the four entries of the linear part (each N) and no shift.
torch::Tensor linear(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& c, const torch::Tensor& d) {
  const auto z = torch::zeros_like(a);
  return torch::stack({torch::stack({a, b, z}, 1), torch::stack({c, d, z}, 1)}, 1);
}

}  // namespace

torch::Tensor rotate(const torch::Tensor& x, int s, at::Generator& g) {
  const auto t = randomSigns(x.size(0), g) * (at({8, 16, 24, 32, 40}, s) * M_PI / 180);
  return affine(x, linear(t.cos(), -t.sin(), t.sin(), t.cos()));
}

torch::Tensor shear(const torch::Tensor& x, int s, at::Generator& g) {
  const auto k = randomSigns(x.size(0), g) * at({0.1, 0.2, 0.3, 0.4, 0.5}, s);
  const auto one = torch::ones_like(k), zero = torch::zeros_like(k);
  return affine(x, linear(one, k, zero, one));
}

torch::Tensor scale(const torch::Tensor& x, int s, at::Generator&) {
  // Zoom out: the image shrinks to `f` of its size about the centre (theta maps output to input: 1 / f).
  const double f = at({0.9, 0.8, 0.7, 0.6, 0.5}, s);
  const auto inv = torch::full({x.size(0)}, 1.0 / f), zero = torch::zeros({x.size(0)});
  return affine(x, linear(inv, zero, zero, inv));
}

torch::Tensor translate(const torch::Tensor& x, int s, at::Generator& g) {
  // `px` pixels in a direction uniform on the circle, per image.
  const double px = at({1, 2, 3, 4, 5}, s);
  const auto a = torch::rand({x.size(0)}, g, torch::kFloat32) * (2 * M_PI);
  const auto dx = a.cos() * (2 * px / static_cast<double>(x.size(3))), dy = a.sin() * (2 * px / static_cast<double>(x.size(2)));
  const auto one = torch::ones_like(a), zero = torch::zeros_like(a);
  auto theta = torch::stack({torch::stack({one, zero, -dx}, 1), torch::stack({zero, one, -dy}, 1)}, 1);
  return affine(x, theta);
}

}  // namespace robustlab::corruption
