#pragma once
// A 2-D convolution layer (torch::nn::Conv2d, same parameters and checkpoint names) that takes the
// fastest measured CPU kernels for its shape.
//
// Attacks need the gradient with respect to the image, and the first layer of an MNIST-style model
// reads a one-channel image: oneDNN (LibTorch 1.13's CPU convolution) vectorises over input channels
// and has one. Such a layer runs robustlab's single-channel kernels (framework/conv_kernels.h) for its
// forward pass and input gradient on AVX-512 CPUs; weight and bias gradients stay LibTorch's. Where
// those kernels do not run, the input gradient of a layer with few input channels takes LibTorch's
// im2col kernel (`_slow_conv2d_backward`), 2-8x faster there than oneDNN's backward-data kernel
// (BENCHMARKS.md, "The first convolution"). On the avx2 kernel path, an fp32 layer with input and output
// channels in multiples of 8 runs robustlab's multi-channel kernels (kernels/direct_conv.h) for its
// forward pass and input gradient instead of oneDNN's AVX2 ones. Every other layer is torch::nn::Conv2d.
#include <torch/nn/modules/conv.h>

namespace robustlab {

/// Whether the input gradient of a CPU convolution with this many input channels, in this compute
/// dtype, is computed with the im2col kernel (measured faster: one input channel in bf16, up to four
/// in fp32, groups 1, no dilation).
bool useIm2colInputGrad(int64_t inChannels, at::ScalarType computeDtype);

/// Input gradient of a convolution by the im2col kernel, accumulated in fp32 and returned in x's dtype:
/// `go` the output gradient, `x` the layer's input (only its shape and dtype are read), `weight` the
/// weight the forward pass used (groups 1, no dilation).
torch::Tensor im2colConvInputGrad(const torch::Tensor& go, const torch::Tensor& x, const torch::Tensor& weight,
                                  at::IntArrayRef stride, at::IntArrayRef padding);

/// torch::nn::Conv2d with the input gradient taken by the im2col kernel where that is faster.
class ConvImpl : public torch::nn::Conv2dImpl {
 public:
  explicit ConvImpl(const torch::nn::Conv2dOptions& options) : torch::nn::Conv2dImpl(options) {}
  torch::Tensor forward(const torch::Tensor& x);

  /// Zero padding given as numbers (not "same"/"valid", not reflect or circular): the case with
  /// explicit stride and padding vectors below.
  bool plainPadding() const;
  std::vector<int64_t> stride2() const;
  std::vector<int64_t> padding2() const;  ///< needs plainPadding()
  /// Whether an input gradient for x is taken by the im2col kernel: CPU, plain padding, groups 1, no
  /// dilation, and useIm2colInputGrad for the layer's input channels and x's compute dtype.
  bool im2colFor(const torch::Tensor& x) const;
  /// Whether the forward pass and the input gradient on x are taken by the single-channel kernels
  /// (framework/conv_kernels.h): plain padding, groups 1, no dilation, and singleChannelConvApplies.
  bool kernelsFor(const torch::Tensor& x) const;
  /// Whether the forward pass and the input gradient on x are taken by the multi-channel fp32 kernels
  /// (framework/models/kernels/direct_conv.h): plain padding, groups 1, no dilation, fp32 compute, and
  /// directConvApplies (the avx2 kernel path).
  bool directFor(const torch::Tensor& x) const;

 private:
  /// Zero padding given as numbers, groups 1, no dilation: what both faster paths need.
  bool plainGeometry() const;
  c10::optional<torch::Tensor> optionalBias() const;
};
TORCH_MODULE(Conv);

}  // namespace robustlab
