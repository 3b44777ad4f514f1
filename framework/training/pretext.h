#pragma once
// Self-supervised pre-training objectives: they use only images, never labels, and train the
// classifier's backbone through an auxiliary head that is thrown away afterwards.
#include "framework/training/objectives.h"

#include <torch/nn/modules/linear.h>

namespace robustlab {

/// Rotation prediction (Gidaris et al. 2018): each image is shown at 0/90/180/270 degrees and the
/// backbone + a 4-way head predict which. Accuracy is rotation accuracy.
class RotationObjective : public TrainingObjective {
 public:
  explicit RotationObjective(int64_t featureDim);
  std::string name() const override { return "rotation"; }
  BatchOutput batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override;
  std::vector<torch::Tensor> extraParameters() override { return head_->parameters(); }
  void to(torch::Device device) override { head_->to(device); }
  void setTraining(bool on) override { head_->train(on); }
  bool classifies() const override { return false; }

 private:
  torch::nn::Linear head_{nullptr};
};

/// Masked-patch reconstruction (a denoising auto-encoder in the spirit of MAE, He et al. 2022):
/// square patches are blanked with probability `maskRatio` and a linear decoder on the backbone's
/// features reconstructs the whole clean image; loss is the squared error per image (summed over
/// pixels, averaged over the batch).
class MaskedReconstructionObjective : public TrainingObjective {
 public:
  MaskedReconstructionObjective(int64_t featureDim, int64_t channels, int64_t height, int64_t width, int64_t patch = 7,
                                double maskRatio = 0.5);
  std::string name() const override { return "masked-reconstruction"; }
  BatchOutput batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator& gen) override;
  std::vector<torch::Tensor> extraParameters() override { return decoder_->parameters(); }
  void to(torch::Device device) override { decoder_->to(device); }
  void setTraining(bool on) override { decoder_->train(on); }
  bool classifies() const override { return false; }

 private:
  torch::nn::Linear decoder_{nullptr};
  int64_t channels_, height_, width_, patch_;
  double maskRatio_;
};

}  // namespace robustlab
