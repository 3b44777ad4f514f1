#pragma once
// FGSM — Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015.
// One step of size eps along sign(grad) (Linf) or grad / ||grad||_2 (L2, the "fast gradient method").
// Norms: linf, l2. Default eps 0.1 on [0,1] images. Targeted modes descend the target's loss.
#include "attacks/attack.h"

namespace robustlab {

class Fgsm : public Attack {
 public:
  explicit Fgsm(AttackOptions options) : Attack(options) {}
  std::string name() const override { return "fgsm"; }

 protected:
  torch::Tensor run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) override;
};

}  // namespace robustlab
