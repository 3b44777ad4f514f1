// Adversarial weight perturbation (Wu, Xia and Wang, NeurIPS 2020).
#include "framework/training/adversarial_training.h"

#include "framework/runtime/runtime.h"

#include <torch/autograd.h>

#include <stdexcept>

namespace robustlab {

AwpObjective::AwpObjective(std::unique_ptr<AdversarialObjective> inner, double gamma, int64_t warmup)
    : inner_(std::move(inner)), gamma_(gamma), warmup_(warmup) {
  if (!(gamma >= 0)) throw std::invalid_argument("awp_gamma: must be >= 0");
  if (warmup < 0) throw std::invalid_argument("awp_warmup: must be >= 0");
}

std::vector<std::pair<torch::Tensor, torch::Tensor>> AwpObjective::weightPerturbation(ClassifierImpl& model, double gamma) {
  constexpr double kProxyLr = 0.01, kEps = 1e-20;  // their proxy optimiser's learning rate, their EPS
  std::vector<std::pair<torch::Tensor, torch::Tensor>> out;
  torch::NoGradGuard noGrad;
  for (const auto& p : model.named_parameters()) {
    const auto& w = p.value();
    const std::string& key = p.key();
    const bool isWeight = key == "weight" || (key.size() > 7 && key.compare(key.size() - 7, 7, ".weight") == 0);
    if (!isWeight || w.dim() <= 1 || !w.requires_grad() || !w.grad().defined()) continue;
    const auto diff = kProxyLr * w.grad();  // the proxy's ascent step on the loss
    out.emplace_back(w, gamma * (w.norm() / (diff.norm() + kEps)) * diff);
  }
  return out;
}

BatchOutput AwpObjective::batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) {
  const auto xadv = inner_->adversarial(model, x, y, gen);
  if (epoch_ < warmup_ || gamma_ == 0) return inner_->lossOn(model, x, xadv, y);
  // Their proxy is a copy of the model: its pass must leave the model's BatchNorm statistics alone.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> buffers;
  for (const auto& b : model.buffers()) buffers.emplace_back(b, b.clone());
  {
    auto proxy = inner_->lossOn(model, x, xadv, y);
    if (!proxy.gradientsDone) {
      AutocastOff noAutocast;
      proxy.loss.backward();
    }
    // Data-parallel: the perturbation follows the whole batch's gradient, alike on every rank.
    std::vector<torch::Tensor> params;
    for (const auto& p : model.parameters())
      if (p.requires_grad()) params.push_back(p);
    shard_.reduceGradients(params, proxy.globalLoss);
  }
  applied_ = weightPerturbation(model, gamma_);
  {
    torch::NoGradGuard noGrad;
    for (auto& p : model.parameters())
      if (p.grad().defined()) p.mutable_grad().zero_();
    for (auto& [b, saved] : buffers) b.copy_(saved);
    for (auto& [w, v] : applied_) w.add_(v);
  }
  return inner_->lossOn(model, x, xadv, y);
}

void AwpObjective::afterStep(ClassifierImpl&) {
  torch::NoGradGuard noGrad;
  for (auto& [w, v] : applied_) w.sub_(v);
  applied_.clear();
}

}  // namespace robustlab
