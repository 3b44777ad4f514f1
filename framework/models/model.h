#pragma once
// A classifier = input normalisation + backbone (feature extractor) + linear head, so a pre-trained
// backbone can be given a new head for fine-tuning.
#include "framework/models/model_spec.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace robustlab {

class ClassifierImpl : public torch::nn::Module {
 public:
  /// Builds the architecture of `spec` (validated first) with fresh weights.
  explicit ClassifierImpl(const ModelSpec& spec);

  /// Logits, N x numClasses, for pixels in [0,1].
  torch::Tensor forward(const torch::Tensor& x);
  /// Backbone features, N x featureDim.
  torch::Tensor features(const torch::Tensor& x);

  /// Replaces the head with a freshly initialised one for `numClasses` classes.
  void resetHead(int64_t numClasses);
  /// From scratch, for every model kind. A native model is built with fresh weights already; a
  /// TorchScript model's weights (the file's, maybe trained) are replaced in place: by PyTorch's
  /// reset_parameters() rules per layer type from the global generator, or by model.torchscript_init's
  /// weights; its head is re-initialised too. Returns what the start was, for results and notes.
  std::string initialiseFresh();
  /// Freezes (or unfreezes) backbone parameters, for linear probing.
  void freezeBackbone(bool frozen);

  const ModelSpec& spec() const { return spec_; }
  /// The normalisation features() applies, (x - mean) / std (per channel when the spec says so);
  /// skipped when mean 0 and std 1.
  bool normalises() const { return !spec_.channelMean.empty() || !(spec_.mean == 0.0 && spec_.stdev == 1.0); }
  const torch::Tensor& inputMean() const { return mean_; }
  const torch::Tensor& inputStd() const { return std_; }
  int64_t featureDim() const { return featureDim_; }
  torch::nn::Sequential& backbone() { return backbone_; }
  /// The linear head; empty (false) for a TorchScript classifier used as it is, whose output is the logits.
  torch::nn::Linear& head() { return head_; }

 private:
  ModelSpec spec_;
  torch::nn::Sequential backbone_{nullptr};
  torch::nn::Linear head_{nullptr};
  torch::Tensor mean_, std_;
  int64_t featureDim_ = 0;
};
TORCH_MODULE(Classifier);

/// The BatchNorm layers (1d and 2d) among `m`'s modules, `m` included. A TorchScript backbone's
/// BatchNorm layers are inside its script and not listed.
std::vector<std::shared_ptr<torch::nn::Module>> batchNormLayers(torch::nn::Module& m);

}  // namespace robustlab
