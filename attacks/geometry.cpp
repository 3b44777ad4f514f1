#include "attacks/geometry.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace robustlab {

Norm parseNorm(const std::string& name) {
  if (name == "linf" || name == "Linf" || name == "inf") return Norm::kLinf;
  if (name == "l2" || name == "L2") return Norm::kL2;
  throw std::invalid_argument("norm: unknown norm '" + name + "', expected linf or l2");
}

std::string normName(Norm n) { return n == Norm::kLinf ? "linf" : "l2"; }

torch::Tensor perExample(const torch::Tensor& v, const torch::Tensor& like) {
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = like.size(0);
  return v.view(shape);
}

namespace {

// std::nextafter(u, below) for below < u, and std::nextafter(d, above) for above > d, as integer
// arithmetic on the bit pattern the compiler can vectorise (one ulp towards zero or away from it).
inline float nextDown(float u) {
  uint32_t b;
  std::memcpy(&b, &u, sizeof b);
  b = u > 0 ? b - 1 : (u == 0 ? 0x80000001u : b + 1);
  std::memcpy(&u, &b, sizeof b);
  return u;
}
inline float nextUp(float d) {
  uint32_t b;
  std::memcpy(&b, &d, sizeof b);
  b = d > 0 ? b + 1 : (d == 0 ? 0x00000001u : b - 1);
  std::memcpy(&d, &b, sizeof b);
  return d;
}

}  // namespace

LinfBox linfBox(const torch::Tensor& x, double eps, double lo, double hi) {
  if (x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.is_contiguous()) {
    // The same float arithmetic as the tensor ops below in one branch-free pass instead of ten (the
    // ten cost about a tenth of a 128-image PGD-10 training batch on CPU, `where` alone 80 us per call).
    auto lower = torch::empty_like(x), upper = torch::empty_like(x);
    const float e = static_cast<float>(eps), flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
    const float* px = x.data_ptr<float>();
    float* pl = lower.data_ptr<float>();
    float* pu = upper.data_ptr<float>();
    at::parallel_for(0, x.numel(), 32768, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float v = px[i];
        float u = v + e, d = v - e;
        u = u - v > e ? nextDown(u) : u;  // u - v > e implies u > v: one ulp back towards v
        d = v - d > e ? nextUp(d) : d;
        pl[i] = std::min(std::max(d, flo), fhi);
        pu[i] = std::min(std::max(u, flo), fhi);
      }
    });
    return {lower, upper};
  }
  auto upper = x + eps;
  upper = torch::where((upper - x) > eps, torch::nextafter(upper, x), upper);
  auto lower = x - eps;
  lower = torch::where((x - lower) > eps, torch::nextafter(lower, x), lower);
  // Clipping to the valid range only moves each coordinate towards x, so the bound survives.
  return {lower.clamp(lo, hi), upper.clamp(lo, hi)};
}

torch::Tensor projectToBall(const torch::Tensor& xadv, const torch::Tensor& x, Norm norm, double eps, double lo, double hi) {
  if (norm == Norm::kLinf) return linfBox(x, eps, lo, hi).clamp(xadv);
  const auto delta = xadv - x;
  const auto factor = (eps / delta.flatten(1).norm(2, 1).clamp_min(1e-12)).clamp_max(1.0).to(delta.dtype());
  // Clipping to the valid range only moves each coordinate towards x, so the norm bound survives.
  return (x + delta * perExample(factor, x)).clamp(lo, hi);
}

torch::Tensor steepestAscent(const torch::Tensor& grad, Norm norm) {
  if (norm == Norm::kLinf) return grad.sign();
  return grad / perExample(grad.flatten(1).norm(2, 1).clamp_min(1e-12), grad);
}

torch::Tensor perExampleNorm(const torch::Tensor& delta, Norm norm) {
  auto flat = delta.detach().flatten(1).to(torch::kFloat64);
  return (norm == Norm::kLinf ? flat.abs().amax(1) : flat.norm(2, 1)).cpu();
}

}  // namespace robustlab
