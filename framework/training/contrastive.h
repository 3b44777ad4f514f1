#pragma once
// Contrastive pre-training: SimCLR (Chen et al. 2020) and its adversarial variant (in the spirit of
// RoCL, Kim et al. 2020, and ACL, Jiang et al. 2020). Two augmented views of every image go through
// the backbone and a projection head (an MLP thrown away after pre-training); the NT-Xent loss pulls
// the two views of an image together and pushes the other images of the batch away. Labels are
// never read.
#include "attacks/attack.h"
#include "framework/training/augment.h"
#include "framework/training/objectives.h"

#include <torch/nn/modules/container/sequential.h>

#include <memory>
#include <utility>

namespace robustlab {

/// NT-Xent (Chen et al. 2020, eq. 1) of two views' projections z1, z2 (N x d each): the 2N embeddings
/// are L2-normalised, each is classified among the other 2N - 1 by cosine similarity / temperature,
/// its class being the other view of the same image; the mean cross-entropy over the 2N. When
/// `correct` is given it receives how many found their positive (the pretext accuracy), among rows
/// [counted.first, counted.second) of each view (-1: to the end). Computed in fp32 whatever the inputs' type.
torch::Tensor ntXentLoss(const torch::Tensor& z1, const torch::Tensor& z2, double temperature, int64_t* correct = nullptr,
                         std::pair<int64_t, int64_t> counted = {0, -1});
/// A data-parallel rank's rows `mine` among every rank's, gathered in rank order (rows
/// [shard.offset, shard.offset + rows) are `mine` itself, with its gradient); `mine` alone without a
/// communicator.
torch::Tensor withPeers(const torch::Tensor& mine, const Shard& shard);

struct ContrastiveOptions {
  double temperature = 0.5;    ///< NT-Xent temperature
  int64_t projectionDim = 64;  ///< output of the projection head (its hidden layer is the feature width)
  ViewOptions views;           ///< how the two views are drawn
  bool adversarial = false;    ///< add an adversarial view made by PGD on the contrastive loss
  AttackOptions adversary;     ///< eps, norm, steps, step size of that PGD
  bool dualBatchNorm = false;  ///< separate BatchNorm statistics for the adversarial view (ACL's dual BN)
  void validate() const;
};

/// BatchNorm running statistics kept twice: the model's own (clean) and a second set. swap() exchanges
/// which tensors the BatchNorm layers normalise with and update; no statistic is written in place, so
/// a graph that saved one set for its backward pass stays valid while the other is in use. Affine
/// parameters are shared. keepSecond() copies the second set into the model's own buffers for good.
class DualBatchNormStats {
 public:
  explicit DualBatchNormStats(torch::nn::Module& model);
  /// Exchanges the layers' statistics with the second set.
  void swap();
  /// The model's buffers (what checkpoints save) receive the second set's values; the layers use
  /// them from then on. Call with the model's own set in use (an even number of swaps).
  void keepSecond();
  void to(torch::Device device);
  bool empty() const { return slots_.empty(); }

 private:
  std::vector<torch::Tensor*> slots_;  ///< running_mean, running_var, num_batches_tracked of each layer
  std::vector<torch::Tensor> other_;
  bool swapped_ = false;
};

class ContrastiveViewLoss;

/// SimCLR, or with `adversarial` the adversarial contrastive objective: loss = NT-Xent(view1, view2)
/// + NT-Xent(adversarial view1, view2), the adversarial view being PGD from view 1 (uniform random start
/// in the ball, `adversary.steps` steps, Pgd's last-iterate loop on the contrastive loss) that maximises
/// NT-Xent against the clean view 2, in eval mode with the parameters frozen, as every attack here runs. With dual BatchNorm the adversarial view's passes use
/// and update their own statistics, and the model keeps those after pre-training (ACL fine-tunes from
/// the adversarial branch).
class ContrastiveObjective : public TrainingObjective {
 public:
  ContrastiveObjective(ClassifierImpl& model, ContrastiveOptions options);
  std::string name() const override { return options_.adversarial ? "adversarial-contrastive" : "simclr"; }
  BatchOutput batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override;
  std::vector<torch::Tensor> extraParameters() override { return projector_->parameters(); }
  void to(torch::Device device) override {
    projector_->to(device);
    if (dual_) dual_->to(device);
  }
  void setTraining(bool on) override { projector_->train(on); }
  bool classifies() const override { return false; }
  void finish(ClassifierImpl& model) override;

  /// The adversarial view of `v1` against the projections `target` (no gradient to the parameters).
  torch::Tensor adversarialView(ClassifierImpl& model, const torch::Tensor& v1, const torch::Tensor& target, at::Generator& gen);
  torch::Tensor project(ClassifierImpl& model, const torch::Tensor& x) { return projector_->forward(model.features(x)); }
  torch::nn::Sequential& projector() { return projector_; }

 private:
  ContrastiveOptions options_;
  torch::nn::Sequential projector_{nullptr};
  std::unique_ptr<DualBatchNormStats> dual_;
  std::shared_ptr<ContrastiveViewLoss> viewLoss_;        ///< the adversary's loss (contrastive.cpp)
  std::unique_ptr<Attack> adversary_;                   ///< PGD on it, made at the first adversarial view
};

}  // namespace robustlab
