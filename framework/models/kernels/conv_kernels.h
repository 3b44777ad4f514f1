#pragma once
// CPU kernels for a convolution that reads a one-channel image: the first layer of every MNIST-style
// model, and the layer each attack step runs twice (forward, then the input gradient).
//
// oneDNN (LibTorch 1.13's CPU convolution) vectorises over input channels; with one, its forward pass
// ran at 8-60 GFLOP/s here, varying 8x from run to run, and its input gradient was slower still. The
// forward pass here vectorises over output columns instead: the stride-s input is split into s column
// phases so that every tap is one contiguous 16-float load, and each load feeds 8 output channels. The
// input gradient vectorises over the kernel's taps: per output position, one register holds its 16 tap
// contributions summed over the output channels, added into the position's input patch. In bf16 on
// CPUs with AVX-512 BF16, a forward pass with column stride 2 and an even kernel width adds two taps
// per instruction with the bf16 dot product (vdpbf16ps, as oneDNN does). A ReLU after the layer can be
// fused into both passes.
//
// Numerics are LibTorch's under autocast: inputs, weights and bias rounded to the compute dtype,
// products summed in fp32, the output rounded to the compute dtype; only the summation order differs
// from oneDNN's. The code is written once (conv_kernels_body.h) and compiled per instruction set, chosen
// at run time: AVX-512 (F, BW, VL; with or without BF16) and AVX2 + FMA, bit-identical to each other
// except for the bf16 dot product; on other CPUs LibTorch's kernels run.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace robustlab {

/// Which code runs the single-channel convolutions: LibTorch's, or robustlab's kernels for one
/// instruction set. Names: "libtorch", "avx2" (AVX2 + FMA), "avx512" (AVX-512 F, BW, VL),
/// "avx512-bf16" (avx512, and the bf16 dot product for the bf16 forward pass).
enum class KernelPath { kLibTorch, kAvx2, kAvx512, kAvx512Bf16 };

std::string kernelPathName(KernelPath p);
/// "auto" is bestKernelPath(); throws std::invalid_argument listing the names on anything else.
KernelPath parseKernelPath(const std::string& name);
/// Whether this CPU has the instructions the path needs (libtorch: always).
bool kernelPathSupported(KernelPath p);
/// The fastest path this CPU runs.
KernelPath bestKernelPath();
/// The path in use: the one setKernelPath chose, else the environment variable ROBUSTLAB_KERNELS
/// (a name or "auto"; for A/B runs and for running what another kind of CPU runs), else
/// bestKernelPath(). Throws std::invalid_argument when ROBUSTLAB_KERNELS is not a name or names a
/// path this CPU cannot run.
KernelPath kernelPath();
/// Chooses the path for the whole process; throws std::invalid_argument when the CPU cannot run it.
void setKernelPath(KernelPath p);

/// Whether robustlab's kernels are in use (kernelPath() is not libtorch).
bool singleChannelKernelsAvailable();

/// Switches the kernels off (LibTorch's run instead) or back to the default path: for tests and A/B
/// benchmarks.
void setSingleChannelKernels(bool on);

/// Whether the kernels take conv2d(x, weight) with this stride and zero padding: available, CPU tensors,
/// x N x 1 x H x W and weight C x 1 x KH x KW in fp32 or bf16, at most 16 taps, padding < kernel size.
bool singleChannelConvApplies(const at::Tensor& x, const at::Tensor& weight, at::IntArrayRef stride, at::IntArrayRef padding);

/// conv2d(x, weight, bias, stride, padding), then ReLU when `relu`, in `compute` (fp32 or bf16) as
/// described above; returns N x C x OH x OW in `compute`. `bias` may be undefined.
at::Tensor singleChannelConv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::ScalarType compute, bool relu);

/// Gradient of singleChannelConv with respect to x, in fp32 (N x 1 x H x W): `go` the output gradient
/// (fp32 or bf16), `inputSize` {H, W}. With `reluOut` defined (the forward pass's fused-ReLU output),
/// go counts only where reluOut > 0, as ReLU's backward (threshold_backward) would pass it.
at::Tensor singleChannelConvInputGrad(const at::Tensor& go, const at::Tensor& weight, at::IntArrayRef inputSize, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::ScalarType compute, const at::Tensor& reluOut = {});

}  // namespace robustlab
