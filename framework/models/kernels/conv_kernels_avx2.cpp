// The single-channel convolution kernels for AVX2 + FMA CPUs (every x86-64 CPU since about 2013 that
// has no AVX-512): a 16-lane vector is two __m256. The same FMAs in the same order as the AVX-512
// path (conv_kernels_body.h), so the results are bit-identical to it; AVX2 has no bf16 dot product, so
// a bf16 forward pass rounds its inputs to bf16 and sums the exact products in fp32, as the AVX-512
// path does where the CPU lacks AVX-512 BF16.
#include "framework/models/kernels/conv_kernels_detail.h"

#ifdef ROBUSTLAB_X86_KERNELS

#include <ATen/Parallel.h>

#include <immintrin.h>

#include <cstring>

namespace robustlab::conv_kernels::avx2 {

#define RL_TARGET __attribute__((target("avx2,fma")))

namespace {

// 16 ymm registers: 4 channel blocks x 2 halves + the tap load's 2 + a broadcast, no spills.
constexpr int kBlock = 4;
constexpr int kPos = 4;

struct V {
  __m256 lo, hi;  ///< lanes 0-7, 8-15
};
/// A 16-lane permutation: each half's source lanes within a half, and which half they come from.
struct Perm {
  __m256i lo, hi;
  __m256 fromHiLo, fromHiHi;  ///< all-ones where the source lane is in the high half
};

/// Lane mask for lanes [base, base + 8) below `count`.
inline RL_TARGET __m256i countMask(int64_t count, int base) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int64_t left = std::max<int64_t>(0, std::min<int64_t>(8, count - base));
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lanes);
}

inline RL_TARGET V vzero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline RL_TARGET V vset1(float f) { return {_mm256_set1_ps(f), _mm256_set1_ps(f)}; }
inline RL_TARGET V vloadu(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline RL_TARGET V vfmadd(V a, V b, V c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }
inline RL_TARGET V vload(const float* p, int64_t n) {
  if (n >= kLanes) return vloadu(p);
  return {_mm256_maskload_ps(p, countMask(n, 0)), _mm256_maskload_ps(p + 8, countMask(n, 8))};
}
/// 8 bf16 values -> fp32 (exact: bf16 is fp32's upper half).
inline RL_TARGET __m256 widen(__m128i bits) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16)); }
inline RL_TARGET V vload(const c10::BFloat16* p, int64_t n) {
  alignas(32) uint16_t t[kLanes] = {};
  const void* src = p;
  if (n < kLanes) {
    std::memcpy(t, p, static_cast<size_t>(std::max<int64_t>(0, n)) * sizeof(uint16_t));
    src = t;
  }
  const __m256i bits = _mm256_loadu_si256(static_cast<const __m256i*>(src));
  return {widen(_mm256_castsi256_si128(bits)), widen(_mm256_extracti128_si256(bits, 1))};
}
inline RL_TARGET void vstore(float* p, V v, int64_t n) {
  if (n >= kLanes) {
    _mm256_storeu_ps(p, v.lo);
    _mm256_storeu_ps(p + 8, v.hi);
    return;
  }
  _mm256_maskstore_ps(p, countMask(n, 0), v.lo);
  _mm256_maskstore_ps(p + 8, countMask(n, 8), v.hi);
}
/// fp32 -> bf16 bits in the low 16 bits of each 32-bit lane: round to nearest even, NaN to 0x7fc0
/// (c10::BFloat16's rounding, the same as the AVX-512 path's).
inline RL_TARGET __m256i bf16Bits(__m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  const __m256i hi = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  return _mm256_blendv_epi8(hi, _mm256_set1_epi32(0x7fc0), _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
}
inline RL_TARGET void vstore(c10::BFloat16* p, V v, int64_t n) {
  // packus interleaves the 128-bit halves: [lo0-3, hi0-3, lo4-7, hi4-7] -> reorder the 64-bit quarters.
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bf16Bits(v.lo), bf16Bits(v.hi)), 0xd8);
  if (n >= kLanes) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), packed);
    return;
  }
  alignas(32) uint16_t t[kLanes];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), packed);
  std::memcpy(p, t, static_cast<size_t>(std::max<int64_t>(0, n)) * sizeof(uint16_t));
}
// max(0, v) keeps NaN, as at::relu does (the second operand is returned when either is NaN).
inline RL_TARGET V vmax0(V v) { return {_mm256_max_ps(_mm256_setzero_ps(), v.lo), _mm256_max_ps(_mm256_setzero_ps(), v.hi)}; }
inline RL_TARGET __m256 roundHalf(__m256 v) { return _mm256_castsi256_ps(_mm256_slli_epi32(bf16Bits(v), 16)); }
inline RL_TARGET V vroundBf16(V v) { return {roundHalf(v.lo), roundHalf(v.hi)}; }
inline RL_TARGET __m256 keepHalf(__m256 v, __m256 out) { return _mm256_andnot_ps(_mm256_cmp_ps(out, _mm256_setzero_ps(), _CMP_LE_OQ), v); }
inline RL_TARGET V vkeepWhereAbove0(V v, V out) { return {keepHalf(v.lo, out.lo), keepHalf(v.hi, out.hi)}; }
inline RL_TARGET Perm vperm(const int32_t* order) {
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(order));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(order + 8));
  const __m256i seven = _mm256_set1_epi32(7);
  return {_mm256_and_si256(lo, seven), _mm256_and_si256(hi, seven), _mm256_castsi256_ps(_mm256_cmpgt_epi32(lo, seven)),
          _mm256_castsi256_ps(_mm256_cmpgt_epi32(hi, seven))};
}
/// One half of a 16-lane permutation: lanes idx of the low half, or of the high half where fromHi.
inline RL_TARGET __m256 permuteHalf(V v, __m256i idx, __m256 fromHi) {
  return _mm256_blendv_ps(_mm256_permutevar8x32_ps(v.lo, idx), _mm256_permutevar8x32_ps(v.hi, idx), fromHi);
}
inline RL_TARGET V vpermute(const Perm& p, V v) { return {permuteHalf(v, p.lo, p.fromHiLo), permuteHalf(v, p.hi, p.fromHiHi)}; }

/// Adds the 16 tap values of one output position into the padded input gradient at `dst` (its patch's
/// top-left corner): row ky takes taps [ky * kw, ky * kw + kw).
inline __attribute__((always_inline)) RL_TARGET void scatterTaps(V v, float* dst, const Geometry& g, int64_t rowLen) {
  if (g.kw == 4 && g.kh <= 4) {
    // One 128-bit half per kernel row.
    const __m128 rows[4] = {_mm256_castps256_ps128(v.lo), _mm256_extractf128_ps(v.lo, 1), _mm256_castps256_ps128(v.hi),
                            _mm256_extractf128_ps(v.hi, 1)};
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      float* d = dst + ky * rowLen;
      _mm_storeu_ps(d, _mm_add_ps(_mm_loadu_ps(d), rows[ky]));
    }
    return;
  }
  alignas(32) float t[kLanes];
  _mm256_store_ps(t, v.lo);
  _mm256_store_ps(t + 8, v.hi);
  for (int64_t ky = 0; ky < g.kh; ++ky)
    for (int64_t kx = 0; kx < g.kw; ++kx) dst[ky * rowLen + kx] += t[ky * g.kw + kx];
}

#include "framework/models/kernels/conv_kernels_body.h"

}  // namespace

void forward(const Geometry& g, const at::Tensor& x, const std::vector<float>& rounded, const float* bias, at::ScalarType compute, bool relu,
             at::Tensor& out) {
  forwardAll(g, x, rounded, bias, compute, relu, out);
}

void inputGrad(const Geometry& g, const at::Tensor& go, const at::Tensor& mask, const std::vector<float>& taps, at::Tensor& out) {
  inputGradAll(g, go, mask, taps, out);
}

#undef RL_TARGET

}  // namespace robustlab::conv_kernels::avx2

#endif  // ROBUSTLAB_X86_KERNELS
