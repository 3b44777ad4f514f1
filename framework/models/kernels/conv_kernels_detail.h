#pragma once
// What the single-channel convolution kernels share: framework/conv_kernels.cpp (the path in use,
// checks, dispatch) and one file per instruction set, conv_kernels_avx512.cpp and conv_kernels_avx2.cpp
// (the kernels, written once in conv_kernels_body.h). Internal to those files.
#include "framework/models/kernels/conv_kernels.h"

#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#define ROBUSTLAB_X86_KERNELS 1
#endif

namespace robustlab::conv_kernels {

constexpr int64_t kLanes = 16;

/// Shapes of one single-channel convolution, and the column-phase layout of the fp32 forward pass:
/// padded input column xp = j * sw + q lives in phase q at index j.
struct Geometry {
  int64_t n, h, w, c, kh, kw, sh, sw, ph, pw;
  int64_t oh, ow;  ///< output size
  int64_t hp, wp;  ///< padded input size
  int64_t jw;      ///< columns per phase, ceil(wp / sw)
  int64_t chunks;  ///< 16-lane chunks covering an output row and a phase row

  Geometry(int64_t n_, int64_t h_, int64_t w_, int64_t c_, int64_t kh_, int64_t kw_, at::IntArrayRef s, at::IntArrayRef p)
      : n(n_), h(h_), w(w_), c(c_), kh(kh_), kw(kw_), sh(s[0]), sw(s[1]), ph(p[0]), pw(p[1]) {
    hp = h + 2 * ph;
    wp = w + 2 * pw;
    oh = (hp - kh) / sh + 1;
    ow = (wp - kw) / sw + 1;
    jw = (wp + sw - 1) / sw;
    chunks = (std::max(ow, jw) + kLanes - 1) / kLanes;
  }
  int64_t taps() const { return kh * kw; }
  /// Row length of the forward pass's phase buffers: every 16-lane load of every chunk, shifted by up
  /// to (kw - 1) / sw columns, stays inside and reads zeros past the data.
  int64_t phaseRowLen() const { return chunks * kLanes + kLanes; }
};

/// Throws unless singleChannelConvApplies.
void checkApplies(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding);

/// Images per parallel chunk: about 32K output values.
inline int64_t grainFor(const Geometry& g) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, g.c * g.oh * g.ow)); }

/// Calls f(xp, op) with x's and out's data as float* or c10::BFloat16*, by their dtypes.
template <typename F>
void withDataPointers(const at::Tensor& x, at::Tensor& out, F&& f) {
  auto withOut = [&](auto* xp) {
    if (out.scalar_type() == at::kFloat) f(xp, out.data_ptr<float>());
    else f(xp, out.data_ptr<c10::BFloat16>());
  };
  if (x.scalar_type() == at::kFloat) withOut(x.data_ptr<float>());
  else withOut(x.data_ptr<c10::BFloat16>());
}

/// Values as the kernels read them: fp32, rounded to `compute` first (what autocast's cast does).
std::vector<float> roundedValues(const at::Tensor& t, at::ScalarType compute);

// One entry pair per instruction set (conv_kernels_avx512.cpp, conv_kernels_avx2.cpp), called only on
// a CPU that has it. forward: x contiguous (fp32 or bf16), `rounded` the weights as roundedValues gives
// them, `bias` rounded likewise or null; `out` N x C x OH x OW in `compute`. inputGrad: `go` and `mask`
// (the fused ReLU's output, or undefined) contiguous in one dtype, `taps` each channel's taps in 16
// lanes; `out` N x 1 x H x W fp32.
#ifdef ROBUSTLAB_X86_KERNELS
namespace avx512 {
/// `dot`: the bf16 forward pass with the CPU's bf16 dot product (dotForwardApplies).
void forward(const Geometry& g, const at::Tensor& x, const std::vector<float>& rounded, const float* bias, at::ScalarType compute, bool relu,
             bool dot, at::Tensor& out);
void inputGrad(const Geometry& g, const at::Tensor& go, const at::Tensor& mask, const std::vector<float>& taps, at::Tensor& out);
/// bf16, column stride 2, even kernel width: what the bf16 dot-product forward pass takes.
bool dotForwardApplies(const Geometry& g, at::ScalarType compute);
}  // namespace avx512
namespace avx2 {
void forward(const Geometry& g, const at::Tensor& x, const std::vector<float>& rounded, const float* bias, at::ScalarType compute, bool relu,
             at::Tensor& out);
void inputGrad(const Geometry& g, const at::Tensor& go, const at::Tensor& mask, const std::vector<float>& taps, at::Tensor& out);
}  // namespace avx2
#endif

}  // namespace robustlab::conv_kernels
