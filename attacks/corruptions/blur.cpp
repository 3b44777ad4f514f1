// Blur: Gaussian (CIFAR-10-C's sigmas, doubled for 28 x 28) and motion (a line kernel at a random angle).
#include "attacks/corruptions/corruptions.h"

#include <torch/nn/functional/conv.h>

#include <cmath>

namespace robustlab::corruption {
namespace F = torch::nn::functional;

torch::Tensor blur(const torch::Tensor& x, double sigma) {
  const int64_t r = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(3 * sigma)));
  auto k = torch::arange(-r, r + 1, x.options());
  k = (-(k * k) / (2 * sigma * sigma)).exp();
  k = k / k.sum();
  const int64_t c = x.size(1);
  const auto kx = k.view({1, 1, 1, -1}).repeat({c, 1, 1, 1}), ky = k.view({1, 1, -1, 1}).repeat({c, 1, 1, 1});
  const auto y = F::conv2d(x, kx, F::Conv2dFuncOptions().padding({0, r}).groups(c));
  return F::conv2d(y, ky, F::Conv2dFuncOptions().padding({r, 0}).groups(c));
}

torch::Tensor gaussianBlur(const torch::Tensor& x, int s, at::Generator&) { return blur(x, at({0.5, 0.75, 1.0, 1.25, 1.6}, s)).clamp(0, 1); }

torch::Tensor motionBlur(const torch::Tensor& x, int s, at::Generator& g) {
  // A line of `length` pixels through the centre of a square kernel, at an angle uniform in [0, pi) per image.
  const int64_t length = static_cast<int64_t>(at({3, 5, 7, 9, 11}, s)), r = length / 2, side = 2 * r + 1;
  const auto angles = torch::rand({x.size(0)}, g, x.options()) * M_PI;
  std::vector<torch::Tensor> out;
  const auto coords = torch::arange(-r, r + 1, x.options());
  for (int64_t i = 0; i < x.size(0); ++i) {
    const double a = angles[i].item<double>();
    // Pixels whose centre is within half a pixel of the line, inside the segment.
    const auto yy = coords.view({-1, 1}).expand({side, side}), xx = coords.view({1, -1}).expand({side, side});
    const auto dist = (xx * std::sin(a) - yy * std::cos(a)).abs(), along = (xx * std::cos(a) + yy * std::sin(a)).abs();
    auto k = ((dist <= 0.5) & (along <= r + 0.5)).to(x.scalar_type());
    k = (k / k.sum()).view({1, 1, side, side}).repeat({x.size(1), 1, 1, 1});
    out.push_back(F::conv2d(x.slice(0, i, i + 1), k, F::Conv2dFuncOptions().padding(r).groups(x.size(1))));
  }
  return torch::cat(out).clamp(0, 1);
}

}  // namespace robustlab::corruption
