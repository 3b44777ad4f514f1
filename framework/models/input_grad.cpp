#include "framework/models/input_grad.h"

#include "framework/models/conv.h"
#include "framework/models/torchscript.h"
#include "framework/models/kernels/conv_kernels.h"
#include "framework/models/kernels/direct_conv.h"
#include "framework/runtime/chunks.h"
#include "framework/runtime/runtime.h"

#include <ATen/core/Reduction.h>
#include <ATen/ops/_log_softmax.h>
#include <ATen/ops/_log_softmax_backward_data.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/nll_loss_backward.h>
#include <ATen/ops/nll_loss_forward.h>
#include <ATen/ops/threshold_backward.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

namespace robustlab {
namespace {

enum class Kind { kConv, kRelu, kFlatten, kLinear, kIdentity, kOther, kFusedRelu /* computed by the conv before it */ };

Kind kindOf(const std::shared_ptr<torch::nn::Module>& m) {
  if (auto* c = dynamic_cast<ConvImpl*>(m.get())) return c->plainPadding() ? Kind::kConv : Kind::kOther;
  if (auto* r = dynamic_cast<torch::nn::ReLUImpl*>(m.get())) return r->options.inplace() ? Kind::kOther : Kind::kRelu;
  if (auto* f = dynamic_cast<torch::nn::FlattenImpl*>(m.get()))
    return f->options.start_dim() == 1 && f->options.end_dim() == -1 ? Kind::kFlatten : Kind::kOther;
  if (dynamic_cast<torch::nn::LinearImpl*>(m.get())) return Kind::kLinear;
  if (dynamic_cast<torch::nn::DropoutImpl*>(m.get())) return m->is_training() ? Kind::kOther : Kind::kIdentity;
  return Kind::kOther;
}

/// The cast autocast applies to an argument of a lower-precision op (conv, linear).
torch::Tensor autocastArg(const torch::Tensor& t) {
  return t.defined() && t.is_floating_point() ? t.to(cpuComputeDtype(t)) : t;
}

/// What the backward pass of one layer needs from the forward pass.
struct Saved {
  Kind kind;
  torch::nn::Module* module;
  torch::Tensor in;   ///< the layer's input before any autocast cast (conv, linear)
  torch::Tensor cin;  ///< the input as the kernel saw it (after the cast)
  torch::Tensor w;    ///< the weight as the kernel saw it
  torch::Tensor out;  ///< the layer's output (relu; a kernel conv with the ReLU fused: the ReLU's output)
  bool kernels = false;  ///< conv: taken by the single-channel kernels
  bool direct = false;   ///< conv: taken by the multi-channel fp32 kernels
};

torch::Tensor linearForward(Saved& s, torch::nn::LinearImpl& l, const torch::Tensor& h) {
  s.in = h;
  s.cin = autocastArg(h);
  s.w = autocastArg(l.weight);
  return at::linear(s.cin, s.w, autocastArg(l.bias));
}

torch::Tensor linearBackward(const Saved& s, const torch::Tensor& g) {
  // AddmmBackward0 for mat1 (row-major input): grad.mm(mat2.t()) with mat2 = weight.t().
  auto gi = g.mm(s.w);
  return s.cin.scalar_type() != s.in.scalar_type() ? gi.to(s.in.scalar_type()) : gi;  // ToCopyBackward0
}

/// The backbone's layers and the linear layer that makes the logits.
struct Plain {
  std::vector<Saved> layers;
  torch::nn::LinearImpl* head = nullptr;
};

/// One record per backbone layer, kinds filled in, or std::nullopt when the manual path cannot follow
/// the model (see supportsManualInputGrad). A TorchScript backbone contributes its lowered chain; a
/// TorchScript classifier used as it is has no head, and the chain's last linear layer is the head.
std::optional<Plain> plainLayers(ClassifierImpl& model) {
  if (model.is_training()) return std::nullopt;
  for (const auto& p : model.parameters())
    if (p.requires_grad()) return std::nullopt;
  Plain out;
  auto add = [&](const std::shared_ptr<torch::nn::Module>& m) {
    const Kind kind = kindOf(m);
    out.layers.push_back(Saved{kind, m.get(), {}, {}, {}, {}});
    return kind != Kind::kOther;
  };
  for (const auto& m : model.backbone()->children()) {
    if (auto* script = dynamic_cast<ScriptModelImpl*>(m.get())) {
      if (!script->lowered()) return std::nullopt;
      for (const auto& l : script->lowered()->children())
        if (!add(l)) return std::nullopt;
    } else if (!add(m)) {
      return std::nullopt;
    }
  }
  if (model.head()) {
    out.head = model.head().get();
  } else {
    if (out.layers.empty() || out.layers.back().kind != Kind::kLinear) return std::nullopt;
    out.head = dynamic_cast<torch::nn::LinearImpl*>(out.layers.back().module);
    out.layers.pop_back();
  }
  return out;
}

}  // namespace

bool supportsManualInputGrad(ClassifierImpl& model) { return plainLayers(model).has_value(); }

namespace {

/// Layer i's convolution forward, saving what its backward needs; a following ReLU is fused into
/// robustlab's own kernels (single-channel, or multi-channel fp32) where they run (the same numbers as
/// at::relu of it), and i then skips it.
torch::Tensor convForward(std::vector<Saved>& saved, size_t& i, const torch::Tensor& h) {
  Saved& s = saved[i];
  auto& c = *dynamic_cast<ConvImpl*>(s.module);
  s.in = h;
  s.kernels = c.kernelsFor(h);
  s.direct = !s.kernels && c.directFor(h);
  if (s.kernels || s.direct) {
    const bool fuse = i + 1 < saved.size() && saved[i + 1].kind == Kind::kRelu;
    s.w = c.weight;
    auto out = s.kernels ? singleChannelConv(h, c.weight, c.bias, c.stride2(), c.padding2(), cpuComputeDtype(h), fuse)
                         : directConv(h, c.weight, c.bias, c.stride2(), c.padding2(), fuse);
    if (fuse) {
      s.out = out;
      saved[++i].kind = Kind::kFusedRelu;
    }
    return out;
  }
  s.cin = autocastArg(h);
  s.w = autocastArg(c.weight);
  const auto& o = c.options;
  return at::convolution(s.cin, s.w, autocastArg(c.bias), c.stride2(), c.padding2(), {(*o.dilation())[0], (*o.dilation())[1]}, false, {0, 0},
                         o.groups());
}

torch::Tensor convBackward(const Saved& s, const torch::Tensor& g) {
  auto& c = *dynamic_cast<ConvImpl*>(s.module);
  if (s.kernels)  // s.out is defined when the ReLU after it was fused: its backward is applied here.
    return singleChannelConvInputGrad(g, s.w, {s.in.size(2), s.in.size(3)}, c.stride2(), c.padding2(), cpuComputeDtype(s.in), s.out)
        .to(s.in.scalar_type());
  if (s.direct) return directConvInputGrad(g.contiguous(), s.w, {s.in.size(2), s.in.size(3)}, c.stride2(), c.padding2(), s.out);
  if (c.im2colFor(s.in)) return im2colConvInputGrad(g, s.in, s.w, c.stride2(), c.padding2());
  const auto& o = c.options;
  auto gi = std::get<0>(at::convolution_backward(g, s.cin, s.w, std::vector<int64_t>{s.w.size(0)}, c.stride2(), c.padding2(),
                                                 {(*o.dilation())[0], (*o.dilation())[1]}, false, {0, 0}, o.groups(), {true, false, false}));
  return s.cin.scalar_type() != s.in.scalar_type() ? gi.to(s.in.scalar_type()) : gi;
}

/// One chunk of rows: the forward pass saving what the backward needs, then the backward.
InputGrad inputGradOf(ClassifierImpl& model, Plain plain, const torch::Tensor& x, const torch::Tensor& labels, bool negate) {
  std::vector<Saved>& saved = plain.layers;
  torch::NoGradGuard noGrad;
  torch::Tensor h = model.normalises() ? (x - model.inputMean()) / model.inputStd() : x;
  for (size_t i = 0; i < saved.size(); ++i) {
    Saved& s = saved[i];
    switch (s.kind) {
      case Kind::kConv: h = convForward(saved, i, h); break;
      case Kind::kRelu: h = s.out = at::relu(h); break;
      case Kind::kFlatten: s.in = h; h = h.flatten(1); break;
      case Kind::kLinear: h = linearForward(s, *dynamic_cast<torch::nn::LinearImpl*>(s.module), h); break;
      default: break;
    }
  }
  Saved head{Kind::kLinear, plain.head, {}, {}, {}, {}};
  const auto raw = linearForward(head, *plain.head, h);
  const auto logits = raw.to(torch::kFloat32);
  // F::cross_entropy(reduction none) = nll_loss(log_softmax(logits)); autograd's backward of its sum.
  const auto logProb = at::_log_softmax(logits, 1, false);
  const auto [nll, totalWeight] = at::nll_loss_forward(logProb, labels, {}, at::Reduction::None, -100);
  const auto seed = negate ? -torch::ones_like(nll) : torch::ones_like(nll);
  auto g = at::nll_loss_backward(seed, logProb, labels, {}, at::Reduction::None, -100, totalWeight);
  g = at::_log_softmax_backward_data(g, logProb, 1, torch::kFloat32);
  if (raw.scalar_type() != torch::kFloat32) g = g.to(raw.scalar_type());
  g = linearBackward(head, g);
  for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
    switch (it->kind) {
      case Kind::kConv: g = convBackward(*it, g); break;
      case Kind::kRelu: g = at::threshold_backward(g, it->out, 0); break;
      case Kind::kFlatten: g = g.reshape(it->in.sizes()); break;
      case Kind::kLinear: g = linearBackward(*it, g); break;
      default: break;
    }
  }
  if (model.normalises()) g = g / model.inputStd();
  return InputGrad{negate ? -nll : nll, logits, g.to(x.scalar_type())};
}

}  // namespace

std::optional<InputGrad> crossEntropyInputGrad(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& labels, bool negate) {
  // CPU only: that is where the graph's bookkeeping was measured to matter, and where the casts below
  // are autocast's (CPU autocast state).
  if (!x.device().is_cpu()) return std::nullopt;
  auto plain = plainLayers(model);
  if (!plain) return std::nullopt;
  const int64_t n = x.size(0);
  const int chunks = chunksFor(n);
  if (chunks == 1) return inputGradOf(model, *plain, x, labels, negate);
  // Each example's loss, logits and gradient depend on its own row only (eval mode, summed loss), so
  // contiguous chunks of rows on separate cores give every row what the whole batch gives it, up to
  // the kernels' summation order for a smaller batch (framework/runtime/chunks.h).
  std::vector<InputGrad> parts(static_cast<size_t>(chunks));
  runChunks(chunks, [&](int i) {
    const auto [b, e] = chunkRows(n, chunks, i);
    parts[static_cast<size_t>(i)] = inputGradOf(model, *plain, x.slice(0, b, e), labels.slice(0, b, e), negate);
  });
  std::vector<torch::Tensor> loss, logits, grad;
  for (auto& p : parts) {
    loss.push_back(p.loss);
    logits.push_back(p.logits);
    grad.push_back(p.grad);
  }
  return InputGrad{torch::cat(loss), torch::cat(logits), torch::cat(grad)};
}

}  // namespace robustlab
