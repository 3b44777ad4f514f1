// Noise (CIFAR-10-C's severities, Hendrycks & Dietterich 2019).
#include "attacks/corruptions/corruptions.h"

namespace robustlab::corruption {

torch::Tensor gaussianNoise(const torch::Tensor& x, int s, at::Generator& g) {
  const double sd = at({0.04, 0.06, 0.08, 0.09, 0.10}, s) * 2;  // twice CIFAR-10-C's: grey digits and clothes shrug off less
  return (x + torch::randn(x.sizes(), g, x.options()) * sd).clamp(0, 1);
}

torch::Tensor shotNoise(const torch::Tensor& x, int s, at::Generator& g) {
  const double photons = at({60, 25, 12, 5, 3}, s);  // Poisson(x * photons) / photons
  return (torch::poisson(x * photons, g) / photons).clamp(0, 1);
}

torch::Tensor impulseNoise(const torch::Tensor& x, int s, at::Generator& g) {
  const double amount = at({0.03, 0.06, 0.09, 0.17, 0.27}, s);  // salt and pepper, CIFAR-10-C's
  const auto u = torch::rand(x.sizes(), g, x.options());
  auto y = x.masked_fill(u < amount / 2, 0.0);
  return y.masked_fill(u > 1 - amount / 2, 1.0);
}

}  // namespace robustlab::corruption
