#pragma once
// What the single-channel convolution kernels share (framework/conv_kernels.cpp: availability, checks,
// input gradient; conv_kernels_forward.cpp: forward pass). Internal to those two files.
#include "framework/conv_kernels.h"

#include <c10/util/BFloat16.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
// GCC 12's AVX-512 headers build masked intrinsics on _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports at every use in the kernel files (the only files that include this header).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define ROBUSTLAB_AVX512_KERNELS 1
#define ROBUSTLAB_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define ROBUSTLAB_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

namespace robustlab::conv_kernels {

constexpr int64_t kLanes = 16;

/// x86-64 with AVX-512 F, BW and VL (what every kernel needs).
bool cpuSupportsKernels();
/// The CPU's bf16 dot product (vdpbf16ps: two bf16 products summed into each fp32 lane).
bool cpuHasBf16Dot();

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

#ifdef ROBUSTLAB_AVX512_KERNELS

/// Values as the kernels read them: fp32, rounded to `compute` first (what autocast's cast does).
std::vector<float> roundedValues(const at::Tensor& t, at::ScalarType compute);

/// fp32 -> bf16 bits, round to nearest even and NaN to 0x7fc0: c10::BFloat16's rounding, 16 at a time.
inline ROBUSTLAB_AVX512 __m256i toBf16(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i hi = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  hi = _mm512_mask_mov_epi32(hi, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7fc0));
  return _mm512_cvtepi32_epi16(hi);
}

/// Up to 16 values of a row as fp32 (lanes past `m` read as zero).
inline ROBUSTLAB_AVX512 __m512 loadRow(const float* src, __mmask16 m) { return _mm512_maskz_loadu_ps(m, src); }
inline ROBUSTLAB_AVX512 __m512 loadRow(const c10::BFloat16* src, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src)), 16));
}

/// v rounded to bf16 precision, kept as fp32 (the low 16 bits cleared after rounding).
inline ROBUSTLAB_AVX512 __m512 roundToBf16(__m512 v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(toBf16(v)), 16));
}

inline ROBUSTLAB_AVX512 void storeRow(float* dst, __m512 v, __mmask16 m) { _mm512_mask_storeu_ps(dst, m, v); }
inline ROBUSTLAB_AVX512 void storeRow(c10::BFloat16* dst, __m512 v, __mmask16 m) { _mm256_mask_storeu_epi16(dst, m, toBf16(v)); }

inline __mmask16 laneMask(int64_t count) { return static_cast<__mmask16>(count >= kLanes ? 0xffff : (1u << count) - 1); }

#endif  // ROBUSTLAB_AVX512_KERNELS

}  // namespace robustlab::conv_kernels
