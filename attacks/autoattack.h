#pragma once
// AutoAttack as a suite — Croce & Hein, "Reliable evaluation of adversarial robustness with an
// ensemble of diverse parameter-free attacks", ICML 2020; run the way the reference runs it: the
// attacks in order, each only on the points still robust (ATTACK-CORRECTNESS.md item 18), the
// per-example worst case as the result, and the robust count after the clean pass and after each
// attack kept (AttackStats::stageNames / stageRobust), so a reader sees how much each one removed.
//   autoattack       the standard version: apgd-ce, apgd-t, fab-t, square; 1 restart each,
//                    `autoattack_steps` (100) iterations, `target_classes` (9) targets, `queries` (5,000)
//   autoattack-plus  the extended version: apgd-ce and apgd-dlr with 5 restarts, fab (untargeted, 5
//                    restarts), square, apgd-t, fab-t
//   autoattack-rand  for randomized models: apgd-ce and apgd-dlr, 1 restart, each gradient the mean over
//                    20 passes (EOT; attack.eot_iter when set above 1)
// In L1 the standard version runs the reference's APGD members with its L1 settings (apgd-ce with 5
// restarts, apgd-t with 5 targets, both with the 3-2-1 eps schedule); the reference's FAB-T and Square
// in L1 are not implemented here, so an L1 result is APGD's. The plus version is Linf and L2 only.
// eot_iter > 1 averages the gradients of the APGD members; FAB-T and Square run as they are.
// Needs 4 classes (APGD-T's targeted DLR; autoattack-rand: 3, APGD-DLR). Clean mistakes are not
// attacked: they count as not robust.
#include "attacks/attack.h"

#include <utility>

namespace robustlab {

class AutoAttackSuite : public Attack {
 public:
  enum class Version { kStandard, kPlus, kRand };
  AutoAttackSuite(AttackOptions options, Version version);
  std::string name() const override;
  bool supportsNorm(Norm n) const override { return n != Norm::kL1 || version_ != Version::kPlus; }
  /// "clean", then the members in the order they run.
  std::vector<std::string> stages() const override;
  /// The members and the options each runs with.
  const std::vector<std::pair<std::string, AttackOptions>>& members() const { return members_; }

 protected:
  torch::Tensor run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) override;

 private:
  Version version_;
  std::vector<std::pair<std::string, AttackOptions>> members_;
};

}  // namespace robustlab
