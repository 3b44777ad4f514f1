#include "framework/training/contrastive.h"

#include "attacks/pgd.h"
#include "framework/distributed/communicator.h"
#include "framework/models/model.h"

#include <torch/nn/functional/loss.h>
#include <torch/nn/functional/normalization.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <limits>
#include <utility>
#include <stdexcept>

namespace robustlab {
namespace F = torch::nn::functional;

torch::Tensor ntXentLoss(const torch::Tensor& z1, const torch::Tensor& z2, double temperature, int64_t* correct,
                         std::pair<int64_t, int64_t> counted) {
  if (z1.sizes() != z2.sizes() || z1.dim() != 2) throw std::invalid_argument("NT-Xent: the two views' projections must both be N x d");
  if (!(temperature > 0)) throw std::invalid_argument("temperature: must be > 0");
  const int64_t n = z1.size(0);
  const auto norm = F::NormalizeFuncOptions().dim(1);
  const auto z = torch::cat({F::normalize(z1.to(torch::kFloat32), norm), F::normalize(z2.to(torch::kFloat32), norm)}, 0);
  const auto self = torch::eye(2 * n, torch::TensorOptions().dtype(torch::kBool).device(z.device()));
  // An embedding is never its own candidate: its similarity is -inf, so its softmax share is 0.
  const auto logits = z.mm(z.t()).div(temperature).masked_fill(self, -std::numeric_limits<float>::infinity());
  const auto idx = torch::arange(n, torch::TensorOptions().dtype(torch::kInt64).device(z.device()));
  const auto positives = torch::cat({idx + n, idx});
  if (correct) {
    const auto right = logits.detach().argmax(1).eq(positives);
    const int64_t a = counted.first, b = counted.second < 0 ? n : counted.second;
    *correct = right.slice(0, a, b).sum().item<int64_t>() + right.slice(0, n + a, n + b).sum().item<int64_t>();
  }
  return F::cross_entropy(logits, positives);
}

torch::Tensor withPeers(const torch::Tensor& mine, const Shard& shard) {
  if (!shard.comm) return mine;
  const auto all = shard.comm->allGather(mine.detach());
  return torch::cat({all.slice(0, 0, shard.offset), mine, all.slice(0, shard.offset + mine.size(0), all.size(0))});
}

void ContrastiveOptions::validate() const {
  if (!(temperature > 0)) throw std::invalid_argument("temperature: must be > 0");
  if (projectionDim <= 0) throw std::invalid_argument("projection_dim: must be > 0");
  views.validate();
  if (adversarial) adversary.validate();
}

namespace {

template <typename Impl>
bool addStatistics(torch::nn::Module& layer, std::vector<torch::Tensor*>& slots) {
  auto* bn = layer.as<Impl>();
  if (!bn || !bn->options.track_running_stats()) return false;
  for (torch::Tensor* t : {&bn->running_mean, &bn->running_var, &bn->num_batches_tracked}) slots.push_back(t);
  return true;
}

}  // namespace

DualBatchNormStats::DualBatchNormStats(torch::nn::Module& model) {
  for (const auto& m : batchNormLayers(model))
    if (!addStatistics<torch::nn::BatchNorm2dImpl>(*m, slots_)) addStatistics<torch::nn::BatchNorm1dImpl>(*m, slots_);
  for (const torch::Tensor* t : slots_) other_.push_back(t->detach().clone());
}

void DualBatchNormStats::swap() {
  // The layers read their statistics through these members; the registered buffers keep the model's
  // own tensors, so what a checkpoint saves between batches is always the clean set.
  for (size_t i = 0; i < slots_.size(); ++i) std::swap(*slots_[i], other_[i]);
  swapped_ = !swapped_;
}

void DualBatchNormStats::keepSecond() {
  if (swapped_) throw std::logic_error("DualBatchNormStats::keepSecond: the second set is in use");
  torch::NoGradGuard noGrad;
  for (size_t i = 0; i < slots_.size(); ++i) slots_[i]->copy_(other_[i]);
}

void DualBatchNormStats::to(torch::Device device) {
  for (auto& t : other_) t = t.to(device);
}

ContrastiveObjective::ContrastiveObjective(ClassifierImpl& model, ContrastiveOptions options) : options_(std::move(options)) {
  options_.validate();
  const int64_t d = model.featureDim();
  // SimCLR's projection head: one hidden layer as wide as the features, ReLU, then the projection.
  projector_ = torch::nn::Sequential(torch::nn::Linear(d, d), torch::nn::ReLU(), torch::nn::Linear(d, options_.projectionDim));
  if (options_.dualBatchNorm) {
    if (!options_.adversarial) throw std::invalid_argument("dual_bn: needs mode = \"adv-contrastive\" (it separates the adversarial view's statistics)");
    dual_ = std::make_unique<DualBatchNormStats>(*model.backbone());
    if (dual_->empty()) throw std::invalid_argument("dual_bn: the model has no BatchNorm layers whose statistics could be kept twice");
  }
}

/// The contrastive loss as an attack loss: NT-Xent of the projections of the attacked view against the
/// goal (the other view's projections, set per batch). It couples the rows, so whole batches only.
class ContrastiveViewLoss : public AttackLoss {
 public:
  ContrastiveViewLoss(ContrastiveObjective& objective, double temperature) : objective_(objective), temperature_(temperature) {}
  std::string name() const override { return "nt-xent"; }
  torch::Tensor outputs(ClassifierImpl& model, const torch::Tensor& x) const override { return objective_.project(model, x); }
  torch::Tensor operator()(const torch::Tensor& z, const torch::Tensor&, const torch::Tensor&) const override {
    return ntXentLoss(z, goal_, temperature_);
  }
  bool perExample() const override { return false; }
  std::vector<torch::nn::Module*> modules() const override { return {objective_.projector().get()}; }
  void setGoal(const torch::Tensor& goal) { goal_ = goal; }

 private:
  ContrastiveObjective& objective_;
  double temperature_;
  torch::Tensor goal_;
};

torch::Tensor ContrastiveObjective::adversarialView(ClassifierImpl& model, const torch::Tensor& v1, const torch::Tensor& target,
                                                    at::Generator& gen) {
  if (!adversary_) {
    // PGD on the contrastive loss: a random start in the ball, `steps` steps, the last iterate, through
    // the attack interface (eval mode, parameters and projection head frozen).
    AttackOptions a = options_.adversary;
    a.earlyStop = false;
    a.lastIterate = true;
    a.countZeroGradients = false;
    a.randomStart = true;
    viewLoss_ = std::make_shared<ContrastiveViewLoss>(*this, options_.temperature);
    adversary_ = std::make_unique<Pgd>(a);
    adversary_->setLoss(viewLoss_);
  }
  viewLoss_->setGoal(target.detach());
  adversary_->shareGenerator(gen);
  // Labels are never read; the interface wants one per input.
  const auto unused = torch::zeros({v1.size(0)}, torch::TensorOptions().dtype(torch::kInt64).device(v1.device()));
  return adversary_->perturb(model, v1, unused);
}

BatchOutput ContrastiveObjective::batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor&, at::Generator& gen) {
  const auto v1 = contrastiveView(x, options_.views, gen), v2 = contrastiveView(x, options_.views, gen);
  const int64_t n = x.size(0);
  // Both views in one pass: BatchNorm sees the 2N clean views as one batch, as in SimCLR.
  const auto z = project(model, torch::cat({v1, v2}, 0));
  const auto z1 = z.slice(0, 0, n), z2 = z.slice(0, n, 2 * n);
  BatchOutput out;
  // Data-parallel: the negatives are the whole batch's, every rank's projections gathered (this rank's
  // own rows keep their gradient); the loss is the batch's, counted on this rank's rows.
  const auto all2 = withPeers(z2, shard_);
  const std::pair<int64_t, int64_t> mine{shard_.comm ? shard_.offset : 0, shard_.comm ? shard_.offset + n : -1};
  out.loss = ntXentLoss(withPeers(z1, shard_), all2, options_.temperature, &out.correct, mine);
  out.count = 2 * n;
  out.globalLoss = shard_.comm != nullptr;
  if (options_.adversarial) {
    if (dual_) dual_->swap();
    // The attack itself works on this rank's rows, against their own negatives.
    const auto xadv = adversarialView(model, v1, z2, gen);
    out.loss = out.loss + ntXentLoss(withPeers(project(model, xadv), shard_), all2, options_.temperature);
    if (dual_) dual_->swap();
  }
  return out;
}

void ContrastiveObjective::finish(ClassifierImpl&) {
  if (dual_) dual_->keepSecond();  // the model keeps the adversarial branch's statistics
}

}  // namespace robustlab
