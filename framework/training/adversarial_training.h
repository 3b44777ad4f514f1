#pragma once
// Adversarial training objectives for the trainer's objective hook, so pre-training and fine-tuning
// can both be adversarial.
#include "attacks/attack.h"
#include "framework/training/objectives.h"

#include <memory>

namespace robustlab {

/// PGD adversarial training (Madry et al. 2018): minimise the cross-entropy on PGD examples made
/// against the current model (generated in eval mode, as the attack interface does).
class PgdTrainingObjective : public TrainingObjective {
 public:
  explicit PgdTrainingObjective(AttackOptions attack);
  std::string name() const override { return "pgd-at"; }
  BatchOutput batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override;

 private:
  std::unique_ptr<Attack> attack_;
};

/// TRADES (Zhang et al., ICML 2019): CE(f(x), y) + beta * KL(f(x) || f(x')), where x' maximises the
/// KL term inside the eps-ball: Pgd's last-iterate loop on KlToCleanLoss, started at x + 0.001 * N(0,1)
/// drawn from the batch's generator, `steps` steps of size step_size.
class TradesObjective : public TrainingObjective {
 public:
  TradesObjective(AttackOptions attack, double beta);
  std::string name() const override { return "trades"; }
  BatchOutput batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override;

 private:
  std::unique_ptr<Attack> attack_;
  double beta_;
};

}  // namespace robustlab
