// Brightness, contrast and fog (CIFAR-10-C's brightness and contrast levels; fog as low-frequency
// noise added and the range renormalised, in the spirit of its plasma-fractal fog).
#include "attacks/corruptions/corruptions.h"

#include <torch/nn/functional/upsampling.h>

namespace robustlab::corruption {
namespace F = torch::nn::functional;

torch::Tensor brightness(const torch::Tensor& x, int s, at::Generator&) { return (x + at({0.1, 0.2, 0.3, 0.4, 0.5}, s)).clamp(0, 1); }

torch::Tensor contrast(const torch::Tensor& x, int s, at::Generator&) {
  const double c = at({0.75, 0.5, 0.4, 0.3, 0.15}, s);
  const auto mean = x.mean({1, 2, 3}, /*keepdim=*/true);
  return ((x - mean) * c + mean).clamp(0, 1);
}

torch::Tensor fog(const torch::Tensor& x, int s, at::Generator& g) {
  // Smooth random haze: 4 x 4 noise per image, upsampled bilinearly, added with weight c; then the
  // range is brought back to [0, 1] as CIFAR-10-C does (x * max / (max + c)).
  const double c = at({0.3, 0.5, 0.7, 0.9, 1.2}, s);
  const auto coarse = torch::rand({x.size(0), 1, 4, 4}, g, x.options());
  const auto haze = F::interpolate(coarse, F::InterpolateFuncOptions()
                                               .size(std::vector<int64_t>{x.size(2), x.size(3)})
                                               .mode(torch::kBilinear)
                                               .align_corners(false));
  const auto maxv = x.amax({1, 2, 3}, /*keepdim=*/true);
  return ((x + c * haze) * maxv / (maxv + c)).clamp(0, 1);
}

}  // namespace robustlab::corruption
