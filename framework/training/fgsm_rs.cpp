// FGSM-RS (Wong, Rice and Kolter, ICLR 2020) and its catastrophic-overfitting check.
#include "framework/training/adversarial_training.h"

#include "attacks/pgd.h"
#include "data/dataset.h"
#include "framework/models/predict.h"
#include "framework/training/trainer.h"

#include <algorithm>
#include <cstdio>

namespace robustlab {
namespace {

/// One step of 1.25 * eps (Wong et al.'s alpha) unless the stage chose the step.
AttackOptions fgsmStep(AttackOptions a) {
  a.steps = 1;
  if (a.stepSize == 0 && a.relStepSize == 0) a.relStepSize = 1.25;
  return a;
}

}  // namespace

FgsmRsObjective::FgsmRsObjective(AttackOptions attack, double fraction, bool overfitCheck)
    : PgdTrainingObjective(fgsmStep(attack), fraction), check_(attack), overfitCheck_(overfitCheck) {
  // Their check: PGD with 5 steps of eps / 4 from a random start, one restart, the strongest example
  // per row (their attack_pgd keeps each row's first fooling iterate).
  check_.steps = 5;
  check_.stepSize = 0;
  check_.relStepSize = 0.25;
  check_.randomStart = true;
  check_.startSigma = 0;
  check_.restarts = 1;
  check_.seed = attack.seed ^ 0xc0ffeeULL;
}

void FgsmRsObjective::endEpoch(ClassifierImpl& model, const Dataset& heldOut, EpochRecord& record) {
  if (!overfitCheck_ || heldOut.size() == 0) return;
  const int64_t n = std::min(heldOut.size(), kOverfitCheckRows);
  const auto device = model.parameters().empty() ? torch::Device(torch::kCPU) : model.parameters().front().device();
  const auto x = heldOut.images.slice(0, 0, n).to(device), y = heldOut.labels.slice(0, 0, n).to(device);
  Pgd pgd(check_);  // the same start on every epoch: the curve moves with the model only
  const auto xadv = pgd.perturb(model, x, y);
  record.pgdCheck = predict(model, xadv, device).eq(y.cpu()).to(torch::kFloat64).mean().item<double>();
  // Wong et al. stop when the check falls by more than 0.2 from the previous epoch; against the best
  // earlier epoch, a collapse spread over two epochs is caught too.
  record.overfitting = bestCheck_ >= 0 && record.pgdCheck < bestCheck_ - 0.2;
  if (record.overfitting)
    std::fprintf(stderr, "warning: fgsm-rs epoch %lld: PGD-5 accuracy on %lld held-out examples fell to %.1f%% from %.1f%% "
                 "(catastrophic overfitting, Wong et al. 2020): lower adv_rel_step_size, keep adv_random_start = true, or use pgd\n",
                 static_cast<long long>(record.epoch), static_cast<long long>(n), 100 * record.pgdCheck, 100 * bestCheck_);
  bestCheck_ = std::max(bestCheck_, record.pgdCheck);
}

}  // namespace robustlab
