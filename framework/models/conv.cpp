#include "framework/models/conv.h"

#include "framework/models/kernels/conv_kernels.h"
#include "framework/models/kernels/direct_conv.h"
#include "framework/runtime/runtime.h"

#include <ATen/ops/_slow_conv2d_backward.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <torch/autograd.h>
#include <torch/version.h>

#include <utility>

namespace robustlab {
namespace {

// LibTorch's option variants are c10::variant in 1.x and std::variant from 2.0.
#if TORCH_VERSION_MAJOR >= 2
using std::get;
using std::holds_alternative;
#else
using c10::get;
using c10::holds_alternative;
#endif
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::vector<int64_t> pair(const torch::ExpandingArray<2>& a) { return {(*a)[0], (*a)[1]}; }

/// The weight and bias gradients the autograd context asks for (undefined otherwise), by
/// at::convolution_backward on the tensors the forward pass convolved. With `computeIn`, the forward
/// pass convolved x and weight cast to that dtype (what autocast would have differentiated): they are
/// cast here, only when a gradient is asked for, and the gradients come back in weight's dtype
/// (autocast's cast is differentiable).
std::pair<torch::Tensor, torch::Tensor> weightAndBiasGrads(AutogradContext* ctx, const torch::Tensor& go, const torch::Tensor& x,
                                                           const torch::Tensor& weight, const std::vector<int64_t>& stride,
                                                           const std::vector<int64_t>& padding,
                                                           c10::optional<at::ScalarType> computeIn = c10::nullopt) {
  const bool needW = ctx->needs_input_grad(1);
  const bool needB = ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2);
  if (!needW && !needB) return {};
  const auto in = [&](const torch::Tensor& t) { return computeIn ? t.to(*computeIn) : t; };
  const auto wc = in(weight);
  auto g = at::convolution_backward(in(go), in(x), wc, std::vector<int64_t>{wc.size(0)}, stride, padding, {1, 1}, false, {0, 0}, 1,
                                    {false, needW, needB});
  const auto back = [&](const torch::Tensor& t) { return computeIn && t.defined() ? t.to(weight.scalar_type()) : t; };
  return {back(std::get<1>(g)), back(std::get<2>(g))};
}

/// Forward through at::convolution; backward with the im2col kernel for the input gradient and
/// at::convolution_backward for the weight and bias gradients.
struct Im2colInputGradConv : torch::autograd::Function<Im2colInputGradConv> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const c10::optional<torch::Tensor>& biasArg, std::vector<int64_t> stride, std::vector<int64_t> padding) {
    const torch::Tensor bias = biasArg.value_or(torch::Tensor());
    // Under autocast the convolution runs in the autocast dtype: cast here, once, so the backward pass
    // differentiates exactly what the forward pass computed.
    const auto dtype = cpuComputeDtype(x);
    const auto xc = x.to(dtype);
    const auto wc = weight.to(dtype);
    const auto bc = bias.defined() ? bias.to(dtype) : bias;
    // x itself (not xc) for the im2col kernel, which reads only its shape: no cast in the backward pass.
    ctx->save_for_backward({xc, wc, x});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["has_bias"] = bias.defined();
    return at::convolution(xc, wc, bc, stride, padding, {1, 1}, false, {0, 0}, 1);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& xc = saved[0];
    const auto& wc = saved[1];
    const auto& x = saved[2];
    const auto stride = ctx->saved_data["stride"].toIntVector();
    const auto padding = ctx->saved_data["padding"].toIntVector();
    const auto& go = grads[0];
    torch::Tensor gx;
    if (ctx->needs_input_grad(0)) {
      gx = im2colConvInputGrad(go, x, wc, stride, padding);
    }
    const auto [gw, gb] = weightAndBiasGrads(ctx, go, xc, wc, stride, padding);
    return {gx, gw, gb, torch::Tensor(), torch::Tensor()};
  }
};

/// Forward and input gradient by the single-channel kernels (framework/conv_kernels.h); weight and bias
/// gradients by at::convolution_backward on the same cast tensors.
struct SingleChannelConvFn : torch::autograd::Function<SingleChannelConvFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const c10::optional<torch::Tensor>& biasArg, std::vector<int64_t> stride, std::vector<int64_t> padding) {
    const torch::Tensor bias = biasArg.value_or(torch::Tensor());
    const auto dtype = cpuComputeDtype(x);
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["has_bias"] = bias.defined();
    ctx->saved_data["dtype"] = static_cast<int64_t>(dtype);
    return singleChannelConv(x, weight, bias, stride, padding, dtype, /*relu=*/false);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto stride = ctx->saved_data["stride"].toIntVector();
    const auto padding = ctx->saved_data["padding"].toIntVector();
    const auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    const auto& go = grads[0];
    torch::Tensor gx;
    if (ctx->needs_input_grad(0))
      gx = singleChannelConvInputGrad(go, weight, {x.size(2), x.size(3)}, stride, padding, dtype).to(x.scalar_type());
    const auto [gw, gb] = weightAndBiasGrads(ctx, go, x, weight, stride, padding, dtype);
    return {gx, gw, gb, torch::Tensor(), torch::Tensor()};
  }
};

/// fp32 forward pass and input gradient by the multi-channel AVX2 kernels (kernels/direct_conv.h); weight
/// and bias gradients by at::convolution_backward.
struct DirectConvFn : torch::autograd::Function<DirectConvFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const c10::optional<torch::Tensor>& biasArg, std::vector<int64_t> stride, std::vector<int64_t> padding) {
    const torch::Tensor bias = biasArg.value_or(torch::Tensor());
    ctx->save_for_backward({x, weight});
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["has_bias"] = bias.defined();
    return directConv(x, weight, bias, stride, padding, /*relu=*/false);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto stride = ctx->saved_data["stride"].toIntVector();
    const auto padding = ctx->saved_data["padding"].toIntVector();
    const auto go = grads[0].contiguous();
    torch::Tensor gx;
    if (ctx->needs_input_grad(0)) gx = directConvInputGrad(go, weight, {x.size(2), x.size(3)}, stride, padding);
    const auto [gw, gb] = weightAndBiasGrads(ctx, go, x, weight, stride, padding);
    return {gx, gw, gb, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool useIm2colInputGrad(int64_t inChannels, at::ScalarType computeDtype) {
  return computeDtype == torch::kFloat32 ? inChannels <= 4 : inChannels == 1;
}

torch::Tensor im2colConvInputGrad(const torch::Tensor& go, const torch::Tensor& x, const torch::Tensor& weight,
                                  at::IntArrayRef stride, at::IntArrayRef padding) {
  // The im2col kernel runs in fp32 (its bf16 variant is slower than oneDNN's); the gradient goes back in
  // the caller's input dtype without a round trip through the compute dtype.
  const auto f32 = torch::kFloat32;
  return std::get<0>(at::_slow_conv2d_backward(go.to(f32), x.to(f32), weight.to(f32), {weight.size(2), weight.size(3)}, stride,
                                               padding, {true, false, false}))
      .to(x.scalar_type());
}

bool ConvImpl::plainPadding() const {
  return holds_alternative<torch::ExpandingArray<2>>(options.padding()) && holds_alternative<torch::enumtype::kZeros>(options.padding_mode());
}

std::vector<int64_t> ConvImpl::stride2() const { return pair(options.stride()); }

std::vector<int64_t> ConvImpl::padding2() const { return pair(get<torch::ExpandingArray<2>>(options.padding())); }

bool ConvImpl::plainGeometry() const {
  const auto& o = options;
  return plainPadding() && o.groups() == 1 && (*o.dilation())[0] == 1 && (*o.dilation())[1] == 1;
}

bool ConvImpl::im2colFor(const torch::Tensor& x) const {
  return x.device().is_cpu() && plainGeometry() && useIm2colInputGrad(options.in_channels(), cpuComputeDtype(x));
}

c10::optional<torch::Tensor> ConvImpl::optionalBias() const {
  // Custom autograd functions take an absent tensor argument as an empty optional, not an undefined tensor.
  return bias.defined() ? c10::optional<torch::Tensor>(bias) : c10::nullopt;
}

bool ConvImpl::kernelsFor(const torch::Tensor& x) const {
  return plainGeometry() && singleChannelConvApplies(x, weight, stride2(), padding2());
}

bool ConvImpl::directFor(const torch::Tensor& x) const {
  return plainGeometry() && cpuComputeDtype(x) == torch::kFloat32 && directConvApplies(x, weight, stride2(), padding2()) &&
         (!bias.defined() || bias.scalar_type() == torch::kFloat32);
}

torch::Tensor ConvImpl::forward(const torch::Tensor& x) {
  const bool grad = torch::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
  if (kernelsFor(x)) {
    if (grad) return SingleChannelConvFn::apply(x, weight, optionalBias(), stride2(), padding2());
    return singleChannelConv(x, weight, bias, stride2(), padding2(), cpuComputeDtype(x), /*relu=*/false);
  }
  if (directFor(x)) {
    if (grad) return DirectConvFn::apply(x, weight, optionalBias(), stride2(), padding2());
    return directConv(x, weight, bias, stride2(), padding2(), /*relu=*/false);
  }
  if (!(x.requires_grad() && torch::GradMode::is_enabled() && im2colFor(x))) return torch::nn::Conv2dImpl::forward(x);
  return Im2colInputGradConv::apply(x, weight, optionalBias(), stride2(), padding2());
}

}  // namespace robustlab
