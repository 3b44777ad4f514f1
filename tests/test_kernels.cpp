// The single-channel convolution kernels, on the kernel path in use. CTest runs this file's tests once
// per path (kernels-avx512-bf16, kernels-avx512, kernels-avx2, with ROBUSTLAB_KERNELS set); a path this
// CPU cannot run exits 77 before any test (tests/test_main.cpp) and CTest reports it as skipped.
#include "fixtures.h"
#include "tolerance.h"

#include "framework/models/kernels/conv_kernels.h"
#include "framework/models/kernels/direct_conv.h"

#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/threshold_backward.h>

#include <catch2/catch.hpp>

#include <cstdlib>

using namespace robustlab;

namespace {

struct Geometry {
  int64_t c, kh, kw, sh, sw, ph, pw, h, w;
};

// The default model's first layer; an output row wider than 16 and channels in blocks of 8; a channel
// count that is not; a 3-column kernel (the general scatter); stride 3 with a non-square crop; then two
// more for the bf16 dot-product forward pass (column stride 2, even kernel width): channels not in
// blocks of 8 with an output row wider than 16, and a 2x2 kernel.
const Geometry kGeometries[] = {{16, 4, 4, 2, 2, 1, 1, 28, 28}, {32, 3, 3, 1, 1, 1, 1, 28, 28}, {5, 5, 3, 3, 2, 2, 0, 28, 28},
                                {20, 2, 4, 1, 3, 0, 3, 27, 25}, {12, 4, 2, 2, 1, 3, 1, 26, 28}, {10, 4, 4, 2, 2, 1, 1, 28, 40},
                                {7, 2, 2, 1, 2, 0, 1, 21, 33}};

std::string describe(const Geometry& k) {
  std::ostringstream s;
  s << k.c << " channels, kernel " << k.kh << "x" << k.kw << ", stride " << k.sh << "," << k.sw << ", padding " << k.ph << "," << k.pw;
  return s.str();
}

/// Real images, side by side for rows wider than one image, cropped to the geometry.
torch::Tensor imagesFor(const Geometry& k) {
  const auto images = test::fashionTest().images.slice(0, 0, 24);
  return torch::cat({images, images.flip(3)}, 3).slice(2, 0, k.h).slice(3, 0, k.w).contiguous();
}

struct Operands {
  torch::Tensor x, w, b;
  std::vector<int64_t> stride, padding;
};

Operands operandsFor(const Geometry& k, uint64_t seed) {
  torch::manual_seed(seed);
  return {imagesFor(k), torch::randn({k.c, 1, k.kh, k.kw}) * 0.3, torch::randn({k.c}) * 0.1, {k.sh, k.sw}, {k.ph, k.pw}};
}

at::Tensor conv(const Operands& o, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  return at::convolution(x, w, b, o.stride, o.padding, {1, 1}, false, {0, 0}, 1);
}

/// Input gradient of the convolution: the transposed convolution of go with w (fp64 when they are).
at::Tensor convInputGrad(const Operands& o, const at::Tensor& go, const at::Tensor& w) {
  return std::get<0>(at::convolution_backward(go, o.x.to(go.scalar_type()), w, std::vector<int64_t>{w.size(0)}, o.stride, o.padding, {1, 1},
                                              false, {0, 0}, 1, {true, false, false}));
}

}  // namespace

TEST_CASE("the kernel path in use is the one asked for and the CPU runs it", "[kernels]") {
  const char* env = std::getenv("ROBUSTLAB_KERNELS");
  INFO("kernel path " << kernelPathName(kernelPath()) << ", best on this CPU " << kernelPathName(bestKernelPath()));
  if (env && *env && std::string(env) != "auto") CHECK(kernelPathName(kernelPath()) == env);
  else CHECK(kernelPath() == bestKernelPath());
  CHECK(kernelPathSupported(kernelPath()));
  CHECK_THROWS_WITH(parseKernelPath("avx3"), Catch::Contains("expected auto, avx512-bf16, avx512, avx2 or libtorch"));
  for (const auto p : {KernelPath::kAvx512Bf16, KernelPath::kAvx512, KernelPath::kAvx2})
    if (!kernelPathSupported(p)) CHECK_THROWS_WITH(setKernelPath(p), Catch::Contains("cannot run"));
}

TEST_CASE("the single-channel kernels match LibTorch's convolution within the bound of their arithmetic, fused ReLU included", "[kernels]") {
  REQUIRE(singleChannelKernelsAvailable());
  INFO("kernel path " << kernelPathName(kernelPath()));
  for (const Geometry& k : kGeometries) {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      for (const bool relu : {false, true}) {
        DYNAMIC_SECTION(describe(k) << (dtype == torch::kFloat32 ? " fp32" : " bf16") << (relu ? " relu" : "")) {
          const Operands o = operandsFor(k, 5);
          REQUIRE(singleChannelConvApplies(o.x, o.w, o.stride, o.padding));
          // The reference: LibTorch's convolution in fp32 on the operands rounded as ours are, so the two
          // differ only by fp32 summation order (and, in bf16, by the final rounding of each to bf16).
          const auto xr = o.x.to(dtype).to(torch::kFloat32), wr = o.w.to(dtype).to(torch::kFloat32), br = o.b.to(dtype).to(torch::kFloat32);
          auto ref = conv(o, xr, wr, br);
          if (relu) ref = ref.relu();
          const auto ours = singleChannelConv(o.x, o.w, o.b, o.stride, o.padding, dtype, relu);
          REQUIRE(ours.sizes() == ref.sizes());
          REQUIRE(ours.scalar_type() == dtype);
          // S: the same convolution over magnitudes; n: taps plus the bias.
          const auto s = conv(o, xr.abs().to(torch::kFloat64), wr.abs().to(torch::kFloat64), br.abs().to(torch::kFloat64));
          const int64_t n = k.kh * k.kw + 1;
          const double bound = 2 * test::gamma(n, test::kUnitFp32) + (dtype == torch::kBFloat16 ? test::kUnitBf16 * (1 + test::gamma(n, test::kUnitFp32)) : 0);
          INFO("forward: " << test::usedFraction(ours, ref, s, bound) << " of the bound used");
          CHECK(test::excess(ours, ref, s, bound) <= 0);
          if (relu) CHECK(ours.min().item<double>() >= 0);
          // Input gradient against LibTorch's convolution backward in fp32 on the same rounded weights, after
          // ReLU's backward when the ReLU is fused (its output as the mask). Terms per input pixel: at most
          // channels x taps.
          const auto go = torch::randn(ref.sizes()).to(dtype);
          const auto mask = relu ? ours.to(torch::kFloat32) : torch::Tensor();
          const auto gin = relu ? at::threshold_backward(go.to(torch::kFloat32), mask, 0) : go.to(torch::kFloat32);
          const auto gref = convInputGrad(o, gin, wr);
          const auto gours = singleChannelConvInputGrad(go, o.w, {k.h, k.w}, o.stride, o.padding, dtype, relu ? ours : torch::Tensor());
          REQUIRE(gours.sizes() == o.x.sizes());
          REQUIRE(gours.scalar_type() == torch::kFloat32);
          const auto gs = convInputGrad(o, gin.abs().to(torch::kFloat64), wr.abs().to(torch::kFloat64));
          const double gbound = 2 * test::gamma(k.c * k.kh * k.kw, test::kUnitFp32);
          INFO("input gradient: " << test::usedFraction(gours, gref, gs, gbound) << " of the bound used");
          CHECK(gs.max().item<double>() > 0);
          CHECK(test::excess(gours, gref, gs, gbound) <= 0);
        }
      }
    }
  }
  SECTION("what the kernels do not take is left to LibTorch") {
    const auto x = test::fashionTest().images.slice(0, 0, 2);
    CHECK_FALSE(singleChannelConvApplies(torch::cat({x, x}, 1), torch::randn({8, 2, 3, 3}), {1, 1}, {1, 1}));  // two input channels
    CHECK_FALSE(singleChannelConvApplies(x, torch::randn({8, 1, 5, 5}), {1, 1}, {2, 2}));                     // 25 taps
    CHECK_FALSE(singleChannelConvApplies(x.to(torch::kFloat64), torch::randn({8, 1, 3, 3}, torch::kFloat64), {1, 1}, {1, 1}));
    CHECK_FALSE(singleChannelConvApplies(x, torch::randn({8, 1, 3, 3}), {1, 1}, {3, 3}));  // padding >= kernel
    setSingleChannelKernels(false);
    CHECK_FALSE(singleChannelConvApplies(x, torch::randn({8, 1, 3, 3}), {1, 1}, {1, 1}));
    setSingleChannelKernels(true);
  }
}

TEST_CASE("every kernel path this CPU runs gives bit-identical numbers, the bf16 dot product aside", "[models]") {
  std::vector<KernelPath> paths;
  for (const auto p : {KernelPath::kAvx2, KernelPath::kAvx512, KernelPath::kAvx512Bf16})
    if (kernelPathSupported(p)) paths.push_back(p);
  if (paths.size() < 2) {
    WARN("skipped: this CPU runs " << paths.size() << " kernel path(s), nothing to compare");
    return;
  }
  struct Restore {
    ~Restore() { setSingleChannelKernels(true); }
  } restore;
  for (const Geometry& k : kGeometries) {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      DYNAMIC_SECTION(describe(k) << (dtype == torch::kFloat32 ? " fp32" : " bf16")) {
        const Operands o = operandsFor(k, 7);
        torch::Tensor firstY, firstG;
        for (const auto p : paths) {
          setKernelPath(p);
          INFO(kernelPathName(p) << " against " << kernelPathName(paths.front()));
          const auto y = singleChannelConv(o.x, o.w, o.b, o.stride, o.padding, dtype, true);
          // One ReLU mask for every path: the first path's output.
          const auto g = singleChannelConvInputGrad(torch::linspace(-1, 1, y.numel()).view(y.sizes()).to(dtype), o.w, {k.h, k.w}, o.stride,
                                                    o.padding, dtype, firstY.defined() ? firstY : y);
          if (!firstY.defined()) {
            firstY = y, firstG = g;
            continue;
          }
          CHECK(torch::equal(g, firstG));
          // The dot product adds two products before the accumulator (another order of the same fp32 sums).
          const bool dot = p == KernelPath::kAvx512Bf16 && dtype == torch::kBFloat16 && k.sw == 2 && k.kw % 2 == 0;
          if (!dot) CHECK(torch::equal(y, firstY));
        }
      }
    }
  }
}

namespace {

/// A multi-channel convolution's shape: input channels, output channels, kernel, stride, padding, input size.
struct MultiGeometry {
  int64_t c, o, kh, kw, sh, sw, ph, pw, h, w;
};

// The default model's second layer; 3x3 same-padding with 16-channel output blocks; 24 output channels
// (a block of 16 and one of 8) with a non-square kernel, mixed strides and odd sizes; a 2x2 kernel whose
// columns split into 16s; a 5x5 kernel with stride 3 and a one-vector column tail.
const MultiGeometry kMultiGeometries[] = {{16, 32, 4, 4, 2, 2, 1, 1, 14, 14}, {32, 16, 3, 3, 1, 1, 1, 1, 14, 14},
                                          {8, 24, 3, 5, 1, 2, 2, 0, 9, 13},   {24, 8, 2, 2, 2, 2, 0, 0, 14, 14},
                                          {8, 8, 5, 5, 3, 3, 4, 1, 7, 10}};

std::string describe(const MultiGeometry& k) {
  std::ostringstream s;
  s << k.c << " -> " << k.o << " channels, kernel " << k.kh << "x" << k.kw << ", stride " << k.sh << "," << k.sw << ", padding " << k.ph
    << "," << k.pw << ", input " << k.h << "x" << k.w;
  return s.str();
}

/// Activations of real images: channel ch is a shifted, scaled copy of the images, half of it made
/// negative (a ReLU's input has both signs), cropped to the geometry.
torch::Tensor activationsFor(const MultiGeometry& k) {
  const auto images = test::fashionTest().images.slice(0, 0, 24);
  std::vector<torch::Tensor> channels;
  for (int64_t ch = 0; ch < k.c; ++ch) channels.push_back(images.roll({ch, 2 * ch}, {2, 3}) * (1 + 0.05 * ch) - (ch % 2 ? 0.5 : 0));
  return torch::cat(channels, 1).slice(2, 0, k.h).slice(3, 0, k.w).contiguous();
}

}  // namespace

TEST_CASE("the multi-channel fp32 kernels match LibTorch's convolution within the bound of their arithmetic, fused ReLU included",
          "[kernels]") {
  if (!kernelPathSupported(KernelPath::kAvx2)) {
    WARN("skipped: this CPU has no AVX2 + FMA, the multi-channel kernels do not run here");
    return;
  }
  // They run on the avx2 path only (direct_conv.h); every other path leaves these layers to LibTorch.
  const KernelPath inUse = kernelPath();
  const auto probe = activationsFor(kMultiGeometries[0]);
  const auto probeW = torch::randn({32, 16, 4, 4});
  CHECK(directConvApplies(probe, probeW, {2, 2}, {1, 1}) == (inUse == KernelPath::kAvx2));
  struct Restore {
    KernelPath path;
    ~Restore() { setKernelPath(path); }
  } restore{inUse};
  setKernelPath(KernelPath::kAvx2);
  INFO("kernel path in use " << kernelPathName(inUse) << ", these cases on avx2");
  for (const MultiGeometry& k : kMultiGeometries) {
    for (const bool relu : {false, true}) {
      DYNAMIC_SECTION(describe(k) << (relu ? " relu" : "")) {
        torch::manual_seed(11);
        const auto x = activationsFor(k);
        const auto w = torch::randn({k.o, k.c, k.kh, k.kw}) / std::sqrt(static_cast<double>(k.c * k.kh * k.kw));
        const auto b = torch::randn({k.o}) * 0.1;
        const Operands o{x, w, b, {k.sh, k.sw}, {k.ph, k.pw}};
        REQUIRE(directConvApplies(x, w, o.stride, o.padding));
        auto ref = conv(o, x, w, b);
        if (relu) ref = ref.relu();
        const auto ours = directConv(x, w, b, o.stride, o.padding, relu);
        REQUIRE(ours.sizes() == ref.sizes());
        // Both are fp32 sums of the same K + 1 terms (input channels x taps, and the bias) in two orders:
        // each within gamma(K + 1) S of the exact sum, S the same convolution over magnitudes.
        const auto s = conv(o, x.abs().to(torch::kFloat64), w.abs().to(torch::kFloat64), b.abs().to(torch::kFloat64));
        const double bound = 2 * test::gamma(k.c * k.kh * k.kw + 1, test::kUnitFp32);
        INFO("forward: " << test::usedFraction(ours, ref, s, bound) << " of the bound used");
        CHECK(test::excess(ours, ref, s, bound) <= 0);
        if (relu) CHECK(ours.min().item<double>() >= 0);
        CHECK(ours.abs().max().item<double>() > 0);
        // Input gradient against LibTorch's convolution backward, after ReLU's backward when the ReLU is
        // fused (its output the mask). Terms per input value: at most output channels x taps.
        const auto go = torch::randn(ref.sizes());
        const auto gin = relu ? at::threshold_backward(go, ours, 0) : go;
        const auto gref = convInputGrad(o, gin, w);
        const auto gours = directConvInputGrad(go, w, {k.h, k.w}, o.stride, o.padding, relu ? ours : torch::Tensor());
        REQUIRE(gours.sizes() == x.sizes());
        const auto gs = convInputGrad(o, gin.abs().to(torch::kFloat64), w.abs().to(torch::kFloat64));
        const double gbound = 2 * test::gamma(k.o * k.kh * k.kw, test::kUnitFp32);
        INFO("input gradient: " << test::usedFraction(gours, gref, gs, gbound) << " of the bound used");
        CHECK(gs.max().item<double>() > 0);
        CHECK(test::excess(gours, gref, gs, gbound) <= 0);
        // Every image's numbers are its own: the first image alone gives the same bits as in the batch.
        CHECK(torch::equal(directConv(x.slice(0, 0, 1), w, b, o.stride, o.padding, relu), ours.slice(0, 0, 1)));
        CHECK(torch::equal(directConvInputGrad(go.slice(0, 0, 1), w, {k.h, k.w}, o.stride, o.padding, relu ? ours.slice(0, 0, 1) : torch::Tensor()),
                           gours.slice(0, 0, 1)));
      }
    }
  }
  SECTION("what the multi-channel kernels do not take is left to LibTorch") {
    const auto x = activationsFor(kMultiGeometries[0]);
    const auto w = torch::randn({32, 16, 4, 4});
    CHECK_FALSE(directConvApplies(x.to(torch::kBFloat16), w.to(torch::kBFloat16), {2, 2}, {1, 1}));  // fp32 only
    CHECK_FALSE(directConvApplies(x.slice(1, 0, 12), torch::randn({32, 12, 4, 4}), {2, 2}, {1, 1}));  // 12 input channels
    CHECK_FALSE(directConvApplies(x, torch::randn({12, 16, 4, 4}), {2, 2}, {1, 1}));                   // 12 output channels
    CHECK_FALSE(directConvApplies(x, w, {2, 2}, {4, 4}));                                              // padding >= kernel
    CHECK_THROWS_WITH(directConv(x.slice(1, 0, 12), torch::randn({32, 12, 4, 4}), {}, {2, 2}, {1, 1}, false), Catch::Contains("do not take"));
    setKernelPath(KernelPath::kLibTorch);
    CHECK_FALSE(directConvApplies(x, w, {2, 2}, {1, 1}));
  }
}
