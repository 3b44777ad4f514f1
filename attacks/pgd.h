#pragma once
// PGD — Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018.
// Projected gradient ascent on the cross-entropy, in Linf (sign steps) or L2 (normalised steps).
// Defaults: 20 steps, step size 2.5 * eps / steps, random start (uniform in the box / in the ball),
// 1 restart. Per example it returns the first iterate that fools the model, else the iterate of
// highest loss; over restarts the worst case per example; examples already fooled stop stepping.
// With lastIterate (adversarial training) it is the plain loop: one start, the last iterate; the
// training objectives run their inner maximisation through it with their own loss (losses.h: TRADES'
// KL to the clean prediction, the contrastive loss over views) and start (startSigma).
#include "attacks/attack.h"

namespace robustlab {

struct BestIterate;

class Pgd : public Attack {
 public:
  explicit Pgd(AttackOptions options) : Attack(options) {}
  std::string name() const override { return "pgd"; }
  bool runsWholeBatches() const override { return options_.lastIterate; }

 protected:
  torch::Tensor run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) override;

 private:
  /// One restart on the rows `idx` of the batch (those no earlier restart fooled), keeping each row's
  /// best iterate in `best`.
  void restartOn(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target, const torch::Tensor& idx,
                 BestIterate& best);
  /// The lastIterate loop.
  torch::Tensor lastIterate(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target);
};

}  // namespace robustlab
