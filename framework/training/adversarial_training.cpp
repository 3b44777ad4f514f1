#include "framework/training/adversarial_training.h"

#include "attacks/pgd.h"

#include <torch/nn/functional/loss.h>

#include <cmath>
#include <memory>
#include <stdexcept>

namespace robustlab {
namespace F = torch::nn::functional;

std::unique_ptr<Attack> trainingPgd(AttackOptions attack, double startSigma) {
  // Madry et al.'s training attack: every example takes every step from one start and the last iterate
  // is trained on (no early stop, no per-example best iterate, which would cost a forward pass and a
  // few element-wise ops per step for a marginally stronger example).
  attack.earlyStop = false;
  attack.lastIterate = true;
  attack.countZeroGradients = false;
  if (startSigma > 0) {
    attack.randomStart = true;
    attack.startSigma = startSigma;
  }
  return std::make_unique<Pgd>(attack);
}

PgdTrainingObjective::PgdTrainingObjective(AttackOptions attack, double fraction) : attack_(trainingPgd(attack)), fraction_(fraction) {
  if (!(fraction > 0 && fraction <= 1)) throw std::invalid_argument("adv_fraction: must be in (0, 1]");
}

torch::Tensor PgdTrainingObjective::adversarial(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator&) {
  if (fraction_ >= 1) return attack_->perturb(model, x, y);
  const int64_t k = std::llround(fraction_ * static_cast<double>(x.size(0)));
  if (k == 0) return x;
  return torch::cat({attack_->perturb(model, x.slice(0, 0, k), y.slice(0, 0, k)), x.slice(0, k)});
}

BatchOutput PgdTrainingObjective::lossOn(ClassifierImpl& model, const torch::Tensor&, const torch::Tensor& xadv, const torch::Tensor& y) {
  return crossEntropyStep(model, xadv, y);
}

TradesObjective::TradesObjective(AttackOptions attack, double beta) : attack_(trainingPgd(attack, 0.001)), beta_(beta) {
  if (!(beta >= 0)) throw std::invalid_argument("trades_beta: must be >= 0");
  // TRADES' inner maximisation (Zhang et al.'s code): from x + 0.001 * N(0, 1), `steps` steps on the KL
  // to the clean prediction, the last iterate; the same loop and guards as PGD-AT, another loss.
  attack_->setLoss(std::make_shared<KlToCleanLoss>());
}

torch::Tensor TradesObjective::adversarial(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) {
  attack_->shareGenerator(gen);  // the start's noise comes from the batch's stream
  return attack_->perturb(model, x, y);
}

BatchOutput TradesObjective::lossOn(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& xadv, const torch::Tensor& y) {
  auto logits = model.forward(x);
  auto advLogSoftmax = torch::log_softmax(model.forward(xadv), 1);
  BatchOutput out;
  out.loss = F::cross_entropy(logits, y) +
             beta_ * F::kl_div(advLogSoftmax, torch::softmax(logits, 1), F::KLDivFuncOptions().reduction(torch::kBatchMean));
  out.correct = logits.argmax(1).eq(y).sum().item<int64_t>();
  out.count = y.size(0);
  return out;
}

}  // namespace robustlab
