#pragma once
// Adversarial training objectives for the trainer's objective hook, so pre-training and fine-tuning
// can both be adversarial. Each is two halves: the inner maximisation (adversarial inputs, made by an
// attack through Attack::perturb with its loss and start) and the outer loss on them, so a wrapper
// (adversarial weight perturbation) can score the same examples under other weights. One file each:
// PGD-AT and TRADES here, FGSM-RS (fgsm_rs.cpp), MART (mart.cpp), AWP (awp.cpp).
#include "attacks/attack.h"
#include "framework/training/objectives.h"

#include <memory>

namespace robustlab {

/// The training attack every adversarial objective runs: Pgd's last-iterate loop (every example takes
/// every step, no early stop or best iterate, zero gradients not counted); with startSigma > 0 it starts
/// at x + startSigma * N(0, 1) instead of a uniform point of the ball (TRADES' and MART's 0.001).
std::unique_ptr<Attack> trainingPgd(AttackOptions attack, double startSigma = 0.0);

class AdversarialObjective : public TrainingObjective {
 public:
  /// The inputs the outer loss is computed on (same shape as x); `model` is in training mode.
  virtual torch::Tensor adversarial(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) = 0;
  /// The outer loss on the clean batch x and its adversarial inputs xadv.
  virtual BatchOutput lossOn(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& xadv, const torch::Tensor& y) = 0;
  BatchOutput batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override {
    return lossOn(model, x, adversarial(model, x, y, gen), y);
  }
};

/// PGD adversarial training (Madry et al. 2018): minimise the cross-entropy on PGD examples made
/// against the current model (generated in eval mode, as the attack interface does). `fraction` < 1
/// attacks only the first round(fraction * n) rows of each batch (a random subset: batches are drawn
/// from a permutation) and trains on those adversarial rows with the rest clean, the mixed batches of
/// Madry-style recipes (Goodfellow et al. 2015; Croce et al. 2019 train with half of each batch adversarial).
class PgdTrainingObjective : public AdversarialObjective {
 public:
  explicit PgdTrainingObjective(AttackOptions attack, double fraction = 1.0);
  std::string name() const override { return "pgd-at"; }
  torch::Tensor adversarial(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override;
  BatchOutput lossOn(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& xadv, const torch::Tensor& y) override;

 protected:
  std::unique_ptr<Attack> attack_;
  double fraction_;
};

/// TRADES (Zhang et al., ICML 2019): CE(f(x), y) + beta * KL(f(x) || f(x')), where x' maximises the
/// KL term inside the eps-ball: Pgd's last-iterate loop on KlToCleanLoss, started at x + 0.001 * N(0,1)
/// drawn from the batch's generator, `steps` steps of size step_size.
class TradesObjective : public AdversarialObjective {
 public:
  TradesObjective(AttackOptions attack, double beta);
  std::string name() const override { return "trades"; }
  torch::Tensor adversarial(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override;
  BatchOutput lossOn(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& xadv, const torch::Tensor& y) override;

 private:
  std::unique_ptr<Attack> attack_;
  double beta_;
};

/// FGSM with a random start (Wong, Rice and Kolter, "Fast is better than free", ICLR 2020): one step of
/// 1.25 * eps (unless the stage sets adv_step_size / adv_rel_step_size) from a uniform point of the
/// eps-ball, the cross-entropy on it. With `overfitCheck`, each epoch ends with their catastrophic-
/// overfitting check: PGD-5 (step eps / 4, random start) accuracy on up to kOverfitCheckRows held-out
/// examples (the validation split, else the first training examples), stored in the history
/// (pgd_check) and flagged (overfitting) when it falls more than 0.2 below the best earlier epoch's.
class FgsmRsObjective : public PgdTrainingObjective {
 public:
  static constexpr int64_t kOverfitCheckRows = 512;
  FgsmRsObjective(AttackOptions attack, double fraction, bool overfitCheck);
  std::string name() const override { return "fgsm-rs"; }
  void endEpoch(ClassifierImpl& model, const Dataset& heldOut, EpochRecord& record) override;

 private:
  AttackOptions check_;
  bool overfitCheck_;
  double bestCheck_ = -1;
};

/// MART's loss (Wang et al., "Improving adversarial robustness requires revisiting misclassified
/// examples", ICLR 2020, their code's constants): BCE(p', y) + beta * mean_i KL(p_i || p'_i) * (1 - p_i,y),
/// where p = softmax(clean logits), p' = softmax(adversarial logits) and the boosted cross-entropy
/// BCE(p', y) = CE(p', y) - log(1.0001 - p'_j + 1e-12), j the most likely class other than y. A mean over the batch.
torch::Tensor martLoss(const torch::Tensor& cleanLogits, const torch::Tensor& advLogits, const torch::Tensor& y, double beta);

/// MART: martLoss on PGD-CE examples started, as their code starts, at x + 0.001 * N(0, 1).
class MartObjective : public AdversarialObjective {
 public:
  MartObjective(AttackOptions attack, double beta);
  std::string name() const override { return "mart"; }
  torch::Tensor adversarial(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override;
  BatchOutput lossOn(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& xadv, const torch::Tensor& y) override;

 private:
  std::unique_ptr<Attack> attack_;
  double beta_;
};

/// Adversarial weight perturbation (Wu, Xia and Wang, NeurIPS 2020) around an adversarial objective:
/// after the inner maximisation, every weight matrix and kernel w (parameters named "weight" with more
/// than one dimension, as their code picks) moves by gamma * ||w|| * g / ||g||, g the gradient of the
/// inner objective's outer loss at w on the adversarial batch (their proxy's one SGD ascent step,
/// normalised per layer; with the proxy's learning rate 0.01 the step's size cancels); the loss and its
/// gradients are taken at the perturbed weights, the optimiser steps, and the perturbation is taken
/// back (afterStep). Batch statistics of BatchNorm layers are left as the unperturbed pass leaves them.
/// From epoch `warmup` on (their code: 0 for PGD-AT with gamma 0.01, 10 for TRADES with gamma 0.005).
class AwpObjective : public TrainingObjective {
 public:
  AwpObjective(std::unique_ptr<AdversarialObjective> inner, double gamma, int64_t warmup);
  std::string name() const override { return inner_->name() + "+awp"; }
  BatchOutput batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override;
  void startEpoch(int64_t epoch) override { epoch_ = epoch; }
  void afterStep(ClassifierImpl& model) override;
  void endEpoch(ClassifierImpl& model, const Dataset& heldOut, EpochRecord& record) override { inner_->endEpoch(model, heldOut, record); }

  /// The perturbation of each perturbed parameter for this batch: gamma * ||w|| * g / (||g|| + 1e-20).
  static std::vector<std::pair<torch::Tensor, torch::Tensor>> weightPerturbation(ClassifierImpl& model, double gamma);

 private:
  std::unique_ptr<AdversarialObjective> inner_;
  double gamma_;
  int64_t warmup_, epoch_ = 0;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> applied_;  ///< parameter, the perturbation added to it
};

}  // namespace robustlab
