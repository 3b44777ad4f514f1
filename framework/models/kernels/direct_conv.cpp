// The multi-channel fp32 convolution kernels (direct_conv.h): shapes and checks, then the AVX2 + FMA
// code, one image at a time on at::parallel_for's threads.
#include "framework/models/kernels/direct_conv.h"

#include "framework/models/kernels/conv_kernels.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ROBUSTLAB_DIRECT_X86 1
#endif

namespace robustlab {
namespace {

/// One convolution's sizes: input C x H x W (padded: hp x wp), weight O x C x KH x KW, output OH x OW.
struct Shape {
  int64_t n, c, h, w, o, kh, kw, sh, sw, ph, pw;
  int64_t hp, wp, oh, ow;

  Shape(int64_t n_, int64_t c_, int64_t h_, int64_t w_, const at::Tensor& weight, at::IntArrayRef s, at::IntArrayRef p)
      : n(n_), c(c_), h(h_), w(w_), o(weight.size(0)), kh(weight.size(2)), kw(weight.size(3)), sh(s[0]), sw(s[1]), ph(p[0]), pw(p[1]) {
    hp = h + 2 * ph;
    wp = w + 2 * pw;
    oh = (hp - kh) / sh + 1;
    ow = (wp - kw) / sw + 1;
  }
  int64_t positions() const { return oh * ow; }
  int64_t taps() const { return kh * kw; }
  int64_t k() const { return c * kh * kw; }  ///< terms per output value
};

/// Images per parallel chunk: about 64K multiply-adds of work or more.
int64_t grainOf(const Shape& g) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, g.positions() * g.o * g.k())); }

/// ReLU as at::relu computes it: max(0, v), NaN kept, -0 made +0.
inline float relu(float v) { return v > 0 || std::isnan(v) ? v : 0.0f; }

void check(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding) {
  if (!directConvApplies(x, weight, stride, padding))
    throw std::invalid_argument("directConv: the kernels do not take this convolution (see directConvApplies)");
}

#ifdef ROBUSTLAB_DIRECT_X86
#define RL_TARGET __attribute__((target("avx2,fma")))

constexpr int kPos = 6;  ///< output positions per register block: 6 x 2 accumulators + 2 weights + 1 broadcast of 16 ymm

/// Forward pass, output positions [p0, p0 + P) of one image, output channels [ob, ob + 8 V): the bias,
/// then every (input channel, tap) term in the weight's memory order. `base` the positions' offsets in
/// the padded image, `off` each term's offset from there, `wt` the weights term-major (wt[k * O + oc]);
/// the sums go to tmp[p * O + oc].
template <int P, int V>
RL_TARGET void forwardBlock(const Shape& g, const float* xpad, const int64_t* base, const int64_t* off, const float* wt, const float* bias,
                            int64_t ob, float* tmp) {
  __m256 acc[P][V];
  for (int v = 0; v < V; ++v) {
    const __m256 b = bias ? _mm256_loadu_ps(bias + ob + 8 * v) : _mm256_setzero_ps();
    for (int p = 0; p < P; ++p) acc[p][v] = b;
  }
  const int64_t terms = g.k();
  const float* w = wt + ob;
  for (int64_t k = 0; k < terms; ++k, w += g.o) {
    __m256 wv[V];
    for (int v = 0; v < V; ++v) wv[v] = _mm256_loadu_ps(w + 8 * v);
    const float* src = xpad + off[k];
    for (int p = 0; p < P; ++p) {
      const __m256 xv = _mm256_broadcast_ss(src + base[p]);
      for (int v = 0; v < V; ++v) acc[p][v] = _mm256_fmadd_ps(xv, wv[v], acc[p][v]);
    }
  }
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < V; ++v) _mm256_storeu_ps(tmp + p * g.o + ob + 8 * v, acc[p][v]);
}

template <int V>
RL_TARGET void forwardBlockOf(int np, const Shape& g, const float* xpad, const int64_t* base, const int64_t* off, const float* wt,
                              const float* bias, int64_t ob, float* tmp) {
  switch (np) {
    case 6: forwardBlock<6, V>(g, xpad, base, off, wt, bias, ob, tmp); break;
    case 5: forwardBlock<5, V>(g, xpad, base, off, wt, bias, ob, tmp); break;
    case 4: forwardBlock<4, V>(g, xpad, base, off, wt, bias, ob, tmp); break;
    case 3: forwardBlock<3, V>(g, xpad, base, off, wt, bias, ob, tmp); break;
    case 2: forwardBlock<2, V>(g, xpad, base, off, wt, bias, ob, tmp); break;
    default: forwardBlock<1, V>(g, xpad, base, off, wt, bias, ob, tmp); break;
  }
}

/// Images [n0, n1) of the forward pass.
RL_TARGET void forwardImages(const Shape& g, const float* x, const float* wt, const float* bias, bool applyRelu, float* out, int64_t n0,
                             int64_t n1) {
  const int64_t positions = g.positions(), plane = g.hp * g.wp;
  std::vector<float> xpad(static_cast<size_t>(g.c * plane), 0.0f);  // the border stays zero
  std::vector<float> tmp(static_cast<size_t>(positions * g.o));
  std::vector<int64_t> base(static_cast<size_t>(positions)), off(static_cast<size_t>(g.k()));
  for (int64_t p = 0; p < positions; ++p) base[p] = (p / g.ow) * g.sh * g.wp + (p % g.ow) * g.sw;
  for (int64_t ic = 0, k = 0; ic < g.c; ++ic)
    for (int64_t ky = 0; ky < g.kh; ++ky)
      for (int64_t kx = 0; kx < g.kw; ++kx) off[k++] = ic * plane + ky * g.wp + kx;
  for (int64_t n = n0; n < n1; ++n) {
    const float* xi = x + n * g.c * g.h * g.w;
    for (int64_t ic = 0; ic < g.c; ++ic)
      for (int64_t y = 0; y < g.h; ++y)
        std::memcpy(xpad.data() + ic * plane + (y + g.ph) * g.wp + g.pw, xi + (ic * g.h + y) * g.w, static_cast<size_t>(g.w) * sizeof(float));
    for (int64_t ob = 0; ob < g.o; ob += 16) {
      for (int64_t p0 = 0; p0 < positions; p0 += kPos) {
        const int np = static_cast<int>(std::min<int64_t>(kPos, positions - p0));
        if (g.o - ob >= 16) forwardBlockOf<2>(np, g, xpad.data(), base.data() + p0, off.data(), wt, bias, ob, tmp.data() + p0 * g.o);
        else forwardBlockOf<1>(np, g, xpad.data(), base.data() + p0, off.data(), wt, bias, ob, tmp.data() + p0 * g.o);
      }
    }
    float* o = out + n * g.o * positions;
    for (int64_t oc = 0; oc < g.o; ++oc)
      for (int64_t p = 0; p < positions; ++p) {
        const float v = tmp[p * g.o + oc];
        o[oc * positions + p] = applyRelu ? relu(v) : v;
      }
  }
}

/// Input gradient, output positions [p0, p0 + P) of one image and columns [jb, jb + 8 V) of the
/// transposed weight (column j: tap j / C, input channel j % C): sums over the output channels in order,
/// then added into the padded, channels-innermost gradient image at each position's patch.
/// `gm` the masked output gradient (gm[oc * positions + p]), `wc` the weights column-major by output
/// channel (wc[oc * K + j]), `pbase` the positions' offsets and `joff` each 8-column vector's offset.
template <int P, int V>
RL_TARGET void inputGradBlock(const Shape& g, const float* gm, const float* wc, const int64_t* pbase, const int64_t* joff, int64_t p0,
                              int64_t jb, float* gpad) {
  __m256 acc[P][V];
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < V; ++v) acc[p][v] = _mm256_setzero_ps();
  const int64_t positions = g.positions(), cols = g.k();
  const float* w = wc + jb;
  const float* gp = gm + p0;
  for (int64_t oc = 0; oc < g.o; ++oc, w += cols, gp += positions) {
    __m256 wv[V];
    for (int v = 0; v < V; ++v) wv[v] = _mm256_loadu_ps(w + 8 * v);
    for (int p = 0; p < P; ++p) {
      const __m256 gv = _mm256_broadcast_ss(gp + p);
      for (int v = 0; v < V; ++v) acc[p][v] = _mm256_fmadd_ps(gv, wv[v], acc[p][v]);
    }
  }
  for (int p = 0; p < P; ++p)
    for (int v = 0; v < V; ++v) {
      float* d = gpad + pbase[p0 + p] + joff[jb / 8 + v];
      _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), acc[p][v]));
    }
}

template <int V>
RL_TARGET void inputGradBlockOf(int np, const Shape& g, const float* gm, const float* wc, const int64_t* pbase, const int64_t* joff, int64_t p0,
                                int64_t jb, float* gpad) {
  switch (np) {
    case 6: inputGradBlock<6, V>(g, gm, wc, pbase, joff, p0, jb, gpad); break;
    case 5: inputGradBlock<5, V>(g, gm, wc, pbase, joff, p0, jb, gpad); break;
    case 4: inputGradBlock<4, V>(g, gm, wc, pbase, joff, p0, jb, gpad); break;
    case 3: inputGradBlock<3, V>(g, gm, wc, pbase, joff, p0, jb, gpad); break;
    case 2: inputGradBlock<2, V>(g, gm, wc, pbase, joff, p0, jb, gpad); break;
    default: inputGradBlock<1, V>(g, gm, wc, pbase, joff, p0, jb, gpad); break;
  }
}

/// Images [n0, n1) of the input gradient.
RL_TARGET void inputGradImages(const Shape& g, const float* go, const float* mask, const float* wc, float* out, int64_t n0, int64_t n1) {
  const int64_t positions = g.positions(), cols = g.k();
  std::vector<float> gm(static_cast<size_t>(g.o * positions));
  std::vector<float> gpad(static_cast<size_t>(g.hp * g.wp * g.c));
  std::vector<int64_t> pbase(static_cast<size_t>(positions)), joff(static_cast<size_t>(cols / 8));
  for (int64_t p = 0; p < positions; ++p) pbase[p] = ((p / g.ow) * g.sh * g.wp + (p % g.ow) * g.sw) * g.c;
  for (int64_t j = 0; j < cols; j += 8) {
    const int64_t tap = j / g.c;
    joff[j / 8] = ((tap / g.kw) * g.wp + tap % g.kw) * g.c + j % g.c;
  }
  for (int64_t n = n0; n < n1; ++n) {
    const float* gi = go + n * g.o * positions;
    if (mask) {
      const float* mi = mask + n * g.o * positions;
      for (int64_t i = 0; i < g.o * positions; ++i) gm[i] = mi[i] <= 0 ? 0.0f : gi[i];  // threshold_backward(g, out, 0)
    } else {
      std::memcpy(gm.data(), gi, static_cast<size_t>(g.o * positions) * sizeof(float));
    }
    std::fill(gpad.begin(), gpad.end(), 0.0f);
    for (int64_t jb = 0; jb < cols; jb += 16) {
      for (int64_t p0 = 0; p0 < positions; p0 += kPos) {
        const int np = static_cast<int>(std::min<int64_t>(kPos, positions - p0));
        if (cols - jb >= 16) inputGradBlockOf<2>(np, g, gm.data(), wc, pbase.data(), joff.data(), p0, jb, gpad.data());
        else inputGradBlockOf<1>(np, g, gm.data(), wc, pbase.data(), joff.data(), p0, jb, gpad.data());
      }
    }
    float* o = out + n * g.c * g.h * g.w;
    for (int64_t ic = 0; ic < g.c; ++ic)
      for (int64_t y = 0; y < g.h; ++y)
        for (int64_t x = 0; x < g.w; ++x) o[(ic * g.h + y) * g.w + x] = gpad[((y + g.ph) * g.wp + x + g.pw) * g.c + ic];
  }
}

#undef RL_TARGET
#endif  // ROBUSTLAB_DIRECT_X86

}  // namespace

bool directConvKernelsOn() {
#ifdef ROBUSTLAB_DIRECT_X86
  // ROBUSTLAB_DIRECT_CONV=0 leaves these layers to LibTorch on the avx2 path too: for A/B benchmarks.
  static const bool enabled = [] {
    const char* env = std::getenv("ROBUSTLAB_DIRECT_CONV");
    return !(env && std::string(env) == "0");
  }();
  return enabled && kernelPath() == KernelPath::kAvx2;
#else
  return false;
#endif
}

bool directConvApplies(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding) {
#ifdef ROBUSTLAB_DIRECT_X86
  if (!directConvKernelsOn()) return false;
  if (!x.defined() || !weight.defined() || !x.device().is_cpu() || !weight.device().is_cpu()) return false;
  if (x.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat || x.dim() != 4 || weight.dim() != 4) return false;
  if (stride.size() != 2 || padding.size() != 2 || stride[0] < 1 || stride[1] < 1 || padding[0] < 0 || padding[1] < 0) return false;
  const int64_t c = x.size(1), o = weight.size(0), kh = weight.size(2), kw = weight.size(3);
  return weight.size(1) == c && c >= 2 && c % 8 == 0 && o >= 8 && o % 8 == 0 && padding[0] < kh && padding[1] < kw &&
         x.size(2) + 2 * padding[0] >= kh && x.size(3) + 2 * padding[1] >= kw;
#else
  return false;
#endif
}

at::Tensor directConv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::IntArrayRef stride, at::IntArrayRef padding,
                      bool relu) {
  check(x, weight, stride, padding);
  if (bias.defined() && (bias.scalar_type() != at::kFloat || bias.numel() != weight.size(0)))
    throw std::invalid_argument("directConv: the bias must be fp32 with one value per output channel");
  const Shape g(x.size(0), x.size(1), x.size(2), x.size(3), weight, stride, padding);
  auto out = at::empty({g.n, g.o, g.oh, g.ow}, x.options());
#ifdef ROBUSTLAB_DIRECT_X86
  const auto xc = x.contiguous();
  const auto wc = weight.contiguous();
  const auto bc = bias.defined() ? bias.contiguous() : bias;
  // Term-major weights: wt[k * O + oc] = weight[oc][k].
  std::vector<float> wt(static_cast<size_t>(g.k() * g.o));
  const float* w = wc.data_ptr<float>();
  for (int64_t oc = 0; oc < g.o; ++oc)
    for (int64_t k = 0; k < g.k(); ++k) wt[k * g.o + oc] = w[oc * g.k() + k];
  const float* xp = xc.data_ptr<float>();
  const float* bp = bc.defined() ? bc.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  at::parallel_for(0, g.n, grainOf(g), [&](int64_t n0, int64_t n1) { forwardImages(g, xp, wt.data(), bp, relu, op, n0, n1); });
#endif
  return out;
}

at::Tensor directConvInputGrad(const at::Tensor& go, const at::Tensor& weight, at::IntArrayRef inputSize, at::IntArrayRef stride,
                               at::IntArrayRef padding, const at::Tensor& reluOut) {
  if (go.dim() != 4 || weight.dim() != 4 || inputSize.size() != 2)
    throw std::invalid_argument("directConvInputGrad: expected a 4-d output gradient and weight and a 2-d input size");
  const Shape g(go.size(0), weight.size(1), inputSize[0], inputSize[1], weight, stride, padding);
  check(at::empty({1, g.c, g.h, g.w}, go.options()), weight, stride, padding);
  if (go.scalar_type() != at::kFloat || go.size(1) != g.o || go.size(2) != g.oh || go.size(3) != g.ow)
    throw std::invalid_argument("directConvInputGrad: the output gradient's shape or dtype does not match the convolution");
  if (reluOut.defined() && (reluOut.sizes() != go.sizes() || reluOut.scalar_type() != at::kFloat))
    throw std::invalid_argument("directConvInputGrad: the ReLU output's shape or dtype does not match the output gradient");
  auto out = at::empty({g.n, g.c, g.h, g.w}, go.options());
#ifdef ROBUSTLAB_DIRECT_X86
  const auto gc = go.contiguous();
  const auto mc = reluOut.defined() ? reluOut.contiguous() : at::Tensor();
  // The weights by output channel with columns tap-major, channels innermost: wc[oc * K + tap * C + ic].
  const auto wsrc = weight.contiguous();
  const float* w = wsrc.data_ptr<float>();
  std::vector<float> wc(static_cast<size_t>(g.o * g.k()));
  for (int64_t oc = 0; oc < g.o; ++oc)
    for (int64_t ic = 0; ic < g.c; ++ic)
      for (int64_t t = 0; t < g.taps(); ++t) wc[oc * g.k() + t * g.c + ic] = w[(oc * g.c + ic) * g.taps() + t];
  const float* gp = gc.data_ptr<float>();
  const float* mp = mc.defined() ? mc.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  at::parallel_for(0, g.n, grainOf(g), [&](int64_t n0, int64_t n1) { inputGradImages(g, gp, mp, wc.data(), op, n0, n1); });
#endif
  return out;
}

}  // namespace robustlab
