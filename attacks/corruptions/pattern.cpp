// Patterns drawn over the image (MNIST-C's stripe and zigzag, Mu & Gilmer 2019): bright lines whose
// number grows with the severity, at random offsets.
#include "attacks/corruptions/corruptions.h"

#include <cmath>

namespace robustlab::corruption {

torch::Tensor stripe(const torch::Tensor& x, int s, at::Generator& g) {
  // `s` full-height vertical lines one pixel wide at random columns of each image.
  const int64_t w = x.size(3);
  auto mask = torch::zeros({x.size(0), 1, 1, w}, x.options());
  const auto cols = torch::randint(0, w, {x.size(0), static_cast<int64_t>(s)}, g, torch::kInt64);
  mask.view({x.size(0), w}).scatter_(1, cols, 1.0);
  return torch::max(x, mask.expand_as(x));
}

torch::Tensor zigzag(const torch::Tensor& x, int s, at::Generator& g) {
  // `s` zigzag lines across the image: rows y(c) = y0 + amplitude * triangle(c / period), amplitude 3 px,
  // period 6 px, the start row and phase random per line and image.
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  auto mask = torch::zeros({n, 1, h, w}, x.options());
  const auto y0 = torch::randint(0, h, {n, static_cast<int64_t>(s)}, g, torch::kInt64);
  const auto phase = torch::randint(0, 6, {n, static_cast<int64_t>(s)}, g, torch::kInt64);
  auto acc = mask.accessor<float, 4>();
  const auto a0 = y0.accessor<int64_t, 2>(), ph = phase.accessor<int64_t, 2>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t l = 0; l < s; ++l)
      for (int64_t c = 0; c < w; ++c) {
        const int64_t t = (c + ph[i][l]) % 6;
        const int64_t row = a0[i][l] + (t < 3 ? t : 6 - t) - 1;
        if (row >= 0 && row < h) acc[i][0][row][c] = 1.0f;
      }
  return torch::max(x, mask.expand_as(x));
}

}  // namespace robustlab::corruption
