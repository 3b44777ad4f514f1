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

struct BatchOutput {
  torch::Tensor loss;   ///< scalar, mean over the batch; the trainer backpropagates it
  int64_t correct = 0;  ///< examples the objective counts as right (classification or pretext task)
  int64_t count = 0;    ///< examples counted; 0 when the objective has no accuracy (reconstruction)
};

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
  /// True when accuracy means classification accuracy of the model's head on the true labels.
  virtual bool classifies() const { return true; }
};

/// Plain supervised training: mean cross-entropy on clean inputs.
class CrossEntropyObjective : public TrainingObjective {
 public:
  std::string name() const override { return "cross-entropy"; }
  BatchOutput batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override;
};

}  // namespace robustlab
