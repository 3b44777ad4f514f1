#pragma once
// APGD — Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
// parameter-free attacks", ICML 2020 (the core of AutoAttack). One algorithm with a loss: APGD-CE on
// the cross-entropy, APGD-DLR on the difference of logits ratio (attack.h, dlrLoss; at least 3
// classes, 4 when targeted). Step-size-free PGD: initial step 2 * eps, momentum 0.75, the step halved at checkpoints (first after
// 22% of the iterations, intervals shrinking by 3% to at least 6%) when the loss oscillates
// (increased in fewer than rho = 75% of the steps since the last checkpoint) or stopped improving, restarting
// from the best point. Norms: linf, l2, l1. Default 20 steps here (AutoAttack uses 100), 1 restart;
// over restarts the worst case per example.
// L1 — Croce & Hein, "Mind the box: l1-APGD for sparse adversarial attacks on image classifiers",
// NeurIPS 2021, as their code runs it: from the projection of x + N(0, 1), sparse steps (the sign of
// the gradient's largest-magnitude share `topk` of coordinates, 20% at first, of L1 length step_size = eps)
// without momentum, projected exactly onto the L1 ball within the box (geometry.h, l1Projection);
// every 4% of the iterations the sparsity of the best point sets topk (its share / 1.5) and the step:
// reset to eps where the best point became sparser (below 95% of the last count), else divided by 1.5,
// kept in [eps / 10, eps]; with l1LargeEps the radius goes 3, 2, 1 times eps (their use_largereps).
#include "attacks/attack.h"

namespace robustlab {

class Apgd : public Attack {
 public:
  explicit Apgd(AttackOptions options, std::shared_ptr<AttackLoss> loss = crossEntropyLoss()) : Attack(options) { setLoss(std::move(loss)); }
  std::string name() const override { return "apgd-" + loss().name(); }
  bool supportsNorm(Norm) const override { return true; }

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
  /// One L1 restart: with l1LargeEps the radius schedule, each stage from the last one's best point.
  RestartResult restartL1(ClassifierImpl& model, const torch::Tensor& xs, const torch::Tensor& ys, const torch::Tensor& ts);
  /// `nIter` L1 iterations at radius options().eps from xInit (undefined: the random start); `fresh`:
  /// the sparsity starts at 20% (else from xInit's).
  RestartResult runL1(ClassifierImpl& model, const torch::Tensor& xs, const torch::Tensor& ys, const torch::Tensor& ts, int64_t nIter,
                      const torch::Tensor& xInit);
  /// An iterate xAdv scored by lg: rows it fools leave `robust` and keep it as their adversarial point;
  /// rows whose loss it raises keep it, its gradient and its loss as their best.
  void record(RestartResult& r, torch::Tensor& gradBest, const torch::Tensor& xAdv, const LossGrad& lg, const torch::Tensor& ys,
              const torch::Tensor& ts) const;
  /// A random point on the boundary of the eps-ball around xs (as AutoAttack starts).
  torch::Tensor boundaryStart(const torch::Tensor& xs);
};

}  // namespace robustlab
