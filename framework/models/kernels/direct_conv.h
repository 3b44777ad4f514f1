#pragma once
// fp32 CPU kernels for a convolution over many input channels (the second layer of the small CNNs and
// every layer after it): the forward pass and the input gradient, a ReLU after the layer fused into
// both, written for AVX2 + FMA.
//
// They do not depend on which AVX2 kernel a given oneDNN picks for these small layers (a 7 x 7 output,
// 16 input channels, 4 x 4 taps, stride 2) on a given CPU. Measured so far only on a Zen 5 running the
// AVX2 paths, where they are level with oneDNN's AVX2 kernels, both at about the FMA peak
// (BENCHMARKS.md); on an AVX2-only CPU they are not yet measured. The kernels here are a direct convolution
// per image: the image is copied once into a zero-bordered buffer, and a register block of 6 output
// positions x 16 output channels (12 accumulators) runs through every (input channel, tap) pair, each
// step one 16-channel weight load shared by the 6 positions and one broadcast input value per position.
// The input gradient is the same product transposed: a block of 6 output positions x 16 (tap, input
// channel) columns runs through the output channels, and each block is added into the image's
// zero-bordered gradient, channels innermost.
//
// Numerics: the same fp32 products as LibTorch's convolution, summed in a fixed order (the bias
// first, then input channels and taps in the weight's memory order; for the input gradient, output
// channels in order, then output positions in order): only the summation order differs from oneDNN's,
// and every image's numbers are the same in any batch, on any number of threads.
//
// They run where the kernel path in use is avx2 (conv_kernels.h: an AVX2 + FMA CPU without AVX-512, or
// ROBUSTLAB_KERNELS=avx2). On AVX-512 CPUs robustlab's fp32 models keep oneDNN's AVX-512 kernels.
// ROBUSTLAB_DIRECT_CONV=0 switches them off (LibTorch's kernels on the avx2 path too), for A/B runs.
#include <ATen/core/Tensor.h>

namespace robustlab {

/// Whether the kernels are in use: the avx2 kernel path, and ROBUSTLAB_DIRECT_CONV not 0.
bool directConvKernelsOn();

/// Whether the kernels take conv2d(x, weight) with this stride and zero padding: the avx2 kernel path
/// in use (and ROBUSTLAB_DIRECT_CONV is not 0), CPU fp32 tensors, x N x C x H x W and weight O x C x KH x KW with C >= 2, C and O multiples
/// of 8, padding < kernel size, and the kernel fitting inside the padded input.
bool directConvApplies(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding);

/// conv2d(x, weight, bias, stride, padding), then ReLU when `relu` (max(0, v), NaN kept), in fp32;
/// returns N x O x OH x OW. `bias` may be undefined. Throws std::invalid_argument unless directConvApplies.
at::Tensor directConv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::IntArrayRef stride,
                      at::IntArrayRef padding, bool relu);

/// Gradient of directConv with respect to x, fp32 N x C x H x W: `go` the fp32 output gradient,
/// `inputSize` {H, W}. With `reluOut` defined (the forward pass's fused-ReLU output), go counts only
/// where reluOut > 0 or is NaN, as ReLU's backward (threshold_backward) passes it.
at::Tensor directConvInputGrad(const at::Tensor& go, const at::Tensor& weight, at::IntArrayRef inputSize, at::IntArrayRef stride,
                               at::IntArrayRef padding, const at::Tensor& reluOut = {});

}  // namespace robustlab
