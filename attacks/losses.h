#pragma once
// The losses an attack ascends. An AttackLoss says what it scores (the logits, or another head), the
// loss to maximise and how the attack may split a batch; the attacks take one (CE by default), so a
// training objective's inner maximisation (TRADES' KL, the contrastive loss) runs through the same
// Attack::perturb as the evaluation's attacks. A new loss is one class; nothing else changes.
#include "framework/models/model.h"

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

namespace robustlab {

/// Cross-entropy per example, to be maximised: CE on the true label y (untargeted), -CE on the target
/// (targeted, `target` defined).
torch::Tensor ceLoss(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& target = torch::Tensor());

/// DLR per example (Croce & Hein 2020), to be maximised. Untargeted: -(z_y - max_{i!=y} z_i) /
/// (z_pi1 - z_pi3 + 1e-12), with z sorted in decreasing order as z_pi1 >= z_pi2 >= ...; it needs at
/// least 3 classes. Targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12); it needs at least
/// 4. Invariant to shifting and (positively) scaling the logits. Fewer classes throw
/// std::invalid_argument saying how many are needed.
torch::Tensor dlrLoss(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& target = torch::Tensor());

class AttackLoss {
 public:
  virtual ~AttackLoss() = default;
  /// Short name, part of an attack's name ("ce", "dlr", ...).
  virtual std::string name() const = 0;
  /// What the loss scores for input x: the model's logits unless it reads another head.
  virtual torch::Tensor outputs(ClassifierImpl& model, const torch::Tensor& x) const { return model.forward(x); }
  /// The loss to maximise given outputs(model, xadv): per example (N) when perExample(), else one
  /// number for the batch. y: true labels; target: defined iff the attack is targeted.
  virtual torch::Tensor operator()(const torch::Tensor& outputs, const torch::Tensor& y, const torch::Tensor& target) const = 0;
  /// Called by Attack::perturb on the clean batch, in eval mode with the parameters frozen, before the
  /// attack runs (a loss measured against the clean prediction takes it here).
  virtual void prepare(ClassifierImpl& model, const torch::Tensor& x) {}
  /// True when each example's loss depends on its own row only and needs nothing set per row: the
  /// attack may then split the batch (restarts on survivors, early stopping, the best iterate, row
  /// chunks across cores). Otherwise it runs on whole batches only (Pgd's last-iterate loop).
  virtual bool perExample() const { return true; }
  /// The cross-entropy on the logits: the attack may take its input gradient without autograd's graph
  /// (framework/models/input_grad.h) and split rows across cores.
  virtual bool isCrossEntropy() const { return false; }
  /// Modules besides the model that outputs() runs (a projection head): put in eval mode and frozen
  /// during the attack, as the model is.
  virtual std::vector<torch::nn::Module*> modules() const { return {}; }
};

/// CE on the true label (untargeted) or -CE on the target (targeted): ceLoss.
std::shared_ptr<AttackLoss> crossEntropyLoss();
/// Croce & Hein's difference of logits ratio, untargeted and targeted: dlrLoss.
std::shared_ptr<AttackLoss> dlrAttackLoss();

/// TRADES' inner maximisation (Zhang et al. 2019): KL(p_clean || softmax(f(x'))), summed over the batch,
/// where p_clean = softmax(f(x)) is taken by prepare() on the clean batch. Whole batches only.
class KlToCleanLoss : public AttackLoss {
 public:
  std::string name() const override { return "kl"; }
  torch::Tensor operator()(const torch::Tensor& outputs, const torch::Tensor& y, const torch::Tensor& target) const override;
  void prepare(ClassifierImpl& model, const torch::Tensor& x) override;
  bool perExample() const override { return false; }

 private:
  torch::Tensor clean_;  ///< p_clean, N x classes
};

}  // namespace robustlab
