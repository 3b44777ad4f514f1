// The forward pass of the single-channel convolution kernels (framework/conv_kernels.h).
#include "framework/conv_kernels_detail.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

namespace robustlab {
namespace {
using namespace conv_kernels;

#ifdef ROBUSTLAB_AVX512_KERNELS

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
  const int64_t row = g.phaseRowLen(), plane = g.hp * row, taps = g.taps();
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

#endif  // ROBUSTLAB_AVX512_KERNELS

}  // namespace

at::Tensor singleChannelConv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::ScalarType compute, bool relu) {
  checkApplies(x, weight, stride, padding);
  const Geometry g(x.size(0), x.size(2), x.size(3), weight.size(0), weight.size(2), weight.size(3), stride, padding);
  auto out = at::empty({g.n, g.c, g.oh, g.ow}, x.options().dtype(compute));
#ifdef ROBUSTLAB_AVX512_KERNELS
  const auto xc = x.contiguous();
  // The weights rounded once and laid out for the one path that runs.
  const bool dot = dotForwardApplies(g, compute);
  const auto rounded = roundedValues(weight, compute);
  const auto w = dot ? std::vector<float>{} : packForward(rounded, g);
  const auto pairs = dot ? packForwardPairs(rounded, g) : std::vector<uint32_t>{};
  const auto b = bias.defined() ? roundedValues(bias, compute) : std::vector<float>{};
  const bool roundIn = compute == at::kBFloat16 && xc.scalar_type() == at::kFloat;
  const float* bp = b.empty() ? nullptr : b.data();
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

}  // namespace robustlab
