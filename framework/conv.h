#pragma once
// A 2-D convolution layer (torch::nn::Conv2d, same parameters and checkpoint names) whose input
// gradient on CPU takes the fastest measured kernel for the layer's shape.
//
// Attacks need the gradient with respect to the image. For a first layer that reads a one-channel
// image, oneDNN's backward-data kernel (what LibTorch 1.13 picks on CPU) vectorises over input
// channels and has one: measured here it took 3-8x longer than the layer's forward pass, and a third
// of every PGD step on the default model. LibTorch's im2col kernel (`_slow_conv2d_backward`) computes
// the same gradient 2-8x faster for such layers (BENCHMARKS.md, "Input gradient of the first
// convolution"). The forward pass and every weight gradient are unchanged, so training is unchanged.
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
};
TORCH_MODULE(Conv);

}  // namespace robustlab
