#include "framework/conv_kernels.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
// GCC 12's AVX-512 headers build masked intrinsics on _mm512_undefined_*(), which -Wmaybe-uninitialized
// reports at every use in this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define ROBUSTLAB_AVX512_KERNELS 1
#define ROBUSTLAB_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define ROBUSTLAB_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

namespace robustlab {
namespace {

std::atomic<bool> gEnabled{true};

bool cpuSupportsKernels() {
#ifdef ROBUSTLAB_AVX512_KERNELS
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return ok;
#else
  return false;
#endif
}

/// The CPU's bf16 dot product (vdpbf16ps: two bf16 products summed into each fp32 lane).
bool cpuHasBf16Dot() {
#ifdef ROBUSTLAB_AVX512_KERNELS
  static const bool ok = cpuSupportsKernels() && __builtin_cpu_supports("avx512bf16");
  return ok;
#else
  return false;
#endif
}

constexpr int64_t kLanes = 16;

/// Shapes of one single-channel convolution, with the column-phase layout both passes use: padded
/// input column xp = j * sw + q lives in phase q at index j.
struct Geometry {
  int64_t n, h, w, c, kh, kw, sh, sw, ph, pw;
  int64_t oh, ow;  ///< output size
  int64_t hp, wp;  ///< padded input size
  int64_t jw;      ///< columns per phase, ceil(wp / sw)
  int64_t chunks;  ///< 16-lane chunks per output row (forward) or phase row (backward)

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
  /// Row length of the phase buffers: every 16-lane load of every chunk stays inside (and reads zeros
  /// past the data), with `left` zero columns in front.
  int64_t rowLen(int64_t left) const { return left + chunks * kLanes + kLanes; }
};

#ifdef ROBUSTLAB_AVX512_KERNELS

/// Values as the kernels read them: fp32, rounded to `compute` first (what autocast's cast does).
std::vector<float> roundedValues(const at::Tensor& t, at::ScalarType compute) {
  const auto src = t.to(compute).to(at::kFloat).contiguous();
  return std::vector<float>(src.data_ptr<float>(), src.data_ptr<float>() + src.numel());
}


/// Forward weights per block of 8 output channels, tap-major inside a block (then channel by channel).
std::vector<float> packForward(const std::vector<float>& w, const Geometry& g) {
  const int64_t taps = g.taps();
  std::vector<float> out(w.size());
  int64_t oc = 0;
  for (; oc + 8 <= g.c; oc += 8)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t b = 0; b < 8; ++b) out[oc * taps + t * 8 + b] = w[(oc + b) * taps + t];
  for (; oc < g.c; ++oc)
    for (int64_t t = 0; t < taps; ++t) out[oc * taps + t] = w[oc * taps + t];
  return out;
}

/// fp32 -> bf16 bits, round to nearest even and NaN to 0x7fc0: c10::BFloat16's rounding, 16 at a time.
ROBUSTLAB_AVX512 __m256i toBf16(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i hi = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  hi = _mm512_mask_mov_epi32(hi, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7fc0));
  return _mm512_cvtepi32_epi16(hi);
}

/// Up to 16 values of a row as fp32 (lanes past `m` read as zero).
ROBUSTLAB_AVX512 __m512 loadRow(const float* src, __mmask16 m) { return _mm512_maskz_loadu_ps(m, src); }
ROBUSTLAB_AVX512 __m512 loadRow(const c10::BFloat16* src, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, src)), 16));
}

/// v rounded to bf16 precision, kept as fp32 (the low 16 bits cleared after rounding).
ROBUSTLAB_AVX512 __m512 roundToBf16(__m512 v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(toBf16(v)), 16));
}

ROBUSTLAB_AVX512 void storeRow(float* dst, __m512 v, __mmask16 m) { _mm512_mask_storeu_ps(dst, m, v); }
ROBUSTLAB_AVX512 void storeRow(c10::BFloat16* dst, __m512 v, __mmask16 m) { _mm256_mask_storeu_epi16(dst, m, toBf16(v)); }

__mmask16 laneMask(int64_t count) { return static_cast<__mmask16>(count >= kLanes ? 0xffff : (1u << count) - 1); }

/// Output channels [oc, oc + B) of one image: for each output row and 16-column chunk, B accumulators,
/// each tap one load shared by the B channels. `wb` holds this block's weights tap-major (wb[t * B + b]).
template <int B, typename TO>
ROBUSTLAB_AVX512 void forwardBlock(const Geometry& g, const float* phases, int64_t row, const int64_t* tapOff, const float* wb,
                                   const float* bias, bool relu, TO* out) {
  const int64_t taps = g.taps(), plane = g.oh * g.ow;
  __m512 b0[B];
  for (int b = 0; b < B; ++b) b0[b] = _mm512_set1_ps(bias ? bias[b] : 0.0f);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const float* src = phases + oy * g.sh * row;
    for (int64_t ox0 = 0; ox0 < g.ow; ox0 += kLanes) {
      __m512 acc[B];
      for (int b = 0; b < B; ++b) acc[b] = b0[b];
      const float* w = wb;
      for (int64_t t = 0; t < taps; ++t, w += B) {
        const __m512 v = _mm512_loadu_ps(src + tapOff[t] + ox0);
        for (int b = 0; b < B; ++b) acc[b] = _mm512_fmadd_ps(v, _mm512_set1_ps(w[b]), acc[b]);
      }
      const __mmask16 m = laneMask(g.ow - ox0);
      TO* o = out + oy * g.ow + ox0;
      for (int b = 0; b < B; ++b) {
        // max(0, acc) keeps NaN, as at::relu does.
        storeRow(o + b * plane, relu ? _mm512_max_ps(_mm512_setzero_ps(), acc[b]) : acc[b], m);
      }
    }
  }
}

/// Forward pass for images [n0, n1). Padded input column xp = j * sw + q is kept in phase q at j, so
/// every tap reads 16 consecutive output columns' inputs with one load. `wt` is the weights tap-major
/// per block of 8 output channels (then one by one for the rest), as packForward lays them out.
template <typename TI, typename TO>
ROBUSTLAB_AVX512 void forwardImages(const Geometry& g, const TI* x, const float* wt, const float* bias, bool roundIn, bool relu, TO* out,
                                    int64_t n0, int64_t n1) {
  const int64_t row = g.rowLen(0), plane = g.hp * row, taps = g.taps();
  std::vector<float> phases(static_cast<size_t>(g.sw * plane), 0.0f);  // the padding stays zero
  std::vector<int64_t> tapOff(static_cast<size_t>(taps));
  for (int64_t ky = 0; ky < g.kh; ++ky)
    for (int64_t kx = 0; kx < g.kw; ++kx) tapOff[ky * g.kw + kx] = (kx % g.sw) * plane + ky * row + kx / g.sw;
  std::vector<float> image(static_cast<size_t>(g.h * g.w));
  for (int64_t n = n0; n < n1; ++n) {
    // The image in fp32, rounded to bf16 when the compute dtype is bf16.
    const TI* xn = x + n * g.h * g.w;
    for (int64_t i = 0; i < g.h * g.w; i += kLanes) {
      const __mmask16 m = laneMask(g.h * g.w - i);
      const __m512 v = loadRow(xn + i, m);
      _mm512_mask_storeu_ps(image.data() + i, m, roundIn ? roundToBf16(v) : v);
    }
    for (int64_t q = 0; q < g.sw; ++q)
      for (int64_t i = 0; i < g.h; ++i) {
        float* dst = phases.data() + q * plane + (i + g.ph) * row;
        const float* src = image.data() + i * g.w;
        // phase q, index j holds input column j * sw + q - pw
        for (int64_t j = (g.pw - q + g.sw - 1) / g.sw, col = j * g.sw + q - g.pw; col < g.w; ++j, col += g.sw) dst[j] = src[col];
      }
    TO* on = out + n * g.c * g.oh * g.ow;
    int64_t oc = 0;
    for (; oc + 8 <= g.c; oc += 8) forwardBlock<8>(g, phases.data(), row, tapOff.data(), wt + oc * taps, bias ? bias + oc : nullptr, relu, on + oc * g.oh * g.ow);
    for (; oc < g.c; ++oc) forwardBlock<1>(g, phases.data(), row, tapOff.data(), wt + oc * taps, bias ? bias + oc : nullptr, relu, on + oc * g.oh * g.ow);
  }
}

/// Whether a forward pass takes forwardImagesDot: bf16, column stride 2, even kernel width, and a CPU
/// with the bf16 dot product.
bool dotForwardApplies(const Geometry& g, at::ScalarType compute) {
  return compute == at::kBFloat16 && g.sw == 2 && g.kw % 2 == 0 && cpuHasBf16Dot();
}

/// bf16 weights of a block of B output channels as 32-bit pairs (kx = 2m low, 2m + 1 high), ordered
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
ROBUSTLAB_AVX512_BF16 void forwardBlockDot(const Geometry& g, const uint32_t* img, int64_t rowPairs, const uint32_t* wp, const float* bias,
                                           bool relu, TO* out) {
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
      const __mmask16 msk = laneMask(g.ow - ox0);
      TO* o = out + oy * g.ow + ox0;
      for (int b = 0; b < B; ++b) storeRow(o + b * plane, relu ? _mm512_max_ps(_mm512_setzero_ps(), acc[b]) : acc[b], msk);
    }
  }
}

template <typename TI, typename TO>
ROBUSTLAB_AVX512_BF16 void forwardImagesDot(const Geometry& g, const TI* x, const uint32_t* wp, const float* bias, bool relu, TO* out,
                                            int64_t n0, int64_t n1) {
  // Rows long enough for the last chunk's loads past the data (zeros).
  const int64_t rowPairs = (g.wp + 1) / 2 + kLanes + g.kw / 2;
  std::vector<uint32_t> img(static_cast<size_t>(g.hp * rowPairs), 0u);  // the padding stays zero
  auto* cells = reinterpret_cast<uint16_t*>(img.data());                 // bf16 cell (row, column): row * 2 * rowPairs + column
  for (int64_t n = n0; n < n1; ++n) {
    const TI* xn = x + n * g.h * g.w;
    for (int64_t i = 0; i < g.h; ++i)
      for (int64_t j = 0; j < g.w; j += kLanes) {
        const __mmask16 m = laneMask(g.w - j);
        _mm256_mask_storeu_epi16(cells + (i + g.ph) * 2 * rowPairs + g.pw + j, m, toBf16(loadRow(xn + i * g.w + j, m)));
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

/// Adds the 16 tap values of one output position into the padded input gradient at `dst` (its patch's
/// top-left corner): row ky takes taps [ky * kw, ky * kw + kw).
inline __attribute__((always_inline)) ROBUSTLAB_AVX512 void scatterTaps(__m512 v, float* dst, const Geometry& g, int64_t rowLen) {
  if (g.kw == 4 && g.kh <= 4) {
    // One 128-bit lane per kernel row.
    const __m128 r0 = _mm512_extractf32x4_ps(v, 0), r1 = _mm512_extractf32x4_ps(v, 1);
    const __m128 r2 = _mm512_extractf32x4_ps(v, 2), r3 = _mm512_extractf32x4_ps(v, 3);
    const __m128 rows[4] = {r0, r1, r2, r3};
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

/// Input gradient for images [n0, n1), vectorised over the kernel's taps: for each output position,
/// the 16 tap contributions sum_oc go[oc, pos] * w[oc, taps] in one register (eight positions at a
/// time, one weight load shared by the eight), then added into the position's input patch. `wv` holds
/// each output channel's taps in 16 lanes (zeros past the last tap).
///
/// Neighbouring patches overlap (stride < kernel), and adding into a patch right after its neighbour
/// was written stalls the CPU (a load that partly overlaps a pending store cannot be forwarded from
/// it). So within an output row the positions go in groups that do not overlap: ox = 0, R, 2R, ...,
/// then 1, R + 1, ..., with R = ceil(kw / sw); the gradient rows are permuted into that order as they
/// are copied (rows of at most 16 positions; wider rows keep their order).
template <typename TG>
ROBUSTLAB_AVX512 void inputGradImages(const Geometry& g, const TG* go, const TG* mask, const float* wv, float* out, int64_t n0, int64_t n1) {
  constexpr int kPos = 8;
  const int64_t positions = g.oh * g.ow;
  const int64_t rowLen = g.wp + kLanes;  // room for a patch past the last column
  std::vector<float> gm(static_cast<size_t>(g.c * positions + kLanes));
  std::vector<float> gp(static_cast<size_t>((g.hp + g.kh) * rowLen));
  // order[k]: the output column at slot k of a row.
  const bool permute = g.ow <= kLanes;
  const int64_t groups = (g.kw + g.sw - 1) / g.sw;
  alignas(64) int32_t order[kLanes];
  for (int64_t k = 0; k < kLanes; ++k) order[k] = static_cast<int32_t>(k);
  if (permute) {
    int64_t k = 0;
    for (int64_t r = 0; r < groups; ++r)
      for (int64_t ox = r; ox < g.ow; ox += groups) order[k++] = static_cast<int32_t>(ox);
  }
  const __m512i orderIdx = _mm512_load_si512(order);
  std::vector<int64_t> patch(static_cast<size_t>(positions));
  for (int64_t oy = 0; oy < g.oh; ++oy)
    for (int64_t k = 0; k < g.ow; ++k) patch[oy * g.ow + k] = oy * g.sh * rowLen + order[permute ? k : 0] * g.sw + (permute ? 0 : k * g.sw);
  for (int64_t n = n0; n < n1; ++n) {
    // The image's output gradient in fp32, ReLU mask applied: threshold_backward's rule, zero where the
    // output is <= 0 (a NaN output passes the gradient).
    const int64_t base = n * g.c * positions;
    for (int64_t r = 0; r < g.c * g.oh; ++r)
      for (int64_t ox0 = 0; ox0 < g.ow; ox0 += kLanes) {
        const __mmask16 m = laneMask(g.ow - ox0);
        const int64_t i = base + r * g.ow + ox0;
        __m512 v = loadRow(go + i, m);
        if (mask) v = _mm512_maskz_mov_ps(~_mm512_cmp_ps_mask(loadRow(mask + i, m), _mm512_setzero_ps(), _CMP_LE_OQ), v);
        if (permute) v = _mm512_permutexvar_ps(orderIdx, v);
        _mm512_mask_storeu_ps(gm.data() + r * g.ow + ox0, m, v);
      }
    std::fill(gp.begin(), gp.end(), 0.0f);
    for (int64_t p0 = 0; p0 < positions; p0 += kPos) {
      const int64_t np = std::min<int64_t>(kPos, positions - p0);
      __m512 acc[kPos];
      for (auto& a : acc) a = _mm512_setzero_ps();
      const float* src = gm.data() + p0;
      for (int64_t oc = 0; oc < g.c; ++oc, src += positions) {
        const __m512 w = _mm512_loadu_ps(wv + oc * kLanes);
        for (int p = 0; p < kPos; ++p) acc[p] = _mm512_fmadd_ps(_mm512_set1_ps(src[p]), w, acc[p]);
      }
      // acc is read with constant indices only, so that it lives in registers: indexed by a variable, the
      // compiler kept it in memory and stored all eight accumulators on every channel.
      alignas(64) float sums[kPos][kLanes];
      for (int p = 0; p < kPos; ++p) _mm512_store_ps(sums[p], acc[p]);
      for (int64_t p = 0; p < np; ++p) scatterTaps(_mm512_load_ps(sums[p]), gp.data() + patch[p0 + p], g, rowLen);
    }
    float* on = out + n * g.h * g.w;
    for (int64_t iy = 0; iy < g.h; ++iy) std::copy_n(gp.data() + (iy + g.ph) * rowLen + g.pw, g.w, on + iy * g.w);
  }
}

#endif  // ROBUSTLAB_AVX512_KERNELS

void checkApplies(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding) {
  if (!singleChannelConvApplies(x, weight, stride, padding))
    throw std::invalid_argument("singleChannelConv: the kernels do not take this convolution (see singleChannelConvApplies)");
}

int64_t grainFor(const Geometry& g) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, g.c * g.oh * g.ow)); }

}  // namespace

bool singleChannelKernelsAvailable() { return gEnabled.load() && cpuSupportsKernels(); }

void setSingleChannelKernels(bool on) { gEnabled.store(on); }

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
#ifdef ROBUSTLAB_AVX512_KERNELS
  const auto xc = x.contiguous();
  const auto w = packForward(roundedValues(weight, compute), g);
  const auto b = bias.defined() ? roundedValues(bias, compute) : std::vector<float>{};
  const bool roundIn = compute == at::kBFloat16 && xc.scalar_type() == at::kFloat;
  const float* bp = b.empty() ? nullptr : b.data();
  const bool dot = dotForwardApplies(g, compute);
  const auto pairs = dot ? packForwardPairs(roundedValues(weight, compute), g) : std::vector<uint32_t>{};
  auto run = [&](auto* xp, auto* op) {
    at::parallel_for(0, g.n, grainFor(g), [&](int64_t n0, int64_t n1) {
      if (dot) forwardImagesDot(g, xp, pairs.data(), bp, relu, op, n0, n1);
      else forwardImages(g, xp, w.data(), bp, roundIn, relu, op, n0, n1);
    });
  };
  auto withOut = [&](auto* xp) {
    if (compute == at::kFloat) run(xp, out.data_ptr<float>());
    else run(xp, out.data_ptr<c10::BFloat16>());
  };
  if (xc.scalar_type() == at::kFloat) withOut(xc.data_ptr<float>());
  else withOut(xc.data_ptr<c10::BFloat16>());
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
#ifdef ROBUSTLAB_AVX512_KERNELS
  // The gradient and the mask in one dtype, so that one kernel instance reads both.
  const auto gc = go.contiguous();
  const auto mc = reluOut.defined() ? reluOut.to(gc.scalar_type()).contiguous() : at::Tensor();
  const auto taps = roundedValues(weight, compute);
  std::vector<float> w(static_cast<size_t>(g.c * kLanes), 0.0f);  // each channel's taps in 16 lanes
  for (int64_t oc = 0; oc < g.c; ++oc) std::copy_n(taps.data() + oc * g.taps(), g.taps(), w.data() + oc * kLanes);
  auto run = [&](auto* gp, auto* mp) {
    at::parallel_for(0, g.n, grainFor(g),
                     [&](int64_t n0, int64_t n1) { inputGradImages(g, gp, mp, w.data(), out.data_ptr<float>(), n0, n1); });
  };
  if (gc.scalar_type() == at::kFloat) run(gc.data_ptr<float>(), mc.defined() ? mc.data_ptr<float>() : nullptr);
  else run(gc.data_ptr<c10::BFloat16>(), mc.defined() ? mc.data_ptr<c10::BFloat16>() : nullptr);
#endif
  return out;
}

}  // namespace robustlab
