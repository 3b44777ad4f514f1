#include "framework/training/objectives.h"

#include "framework/distributed/communicator.h"
#include "framework/models/conv.h"
#include "framework/runtime/chunks.h"
#include "framework/runtime/runtime.h"

#include <ATen/autocast_mode.h>
#include <torch/autograd.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

namespace robustlab {

void Shard::reduceGradients(const std::vector<torch::Tensor>& params, bool globalLoss) const {
  if (!comm || comm->size() == 1) return;
  torch::NoGradGuard noGrad;
  std::vector<torch::Tensor> grads;
  const double w = lossShare(globalLoss);
  for (const auto& p : params) {
    auto& g = const_cast<torch::Tensor&>(p).mutable_grad();
    if (!g.defined()) g = torch::zeros_like(p);
    if (w != 1.0) g.mul_(w);
    grads.push_back(g);
  }
  comm->allReduceSum(grads);
}

namespace F = torch::nn::functional;

bool rowIndependentInTraining(ClassifierImpl& model) {
  for (const auto& m : model.modules(/*include_self=*/false)) {
    auto* mod = m.get();
    const bool rowWise = dynamic_cast<torch::nn::SequentialImpl*>(mod) || dynamic_cast<ConvImpl*>(mod) ||
                         dynamic_cast<torch::nn::ReLUImpl*>(mod) || dynamic_cast<torch::nn::MaxPool2dImpl*>(mod) ||
                         dynamic_cast<torch::nn::AvgPool2dImpl*>(mod) || dynamic_cast<torch::nn::FlattenImpl*>(mod) ||
                         dynamic_cast<torch::nn::LinearImpl*>(mod);
    if (!rowWise) return false;
  }
  return true;
}

namespace {

BatchOutput plainStep(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y) {
  auto logits = model.forward(x);
  BatchOutput out;
  out.loss = F::cross_entropy(logits, y);
  out.correct = logits.argmax(1).eq(y).sum().item<int64_t>();
  out.count = y.size(0);
  return out;
}

}  // namespace

BatchOutput crossEntropyStep(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y) {
  const int64_t n = x.size(0);
  const int chunks = x.device().is_cpu() && torch::GradMode::is_enabled() ? chunksFor(n) : 1;
  if (chunks == 1 || !rowIndependentInTraining(model)) return plainStep(model, x, y);
  std::vector<torch::Tensor> params;
  for (const auto& p : model.parameters())
    if (p.requires_grad()) params.push_back(p);
  if (params.empty()) return plainStep(model, x, y);
  struct Part {
    torch::Tensor lossSum;
    int64_t correct = 0;
    std::vector<torch::Tensor> grads;
  };
  std::vector<Part> parts(static_cast<size_t>(chunks));
  runChunks(chunks, [&](int i) {
    // Autocast caches its casts of trainable weights per thread until its cache is cleared, which
    // PrecisionGuard does on the caller's thread only: a worker's must go with its chunk, or the next
    // step would compute with the weights before the optimiser's update.
    struct ClearCasts {
      ~ClearCasts() { at::autocast::clear_cache(); }
    } clearCasts;
    const auto [b, e] = chunkRows(n, chunks, i);
    const auto yc = y.slice(0, b, e);
    const auto logits = model.forward(x.slice(0, b, e));
    Part& part = parts[static_cast<size_t>(i)];
    part.lossSum = F::cross_entropy(logits, yc, F::CrossEntropyFuncOptions().reduction(torch::kSum));
    // Each chunk's share of the batch mean: the chunks' gradients sum to the mean's. Backpropagated
    // with autocast off, as the trainer's backward is (AutocastOff).
    {
      AutocastOff noAutocast;
      part.grads = torch::autograd::grad({part.lossSum / static_cast<double>(n)}, params, {}, false, false, /*allow_unused=*/true);
    }
    part.lossSum = part.lossSum.detach();
    part.correct = logits.argmax(1).eq(yc).sum().item<int64_t>();
  });
  BatchOutput out;
  torch::Tensor lossSum = parts[0].lossSum;
  for (size_t i = 1; i < parts.size(); ++i) lossSum = lossSum + parts[i].lossSum;
  out.loss = lossSum / static_cast<double>(n);
  out.count = n;
  for (const auto& part : parts) out.correct += part.correct;
  torch::NoGradGuard noGrad;
  for (size_t j = 0; j < params.size(); ++j) {
    torch::Tensor g;
    for (const auto& part : parts)
      if (part.grads[j].defined()) g = g.defined() ? g + part.grads[j] : part.grads[j];
    if (!g.defined()) continue;
    auto& grad = params[j].mutable_grad();
    grad = grad.defined() ? grad + g : g;
  }
  out.gradientsDone = true;
  return out;
}

BatchOutput CrossEntropyObjective::batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator&) {
  return crossEntropyStep(model, x, y);
}

}  // namespace robustlab
