#pragma once
// Error bounds for comparing two computations of the same sums, derived from the arithmetic rather
// than fitted to one CPU (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., §3.1-3.4).
//
// A sum of n terms computed in floating point with unit roundoff u, in any order, with a rounding after
// each operation, is within gamma(n, u) * S of the exact sum, where S is the sum of the terms'
// magnitudes (for a convolution: the same convolution over |x| and |w|). Products of two bf16 values are
// exact in fp32 (8 + 8 significant bits fit in 24), so a kernel that rounds its operands to bf16 and
// sums in fp32 makes fp32 errors only, plus one bf16 rounding of the result when it stores bf16.
//
// LibTorch computes bf16 on a CPU in one of two ways, and the bound of a reference depends on which:
// - converted: oneDNN on a CPU with native bf16 support (AVX-512 BW/VL/DQ for LibTorch's check, AVX-512
//   BF16 or AMX in hardware, emulated in fp32 where the hardware lacks them) multiplies bf16 and sums in
//   fp32, then rounds once to bf16: gamma(n, kUnitFp32) + kUnitBf16.
// - emulated: elsewhere (an AVX2-only CPU, or oneDNN switched off) LibTorch's own kernels sum in fp32
//   but may round to bf16 several times in sequence: gamma(n, kUnitFp32) + gamma(r, kUnitBf16) for r
//   roundings (libtorchBf16Bound says which).
#include "framework/runtime/runtime.h"

#include <ATen/Context.h>
#include <torch/types.h>

#include <cstdint>
#include <limits>

namespace robustlab::test {

inline constexpr double kUnitFp32 = 0x1p-24;  ///< 24-bit significand, round to nearest
inline constexpr double kUnitBf16 = 0x1p-8;   ///< 8-bit significand, round to nearest

/// gamma_n = n u / (1 - n u); +inf once n u >= 1 (no bound).
inline double gamma(int64_t n, double u) {
  const double nu = static_cast<double>(n) * u;
  return nu < 1 ? nu / (1 - nu) : std::numeric_limits<double>::infinity();
}

/// Whether LibTorch's CPU bf16 convolutions and matrix products go through oneDNN here (converted), as
/// LibTorch decides it: oneDNN switched on and a CPU with AVX-512 BW, VL and DQ; robustlab's
/// PrecisionGuard switches oneDNN off for bf16 where ONEDNN_MAX_CPU_ISA holds it below AVX-512.
inline bool libtorchBf16IsConverted() {
  return at::globalContext().userEnabledMkldnn() && !onednnLacksBf16() && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

/// The relative bound (times S) of LibTorch's bf16 result of an n-term sum against the exact sum.
/// Converted: fp32 sums, one rounding to bf16. Emulated: LibTorch's own kernels sum the bf16 products in
/// fp32 too (its matrix product accumulates in fp32), but may then round `emulatedRoundings` times in
/// sequence: a convolution's input gradient adds each overlapping patch's contribution into a bf16 image
/// (col2im), 1 + ceil(kh / sh) * ceil(kw / sw) roundings; its weight and bias gradients accumulate in
/// fp32 and round once.
inline double libtorchBf16Bound(int64_t n, int64_t emulatedRoundings) {
  const double sums = gamma(n, kUnitFp32);
  return libtorchBf16IsConverted() ? sums + kUnitBf16 * (1 + sums) : sums + gamma(emulatedRoundings, kUnitBf16) * (1 + sums);
}

/// Largest excess of |a - b| over bound * s, elementwise (<= 0 when every element is within its bound).
inline double excess(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& s, double bound) {
  return ((a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs() - bound * s.to(torch::kFloat64)).max().item<double>();
}

/// Largest ratio |a - b| / (bound * s) (<= 1 when within bounds), for messages.
inline double usedFraction(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& s, double bound) {
  const auto d = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs();
  return (d / (bound * s.to(torch::kFloat64)).clamp_min(1e-300)).max().item<double>();
}

}  // namespace robustlab::test
