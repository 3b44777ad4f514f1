// The single-channel convolution kernels' entry points: which instruction set runs them (chosen at run
// time), the shapes they take, and the dispatch to conv_kernels_avx512.cpp or conv_kernels_avx2.cpp.
#include "framework/models/kernels/conv_kernels_detail.h"

#include <ATen/ops/empty.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace robustlab {
namespace conv_kernels {

void checkApplies(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding) {
  if (!singleChannelConvApplies(x, weight, stride, padding))
    throw std::invalid_argument("singleChannelConv: the kernels do not take this convolution (see singleChannelConvApplies)");
}

std::vector<float> roundedValues(const at::Tensor& t, at::ScalarType compute) {
  const auto src = t.to(compute).to(at::kFloat).contiguous();
  return std::vector<float>(src.data_ptr<float>(), src.data_ptr<float>() + src.numel());
}

}  // namespace conv_kernels

namespace {
using namespace conv_kernels;

constexpr KernelPath kAllPaths[] = {KernelPath::kAvx512Bf16, KernelPath::kAvx512, KernelPath::kAvx2, KernelPath::kLibTorch};

/// The path setKernelPath / setSingleChannelKernels chose, or -1 for the default.
std::atomic<int> gChosen{-1};

KernelPath defaultPath() {
  static const KernelPath path = [] {
    const char* env = std::getenv("ROBUSTLAB_KERNELS");
    if (!env || !*env) return bestKernelPath();
    const KernelPath p = parseKernelPath(env);
    if (!kernelPathSupported(p))
      throw std::invalid_argument("ROBUSTLAB_KERNELS: this CPU cannot run the kernel path '" + kernelPathName(p) + "' (it runs up to '" +
                                  kernelPathName(bestKernelPath()) + "')");
    return p;
  }();
  return path;
}

}  // namespace

std::string kernelPathName(KernelPath p) {
  switch (p) {
    case KernelPath::kAvx2: return "avx2";
    case KernelPath::kAvx512: return "avx512";
    case KernelPath::kAvx512Bf16: return "avx512-bf16";
    case KernelPath::kLibTorch: break;
  }
  return "libtorch";
}

KernelPath parseKernelPath(const std::string& name) {
  if (name == "auto") return bestKernelPath();
  for (const KernelPath p : kAllPaths)
    if (name == kernelPathName(p)) return p;
  throw std::invalid_argument("kernel path: unknown name '" + name + "', expected auto, avx512-bf16, avx512, avx2 or libtorch");
}

bool kernelPathSupported(KernelPath p) {
#ifdef ROBUSTLAB_X86_KERNELS
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  static const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  static const bool bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
  switch (p) {
    case KernelPath::kAvx2: return avx2;
    case KernelPath::kAvx512: return avx512;
    case KernelPath::kAvx512Bf16: return bf16;
    case KernelPath::kLibTorch: return true;
  }
#endif
  return p == KernelPath::kLibTorch;
}

KernelPath bestKernelPath() {
  for (const KernelPath p : kAllPaths)
    if (kernelPathSupported(p)) return p;
  return KernelPath::kLibTorch;
}

KernelPath kernelPath() {
  const int chosen = gChosen.load();
  return chosen >= 0 ? static_cast<KernelPath>(chosen) : defaultPath();
}

void setKernelPath(KernelPath p) {
  if (!kernelPathSupported(p)) throw std::invalid_argument("kernel path: this CPU cannot run '" + kernelPathName(p) + "'");
  gChosen.store(static_cast<int>(p));
}

bool singleChannelKernelsAvailable() { return kernelPath() != KernelPath::kLibTorch; }

void setSingleChannelKernels(bool on) { gChosen.store(on ? -1 : static_cast<int>(KernelPath::kLibTorch)); }

bool singleChannelConvApplies(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding) {
  auto floating = [](const at::Tensor& t) { return t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16; };
  return singleChannelKernelsAvailable() && x.device().is_cpu() && weight.device().is_cpu() && x.dim() == 4 && x.size(1) == 1 &&
         weight.dim() == 4 && weight.size(1) == 1 && floating(x) && floating(weight) && weight.size(2) * weight.size(3) <= kLanes &&
         stride.size() == 2 && padding.size() == 2 && stride[0] >= 1 && stride[1] >= 1 && padding[0] >= 0 && padding[1] >= 0 &&
         padding[0] < weight.size(2) && padding[1] < weight.size(3) && x.size(2) + 2 * padding[0] >= weight.size(2) &&
         x.size(3) + 2 * padding[1] >= weight.size(3) && weight.size(0) >= 1;
}

at::Tensor singleChannelConv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::ScalarType compute, bool relu) {
  checkApplies(x, weight, stride, padding);
  const Geometry g(x.size(0), x.size(2), x.size(3), weight.size(0), weight.size(2), weight.size(3), stride, padding);
  auto out = at::empty({g.n, g.c, g.oh, g.ow}, x.options().dtype(compute));
#ifdef ROBUSTLAB_X86_KERNELS
  const auto xc = x.contiguous();
  const auto rounded = roundedValues(weight, compute);
  const auto b = bias.defined() ? roundedValues(bias, compute) : std::vector<float>{};
  const float* bp = b.empty() ? nullptr : b.data();
  switch (kernelPath()) {
    case KernelPath::kAvx512Bf16:
      avx512::forward(g, xc, rounded, bp, compute, relu, avx512::dotForwardApplies(g, compute), out);
      break;
    case KernelPath::kAvx512: avx512::forward(g, xc, rounded, bp, compute, relu, /*dot=*/false, out); break;
    case KernelPath::kAvx2: avx2::forward(g, xc, rounded, bp, compute, relu, out); break;
    case KernelPath::kLibTorch: break;  // checkApplies refused it
  }
#endif
  return out;
}

at::Tensor singleChannelConvInputGrad(const at::Tensor& go, const at::Tensor& weight, at::IntArrayRef inputSize, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::ScalarType compute, const at::Tensor& reluOut) {
  const Geometry g(go.size(0), inputSize[0], inputSize[1], weight.size(0), weight.size(2), weight.size(3), stride, padding);
  if (go.dim() != 4 || go.size(1) != g.c || go.size(2) != g.oh || go.size(3) != g.ow)
    throw std::invalid_argument("singleChannelConvInputGrad: output gradient shape does not match the convolution");
  if (reluOut.defined() && reluOut.sizes() != go.sizes())
    throw std::invalid_argument("singleChannelConvInputGrad: ReLU output shape does not match the output gradient");
  checkApplies(at::empty({1, 1, g.h, g.w}, go.options()), weight, stride, padding);
  auto out = at::empty({g.n, 1, g.h, g.w}, go.options().dtype(at::kFloat));
#ifdef ROBUSTLAB_X86_KERNELS
  // The gradient and the mask in one dtype, so that one kernel instance reads both.
  const auto gc = go.contiguous();
  const auto mc = reluOut.defined() ? reluOut.to(gc.scalar_type()).contiguous() : at::Tensor();
  const auto taps = roundedValues(weight, compute);
  std::vector<float> w(static_cast<size_t>(g.c * kLanes), 0.0f);  // each channel's taps in 16 lanes
  for (int64_t oc = 0; oc < g.c; ++oc) std::copy_n(taps.data() + oc * g.taps(), g.taps(), w.data() + oc * kLanes);
  if (kernelPath() == KernelPath::kAvx2) avx2::inputGrad(g, gc, mc, w, out);
  else avx512::inputGrad(g, gc, mc, w, out);
#endif
  return out;
}

}  // namespace robustlab
