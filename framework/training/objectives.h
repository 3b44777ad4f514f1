#pragma once
// What one training batch optimises. The trainer's loop is the same for supervised training,
// adversarial training (the attacks library provides PGD-AT and TRADES objectives) and
// self-supervised pre-training (pretext.h).
#include "framework/models/model.h"

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace robustlab {

struct Dataset;
struct EpochRecord;

struct BatchOutput {
  torch::Tensor loss;   ///< scalar, mean over the batch; the trainer backpropagates it
  int64_t correct = 0;  ///< examples the objective counts as right (classification or pretext task)
  int64_t count = 0;    ///< examples counted; 0 when the objective has no accuracy (reconstruction)
  /// True when the objective has already added d(loss)/d(parameter) to every trainable parameter's
  /// .grad (crossEntropyStep's row chunks); the trainer then does not backpropagate `loss`.
  bool gradientsDone = false;
  /// True when `loss` is the whole data-parallel batch's (the ranks' rows gathered, SimCLR's negatives),
  /// computed alike on every rank, its gradient flowing through this rank's rows only: the ranks'
  /// gradients then add up to the batch's. False: the mean over this rank's rows (Shard::weight).
  bool globalLoss = false;
};

class Communicator;

/// Where one rank's rows stand in a data-parallel step's batch: rows [offset, offset + rows) of
/// `globalRows`, split contiguously in rank order. `comm` is null when the process trains alone.
struct Shard {
  Communicator* comm = nullptr;
  int64_t offset = 0, rows = 0, globalRows = 0;
  /// The share of the batch mean this rank's mean stands for.
  double weight() const { return globalRows ? static_cast<double>(rows) / static_cast<double>(globalRows) : 1.0; }
  /// The share of the batch's loss a rank's loss stands for: weight(), or 1 for a `globalLoss`
  /// (BatchOutput), computed alike on every rank.
  double lossShare(bool globalLoss) const { return globalLoss ? 1.0 : weight(); }
  /// Makes every rank's .grad of `params` the whole batch's gradient: each rank's scaled by weight()
  /// (by 1 for a `globalLoss`), then summed over the ranks. A parameter without a gradient on this
  /// rank counts as zeros. Nothing to do without `comm`.
  void reduceGradients(const std::vector<torch::Tensor>& params, bool globalLoss) const;
};

/// Whether every layer of the model treats the rows of a batch independently in training mode (conv,
/// ReLU, pooling, flatten, linear): no batch statistics (batch norm) and no random numbers (dropout).
bool rowIndependentInTraining(ClassifierImpl& model);

/// Mean cross-entropy of model(x) on y and the count of correct argmaxes, for a training step. On a
/// CPU split into several batch workers (configureThreads' TxW), under grad mode, for a model that
/// rowIndependentInTraining, the forward and backward passes run in contiguous row chunks, one per core
/// (framework/runtime/chunks.h), and the parameters' gradients, the chunks' summed in chunk order, are
/// added to their .grad (`gradientsDone`): the whole batch's gradients up to the order of the sums
/// over its examples, the same on every run. Otherwise the plain step, for the trainer to backpropagate.
BatchOutput crossEntropyStep(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y);

class TrainingObjective {
 public:
  virtual ~TrainingObjective() = default;
  virtual std::string name() const = 0;
  /// Loss of one batch; `model` is in training mode, `gen` drives any randomness.
  virtual BatchOutput batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) = 0;
  /// Parameters beyond the classifier's own (auxiliary heads of pretext tasks).
  virtual std::vector<torch::Tensor> extraParameters() { return {}; }
  /// Moves auxiliary modules and sets their mode alongside the model.
  virtual void to(torch::Device device) {}
  virtual void setTraining(bool on) {}
  /// Called once when training ends (dual BatchNorm hands the model its adversarial statistics).
  virtual void finish(ClassifierImpl& model) {}
  /// Called before each epoch's first batch (epochs count from 0 in each training call).
  virtual void startEpoch(int64_t epoch) {}
  /// Called after each optimiser step (a weight perturbation is taken back here).
  virtual void afterStep(ClassifierImpl& model) {}
  /// Called after each epoch's last step, before validation, with held-out examples (the validation
  /// split, else the training set's first examples); may add its own checks to the epoch's record.
  virtual void endEpoch(ClassifierImpl& model, const Dataset& heldOut, EpochRecord& record) {}
  /// True when accuracy means classification accuracy of the model's head on the true labels.
  virtual bool classifies() const { return true; }
  /// Set by the trainer before each batch: this rank's rows of a data-parallel step.
  void setShard(const Shard& shard) { shard_ = shard; }

 protected:
  Shard shard_;
};

/// Plain supervised training: mean cross-entropy on clean inputs.
class CrossEntropyObjective : public TrainingObjective {
 public:
  std::string name() const override { return "cross-entropy"; }
  BatchOutput batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override;
};

}  // namespace robustlab
