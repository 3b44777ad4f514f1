#pragma once
// APGD — Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
// parameter-free attacks", ICML 2020 (the core of AutoAttack). One algorithm with a loss: APGD-CE on
// the cross-entropy, APGD-DLR on the difference of logits ratio (attack.h, dlrLoss; at least 3
// classes, 4 when targeted). Step-size-free PGD: initial step 2 * eps, momentum 0.75, the step halved at checkpoints (first after
// 22% of the iterations, intervals shrinking by 3% to at least 6%) when the loss oscillates
// (increased in fewer than rho = 75% of the steps since the last checkpoint) or stopped improving, restarting
// from the best point. Norms: linf, l2. Default 20 steps here (AutoAttack uses 100), 1 restart;
// over restarts the worst case per example.
#include "attacks/attack.h"

namespace robustlab {

class Apgd : public Attack {
 public:
  explicit Apgd(AttackOptions options, std::shared_ptr<AttackLoss> loss = crossEntropyLoss()) : Attack(options) { setLoss(std::move(loss)); }
  std::string name() const override { return "apgd-" + loss().name(); }

 protected:
  /// APGD-T ascends a targeted loss but counts any misclassification as success (as AutoAttack does).
  bool misclassificationIsSuccess_ = false;
  torch::Tensor won(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& target) const {
    return misclassificationIsSuccess_ ? logits.argmax(1).ne(y) : success(logits, y, target);
  }

  torch::Tensor run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) override;

 private:
  /// One restart on the examples (xs, ys, ts): the highest-loss point, an adversarial point where one
  /// was found, the best loss and which examples stayed robust.
  struct RestartResult {
    torch::Tensor xBest, xBestAdv, lossBest, robust;
  };
  RestartResult restart(ClassifierImpl& model, const torch::Tensor& xs, const torch::Tensor& ys, const torch::Tensor& ts);
  /// A random point on the boundary of the eps-ball around xs (as AutoAttack starts).
  torch::Tensor boundaryStart(const torch::Tensor& xs);
};

}  // namespace robustlab
