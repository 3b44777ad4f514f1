#include "framework/runtime/onednn_check.h"

#include <ATen/Context.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include <cstdio>
#include <mutex>
#include <sstream>
#include <vector>

namespace robustlab {
namespace {

struct Case {
  int64_t n, c, o, kh, kw, sh, sw, ph, pw, h, w;
};

// Shapes that oneDNN 3.7.2's jit:avx512_core kernels got wrong on the AMD family-26 CPU (forward: 24 ->
// 8 channels, 2x2, stride 2; input gradient: one channel, 5x3 with strides 3,2, and 4x4 stride 2 on a
// 28 x 40 image), and the default model's two layers.
const Case kCases[] = {{4, 24, 8, 2, 2, 2, 2, 0, 0, 14, 14}, {4, 1, 5, 5, 3, 3, 2, 2, 0, 28, 28}, {4, 1, 10, 4, 4, 2, 2, 1, 1, 28, 40},
                       {4, 1, 16, 4, 4, 2, 2, 1, 1, 28, 28}, {4, 16, 32, 4, 4, 2, 2, 1, 1, 14, 14}};

/// gamma_n = n u / (1 - n u) for fp32's unit roundoff (tests/tolerance.h).
double gammaFp32(int64_t n) {
  const double nu = static_cast<double>(n) * 0x1p-24;
  return nu / (1 - nu);
}

/// Whether every element of `got` (fp32) is within bound * s of `exact` (fp64); NaN fails.
bool within(const at::Tensor& got, const at::Tensor& exact, const at::Tensor& s, double bound) {
  const auto err = (got.to(at::kDouble) - exact).abs();
  return (err <= bound * s).all().item<bool>();
}

/// Empty when the case passes, else what failed.
std::string check(const Case& k, at::Generator& gen) {
  const auto x = at::rand({k.n, k.c, k.h, k.w}, gen);
  const auto w = at::randn({k.o, k.c, k.kh, k.kw}, gen);
  const std::vector<int64_t> stride{k.sh, k.sw}, padding{k.ph, k.pw};
  auto conv = [&](const at::Tensor& a, const at::Tensor& b) { return at::convolution(a, b, {}, stride, padding, {1, 1}, false, {0, 0}, 1); };
  auto inputGrad = [&](const at::Tensor& g, const at::Tensor& a, const at::Tensor& b) {
    return std::get<0>(at::convolution_backward(g, a, b, std::vector<int64_t>{k.o}, stride, padding, {1, 1}, false, {0, 0}, 1, {true, false, false}));
  };
  const auto xd = x.to(at::kDouble), wd = w.to(at::kDouble);
  const auto y = conv(x, w);
  std::ostringstream what;
  what << k.c << " -> " << k.o << " channels, kernel " << k.kh << "x" << k.kw << ", stride " << k.sh << "," << k.sw << ", input " << k.h << "x"
       << k.w;
  if (!within(y, conv(xd, wd), conv(xd.abs(), wd.abs()), 2 * gammaFp32(k.c * k.kh * k.kw))) return "forward pass, " + what.str();
  const auto g = at::randn(y.sizes(), gen);
  const auto gd = g.to(at::kDouble);
  if (!within(inputGrad(g, x, w), inputGrad(gd, xd, wd), inputGrad(gd.abs(), xd, wd.abs()), 2 * gammaFp32(k.o * k.kh * k.kw)))
    return "input gradient, " + what.str();
  return {};
}

std::once_flag gOnce;
std::string gFailure;

}  // namespace

std::string checkConvolutions() {
  torch::NoGradGuard noGrad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(20261204);
  for (const Case& k : kCases)
    if (std::string failed = check(k, gen); !failed.empty()) return failed;
  return {};
}

bool guardOnednnConvolutions() {
  std::call_once(gOnce, [] {
    if (!at::globalContext().userEnabledMkldnn() || !at::hasMKLDNN()) return;
    const std::string failed = checkConvolutions();
    if (failed.empty()) return;
    gFailure = "warning: LibTorch's oneDNN convolutions give wrong fp32 results on this CPU (" + failed +
               "); robustlab switches oneDNN off and runs LibTorch's own kernels (slower, right)";
    std::fprintf(stderr, "%s\n", gFailure.c_str());
    at::globalContext().setUserEnabledMkldnn(false);
  });
  return !gFailure.empty();
}

std::string onednnCheckFailure() { return gFailure; }

}  // namespace robustlab
