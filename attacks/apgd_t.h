#pragma once
// APGD-T — the targeted APGD of AutoAttack (Croce & Hein, ICML 2020): for each of the k most likely
// classes other than the true one (the 2nd, 3rd, ... largest clean logits; k = target_classes, 9 by
// default, capped at classes - 1), APGD on the targeted DLR loss, run only on the examples still
// robust; an example counts as fooled when it is misclassified (any class). Needs at least 4 classes
// (targeted DLR reads the fourth-largest logit). Picks its own targets: `targeted` must be "none".
#include "attacks/apgd.h"

namespace robustlab {

class ApgdT : public Apgd {
 public:
  explicit ApgdT(AttackOptions options);
  std::string name() const override { return "apgd-t"; }
  double workPerExample() const override { return Apgd::workPerExample() * static_cast<double>(std::max<int64_t>(1, options_.targetClasses)); }

 protected:
  torch::Tensor run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) override;
};

}  // namespace robustlab
