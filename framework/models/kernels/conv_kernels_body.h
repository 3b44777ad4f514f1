// The single-channel convolution kernels written once against a 16-lane fp32 vector, and compiled
// once per instruction set: conv_kernels_avx512.cpp (one __m512) and conv_kernels_avx2.cpp (two
// __m256) each define, inside their own namespace, the vector type V, the operations below and
// RL_TARGET (the function attribute that lets the compiler use that instruction set), then include
// this file. No #pragma once: it is meant to be included once per instruction set.
//
// Every output is the same sequence of fp32 fused multiply-adds on every path (each lane is one output
// value or one tap, the order of the sums does not depend on the register width), so the AVX2 and the
// AVX-512 paths give bit-identical results; only the blocking differs (kBlock output channels share a
// tap load, kPos output positions share a weight load), to fit each instruction set's registers.
//
// Expected from the including file, all RL_TARGET inline:
//   V vzero(); V vset1(float); V vloadu(const float*);       V vfmadd(V a, V b, V c)  (a * b + c)
//   V vload(const float* | const c10::BFloat16*, int64_t n)  (lanes past n read as zero)
//   void vstore(float* | c10::BFloat16*, V, int64_t n)        (lanes [0, n) only)
//   V vmax0(V)  (max(0, v), NaN kept)   V vroundBf16(V)   V vkeepWhereAbove0(V v, V out) (v where out > 0
//   or out is NaN, else 0)   Perm vperm(const int32_t* order16)   V vpermute(Perm, V)
//   void scatterTaps(V v, float* dst, const Geometry& g, int64_t rowLen)
//   constexpr int kBlock, kPos

/// Forward weights per block of kBlock output channels, tap-major inside a block (then channel by
/// channel).
inline std::vector<float> packForward(const std::vector<float>& w, const Geometry& g) {
  const int64_t taps = g.taps();
  std::vector<float> out(w.size());
  int64_t oc = 0;
  for (; oc + kBlock <= g.c; oc += kBlock)
    for (int64_t t = 0; t < taps; ++t)
      for (int64_t b = 0; b < kBlock; ++b) out[oc * taps + t * kBlock + b] = w[(oc + b) * taps + t];
  for (; oc < g.c; ++oc)
    for (int64_t t = 0; t < taps; ++t) out[oc * taps + t] = w[oc * taps + t];
  return out;
}

/// Output channels [oc, oc + B) of one image: for each output row and 16-column chunk, B accumulators,
/// each tap one load shared by the B channels. `wb` holds this block's weights tap-major (wb[t * B + b]).
template <int B, typename TO>
RL_TARGET void forwardBlock(const Geometry& g, const float* phases, int64_t row, const int64_t* tapOff, const float* wb, const float* bias,
                            bool relu, TO* out) {
  const int64_t taps = g.taps(), plane = g.oh * g.ow;
  V b0[B];
  for (int b = 0; b < B; ++b) b0[b] = vset1(bias ? bias[b] : 0.0f);
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const float* src = phases + oy * g.sh * row;
    for (int64_t ox0 = 0; ox0 < g.ow; ox0 += kLanes) {
      V acc[B];
      for (int b = 0; b < B; ++b) acc[b] = b0[b];
      const float* w = wb;
      for (int64_t t = 0; t < taps; ++t, w += B) {
        const V v = vloadu(src + tapOff[t] + ox0);
        for (int b = 0; b < B; ++b) acc[b] = vfmadd(v, vset1(w[b]), acc[b]);
      }
      TO* o = out + oy * g.ow + ox0;
      for (int b = 0; b < B; ++b) vstore(o + b * plane, relu ? vmax0(acc[b]) : acc[b], g.ow - ox0);
    }
  }
}

/// Forward pass for images [n0, n1). Padded input column xp = j * sw + q is kept in phase q at j, so
/// every tap reads 16 consecutive output columns' inputs with one load. `wt` is the weights as
/// packForward lays them out.
template <typename TI, typename TO>
RL_TARGET void forwardImages(const Geometry& g, const TI* x, const float* wt, const float* bias, bool roundIn, bool relu, TO* out, int64_t n0,
                             int64_t n1) {
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
      const V v = vload(xn + i, g.h * g.w - i);
      vstore(image.data() + i, roundIn ? vroundBf16(v) : v, g.h * g.w - i);
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
    for (; oc + kBlock <= g.c; oc += kBlock)
      forwardBlock<kBlock>(g, phases.data(), row, tapOff.data(), wt + oc * taps, bias ? bias + oc : nullptr, relu, on + oc * g.oh * g.ow);
    for (; oc < g.c; ++oc)
      forwardBlock<1>(g, phases.data(), row, tapOff.data(), wt + oc * taps, bias ? bias + oc : nullptr, relu, on + oc * g.oh * g.ow);
  }
}

/// The fp32-FMA forward pass of singleChannelConv over every image (`out` N x C x OH x OW in the compute
/// dtype): weights and bias already rounded to the compute dtype.
inline void forwardAll(const Geometry& g, const at::Tensor& xc, const std::vector<float>& rounded, const float* bias, at::ScalarType compute,
                       bool relu, at::Tensor& out) {
  const auto w = packForward(rounded, g);
  const bool roundIn = compute == at::kBFloat16 && xc.scalar_type() == at::kFloat;
  withDataPointers(xc, out, [&](auto* xp, auto* op) {
    at::parallel_for(0, g.n, grainFor(g), [&](int64_t n0, int64_t n1) { forwardImages(g, xp, w.data(), bias, roundIn, relu, op, n0, n1); });
  });
}

/// Input gradient for images [n0, n1), vectorised over the kernel's taps: for each output position,
/// the 16 tap contributions sum_oc go[oc, pos] * w[oc, taps] in one vector (kPos positions at a time,
/// one weight load shared by them), then added into the position's input patch. `wv` holds each output
/// channel's taps in 16 lanes (zeros past the last tap).
///
/// Neighbouring patches overlap (stride < kernel), and adding into a patch right after its neighbour
/// was written stalls the CPU (a load that partly overlaps a pending store cannot be forwarded from
/// it). So within an output row the positions go in groups that do not overlap: ox = 0, R, 2R, ...,
/// then 1, R + 1, ..., with R = ceil(kw / sw); the gradient rows are permuted into that order as they
/// are copied (rows of at most 16 positions; wider rows keep their order). Measured on AVX-512: 0.25-0.30
/// against 0.35 ms for 128 images in the natural order (the default model's first layer, 1 thread).
template <typename TG>
RL_TARGET void inputGradImages(const Geometry& g, const TG* go, const TG* mask, const float* wv, float* out, int64_t n0, int64_t n1) {
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
  const Perm perm = vperm(order);
  std::vector<int64_t> patch(static_cast<size_t>(positions));
  for (int64_t oy = 0; oy < g.oh; ++oy)
    for (int64_t k = 0; k < g.ow; ++k) patch[oy * g.ow + k] = oy * g.sh * rowLen + order[permute ? k : 0] * g.sw + (permute ? 0 : k * g.sw);
  for (int64_t n = n0; n < n1; ++n) {
    // The image's output gradient in fp32, ReLU mask applied: threshold_backward's rule, zero where the
    // output is <= 0 (a NaN output passes the gradient).
    const int64_t base = n * g.c * positions;
    for (int64_t r = 0; r < g.c * g.oh; ++r)
      for (int64_t ox0 = 0; ox0 < g.ow; ox0 += kLanes) {
        const int64_t i = base + r * g.ow + ox0, left = g.ow - ox0;
        V v = vload(go + i, left);
        if (mask) v = vkeepWhereAbove0(v, vload(mask + i, left));
        if (permute) v = vpermute(perm, v);
        vstore(gm.data() + r * g.ow + ox0, v, left);
      }
    std::fill(gp.begin(), gp.end(), 0.0f);
    for (int64_t p0 = 0; p0 < positions; p0 += kPos) {
      const int64_t np = std::min<int64_t>(kPos, positions - p0);
      V acc[kPos];
      for (auto& a : acc) a = vzero();
      const float* src = gm.data() + p0;
      for (int64_t oc = 0; oc < g.c; ++oc, src += positions) {
        const V w = vloadu(wv + oc * kLanes);
        for (int p = 0; p < kPos; ++p) acc[p] = vfmadd(vset1(src[p]), w, acc[p]);
      }
      // acc is read with constant indices only, so that it lives in registers: indexed by a variable, the
      // compiler kept it in memory and stored all the accumulators on every channel.
      alignas(64) float sums[kPos][kLanes];
      for (int p = 0; p < kPos; ++p) vstore(sums[p], acc[p], kLanes);
      for (int64_t p = 0; p < np; ++p) scatterTaps(vloadu(sums[p]), gp.data() + patch[p0 + p], g, rowLen);
    }
    float* on = out + n * g.h * g.w;
    for (int64_t iy = 0; iy < g.h; ++iy) std::copy_n(gp.data() + (iy + g.ph) * rowLen + g.pw, g.w, on + iy * g.w);
  }
}

/// The input gradient over every image: `gc` the output gradient and `mc` the ReLU output (or
/// undefined) in one dtype, `w` each channel's taps in 16 lanes, `out` N x 1 x H x W fp32.
inline void inputGradAll(const Geometry& g, const at::Tensor& gc, const at::Tensor& mc, const std::vector<float>& w, at::Tensor& out) {
  auto run = [&](auto* gp, auto* mp) {
    at::parallel_for(0, g.n, grainFor(g), [&](int64_t n0, int64_t n1) { inputGradImages(g, gp, mp, w.data(), out.data_ptr<float>(), n0, n1); });
  };
  if (gc.scalar_type() == at::kFloat) run(gc.data_ptr<float>(), mc.defined() ? mc.data_ptr<float>() : nullptr);
  else run(gc.data_ptr<c10::BFloat16>(), mc.defined() ? mc.data_ptr<c10::BFloat16>() : nullptr);
}
