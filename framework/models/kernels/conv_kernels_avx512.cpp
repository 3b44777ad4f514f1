// The single-channel convolution kernels for AVX-512 (F, BW, VL) CPUs: one __m512 per 16-lane vector,
// lane masks for partial rows; and, on CPUs with AVX-512 BF16, a bf16 forward pass with the CPU's bf16
// dot product (vdpbf16ps: two bf16 products summed into each fp32 lane, as oneDNN does).
#include "framework/models/kernels/conv_kernels_detail.h"

#ifdef ROBUSTLAB_X86_KERNELS

#include <ATen/Parallel.h>

#include <immintrin.h>

// GCC 12's AVX-512 headers build masked intrinsics on _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports at every use here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace robustlab::conv_kernels::avx512 {

#define RL_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
#define RL_TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,fma,avx512bf16")))

namespace {

constexpr int kBlock = 8;  // 8 accumulators + the tap load + a broadcast in 32 zmm registers
constexpr int kPos = 8;
using V = __m512;
using Perm = __m512i;

inline __mmask16 laneMask(int64_t count) { return static_cast<__mmask16>(count >= kLanes ? 0xffff : (1u << count) - 1); }

/// fp32 -> bf16 bits, round to nearest even and NaN to 0x7fc0: c10::BFloat16's rounding, 16 at a time.
inline RL_TARGET __m256i toBf16(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i hi = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  hi = _mm512_mask_mov_epi32(hi, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7fc0));
  return _mm512_cvtepi32_epi16(hi);
}

inline RL_TARGET V vzero() { return _mm512_setzero_ps(); }
inline RL_TARGET V vset1(float f) { return _mm512_set1_ps(f); }
inline RL_TARGET V vloadu(const float* p) { return _mm512_loadu_ps(p); }
inline RL_TARGET V vfmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline RL_TARGET V vload(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(laneMask(n), p); }
inline RL_TARGET V vload(const c10::BFloat16* p, int64_t n) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(laneMask(n), p)), 16));
}
inline RL_TARGET void vstore(float* p, V v, int64_t n) { _mm512_mask_storeu_ps(p, laneMask(n), v); }
inline RL_TARGET void vstore(c10::BFloat16* p, V v, int64_t n) { _mm256_mask_storeu_epi16(p, laneMask(n), toBf16(v)); }
// max(0, v) keeps NaN, as at::relu does (the second operand is returned when either is NaN).
inline RL_TARGET V vmax0(V v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }
inline RL_TARGET V vroundBf16(V v) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(toBf16(v)), 16)); }
inline RL_TARGET V vkeepWhereAbove0(V v, V out) { return _mm512_maskz_mov_ps(~_mm512_cmp_ps_mask(out, _mm512_setzero_ps(), _CMP_LE_OQ), v); }
inline RL_TARGET Perm vperm(const int32_t* order) { return _mm512_loadu_si512(order); }
inline RL_TARGET V vpermute(Perm p, V v) { return _mm512_permutexvar_ps(p, v); }

/// Adds the 16 tap values of one output position into the padded input gradient at `dst` (its patch's
/// top-left corner): row ky takes taps [ky * kw, ky * kw + kw).
inline __attribute__((always_inline)) RL_TARGET void scatterTaps(V v, float* dst, const Geometry& g, int64_t rowLen) {
  if (g.kw == 4 && g.kh <= 4) {
    // One 128-bit lane per kernel row.
    const __m128 rows[4] = {_mm512_extractf32x4_ps(v, 0), _mm512_extractf32x4_ps(v, 1), _mm512_extractf32x4_ps(v, 2),
                            _mm512_extractf32x4_ps(v, 3)};
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      float* d = dst + ky * rowLen;
      _mm_storeu_ps(d, _mm_add_ps(_mm_loadu_ps(d), rows[ky]));
    }
    return;
  }
  alignas(64) float t[kLanes];
  _mm512_store_ps(t, v);
  for (int64_t ky = 0; ky < g.kh; ++ky)
    for (int64_t kx = 0; kx < g.kw; ++kx) dst[ky * rowLen + kx] += t[ky * g.kw + kx];
}

#include "framework/models/kernels/conv_kernels_body.h"

/// bf16 weights of a block of 8 output channels as 32-bit pairs (kx = 2m low, 2m + 1 high), ordered
/// [ky][m][b]; then channel by channel for the rest.
std::vector<uint32_t> packForwardPairs(const std::vector<float>& w, const Geometry& g) {
  const int64_t taps = g.taps(), pairs = g.kw / 2;
  auto bits = [&](int64_t oc, int64_t ky, int64_t kx) {
    return static_cast<uint32_t>(c10::BFloat16(w[oc * taps + ky * g.kw + kx]).x);  // already bf16 values: exact
  };
  std::vector<uint32_t> out(static_cast<size_t>(g.c * g.kh * pairs));
  int64_t oc = 0;
  auto pack = [&](int64_t block) {
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t m = 0; m < pairs; ++m)
        for (int64_t b = 0; b < block; ++b)
          out[oc * g.kh * pairs + (ky * pairs + m) * block + b] = bits(oc + b, ky, 2 * m) | (bits(oc + b, ky, 2 * m + 1) << 16);
  };
  for (; oc + 8 <= g.c; oc += 8) pack(8);
  for (; oc < g.c; ++oc) pack(1);
  return out;
}

/// Output channels [oc, oc + B) of one image with the bf16 dot product: `img` is the zero-padded image
/// in bf16 read as 32-bit pairs (pair j of a row = columns 2j, 2j + 1), so taps kx = 2m, 2m + 1 of
/// output column ox are pair ox + m, and one vdpbf16ps adds both for 16 output columns.
template <int B, typename TO>
RL_TARGET_BF16 void forwardBlockDot(const Geometry& g, const uint32_t* img, int64_t rowPairs, const uint32_t* wp, const float* bias, bool relu,
                                    TO* out) {
  const int64_t pairs = g.kw / 2, plane = g.oh * g.ow;
  __m512 b0[B];
  for (int b = 0; b < B; ++b) b0[b] = _mm512_set1_ps(bias ? bias[b] : 0.0f);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    for (int64_t ox0 = 0; ox0 < g.ow; ox0 += kLanes) {
      __m512 acc[B];
      for (int b = 0; b < B; ++b) acc[b] = b0[b];
      const uint32_t* w = wp;
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        const uint32_t* src = img + (oy * g.sh + ky) * rowPairs + ox0;
        for (int64_t m = 0; m < pairs; ++m, w += B) {
          const __m512bh v = reinterpret_cast<__m512bh>(_mm512_loadu_si512(src + m));
          for (int b = 0; b < B; ++b) acc[b] = _mm512_dpbf16_ps(acc[b], v, reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(w[b]))));
        }
      }
      TO* o = out + oy * g.ow + ox0;
      for (int b = 0; b < B; ++b) vstore(o + b * plane, relu ? vmax0(acc[b]) : acc[b], g.ow - ox0);
    }
  }
}

template <typename TI, typename TO>
RL_TARGET_BF16 void forwardImagesDot(const Geometry& g, const TI* x, const uint32_t* wp, const float* bias, bool relu, TO* out, int64_t n0,
                                     int64_t n1) {
  // Rows long enough for the last chunk's loads past the data (zeros).
  const int64_t rowPairs = (g.wp + 1) / 2 + kLanes + g.kw / 2;
  std::vector<uint32_t> img(static_cast<size_t>(g.hp * rowPairs), 0u);  // the padding stays zero
  auto* cells = reinterpret_cast<uint16_t*>(img.data());                 // bf16 cell (row, column): row * 2 * rowPairs + column
  for (int64_t n = n0; n < n1; ++n) {
    const TI* xn = x + n * g.h * g.w;
    for (int64_t i = 0; i < g.h; ++i)
      for (int64_t j = 0; j < g.w; j += kLanes) {
        const __mmask16 m = laneMask(g.w - j);
        _mm256_mask_storeu_epi16(cells + (i + g.ph) * 2 * rowPairs + g.pw + j, m, toBf16(vload(xn + i * g.w + j, g.w - j)));
      }
    TO* on = out + n * g.c * g.oh * g.ow;
    const int64_t perChannel = g.kh * (g.kw / 2);
    int64_t oc = 0;
    for (; oc + 8 <= g.c; oc += 8)
      forwardBlockDot<8>(g, img.data(), rowPairs, wp + oc * perChannel, bias ? bias + oc : nullptr, relu, on + oc * g.oh * g.ow);
    for (; oc < g.c; ++oc)
      forwardBlockDot<1>(g, img.data(), rowPairs, wp + oc * perChannel, bias ? bias + oc : nullptr, relu, on + oc * g.oh * g.ow);
  }
}

}  // namespace

bool dotForwardApplies(const Geometry& g, at::ScalarType compute) { return compute == at::kBFloat16 && g.sw == 2 && g.kw % 2 == 0; }

void forward(const Geometry& g, const at::Tensor& x, const std::vector<float>& rounded, const float* bias, at::ScalarType compute, bool relu,
             bool dot, at::Tensor& out) {
  if (!dot) return forwardAll(g, x, rounded, bias, compute, relu, out);
  const auto pairs = packForwardPairs(rounded, g);
  withDataPointers(x, out, [&](auto* xp, auto* op) {
    at::parallel_for(0, g.n, grainFor(g), [&](int64_t n0, int64_t n1) { forwardImagesDot(g, xp, pairs.data(), bias, relu, op, n0, n1); });
  });
}

void inputGrad(const Geometry& g, const at::Tensor& go, const at::Tensor& mask, const std::vector<float>& taps, at::Tensor& out) {
  inputGradAll(g, go, mask, taps, out);
}

#undef RL_TARGET
#undef RL_TARGET_BF16

}  // namespace robustlab::conv_kernels::avx512

#endif  // ROBUSTLAB_X86_KERNELS
