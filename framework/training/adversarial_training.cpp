#include "framework/training/adversarial_training.h"

#include "attacks/pgd.h"
#include "framework/runtime/runtime.h"

#include <torch/autograd.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <stdexcept>

namespace robustlab {
namespace F = torch::nn::functional;

PgdTrainingObjective::PgdTrainingObjective(AttackOptions attack) {
  // Madry et al.'s training attack: every example takes every step from one random start and the last
  // iterate is trained on (no early stop, no per-example best iterate, which would cost a forward pass
  // and a few element-wise ops per step for a marginally stronger example).
  attack.earlyStop = false;
  attack.lastIterate = true;
  attack.countZeroGradients = false;
  attack_ = std::make_unique<Pgd>(attack);
}

BatchOutput PgdTrainingObjective::batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator&) {
  return crossEntropyStep(model, attack_->perturb(model, x, y), y);
}

TradesObjective::TradesObjective(AttackOptions attack, double beta) : options_(attack), beta_(beta) {
  options_.validate();
  if (!(beta >= 0)) throw std::invalid_argument("trades_beta: must be >= 0");
}

BatchOutput TradesObjective::batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) {
  const double eps = options_.eps, alpha = options_.effectiveStepSize();
  const auto klSum = F::KLDivFuncOptions().reduction(torch::kSum);
  torch::Tensor xadv;
  {
    EvalModeGuard evalMode(model);
    FrozenParamsGuard frozen(model);
    torch::Tensor pClean;
    {
      torch::NoGradGuard noGrad;
      pClean = torch::softmax(model.forward(x), 1);
    }
    xadv = x + 0.001 * randNormal(x.sizes(), gen, x.device());
    for (int64_t s = 0; s < options_.steps; ++s) {
      auto xin = xadv.detach().requires_grad_(true);
      auto kl = F::kl_div(torch::log_softmax(model.forward(xin), 1), pClean, klSum);
      auto g = torch::autograd::grad({kl}, {xin})[0];
      if (options_.norm == Norm::kLinf) {
        // Plain clamp, not projectToBall's ulp-exact box: switching changes TRADES training runs.
        xadv = xadv.detach() + alpha * g.sign();
        xadv = torch::min(torch::max(xadv, x - eps), x + eps).clamp(options_.lo, options_.hi);
      } else {
        xadv = projectToBall(xadv.detach() + alpha * steepestAscent(g, Norm::kL2), x, Norm::kL2, eps, options_.lo, options_.hi);
      }
    }
    xadv = xadv.detach();
  }
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
