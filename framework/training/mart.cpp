// MART (Wang et al., ICLR 2020).
#include "framework/training/adversarial_training.h"

#include <torch/nn/functional/loss.h>

#include <stdexcept>

namespace robustlab {
namespace F = torch::nn::functional;

torch::Tensor martLoss(const torch::Tensor& cleanLogits, const torch::Tensor& advLogits, const torch::Tensor& y, double beta) {
  const auto advProbs = torch::softmax(advLogits, 1);
  // The most likely class other than y, from the two most likely (their argsort's last two).
  const auto top2 = std::get<1>(advProbs.topk(2, 1));
  const auto other = torch::where(top2.select(1, 0).eq(y), top2.select(1, 1), top2.select(1, 0));
  const auto boosted = F::cross_entropy(advLogits, y) + F::nll_loss(torch::log(1.0001 - advProbs + 1e-12), other);
  const auto cleanProbs = torch::softmax(cleanLogits, 1);
  const auto trueProbs = cleanProbs.gather(1, y.unsqueeze(1)).squeeze(1);
  // KL(p || p') per example, as their nn.KLDivLoss(reduction='none') on log(p' + 1e-12), summed over classes.
  const auto kl = F::kl_div(torch::log(advProbs + 1e-12), cleanProbs, F::KLDivFuncOptions().reduction(torch::kNone)).sum(1);
  return boosted + beta * (kl * (1.0000001 - trueProbs)).sum() / static_cast<double>(y.size(0));
}

// Their inner maximisation: PGD on the cross-entropy from x + 0.001 * N(0, 1), the last iterate.
MartObjective::MartObjective(AttackOptions attack, double beta) : attack_(trainingPgd(attack, 0.001)), beta_(beta) {
  if (!(beta >= 0)) throw std::invalid_argument("mart_beta: must be >= 0");
}

torch::Tensor MartObjective::adversarial(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) {
  attack_->shareGenerator(gen);
  return attack_->perturb(model, x, y);
}

BatchOutput MartObjective::lossOn(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& xadv, const torch::Tensor& y) {
  const auto logits = model.forward(x);
  BatchOutput out;
  out.loss = martLoss(logits, model.forward(xadv), y, beta_);
  out.correct = logits.argmax(1).eq(y).sum().item<int64_t>();
  out.count = y.size(0);
  return out;
}

}  // namespace robustlab
