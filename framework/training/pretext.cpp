#include "framework/training/pretext.h"

#include <torch/nn/functional/loss.h>

#include <stdexcept>

namespace robustlab {

RotationObjective::RotationObjective(int64_t featureDim) : head_(torch::nn::Linear(featureDim, 4)) {}

BatchOutput RotationObjective::batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor&, at::Generator&) {
  if (x.size(2) != x.size(3)) throw std::invalid_argument("rotation pre-training needs square images");
  const int64_t n = x.size(0);
  std::vector<torch::Tensor> views;
  for (int64_t k = 0; k < 4; ++k) views.push_back(torch::rot90(x, k, {2, 3}));
  auto inputs = torch::cat(views, 0);
  auto targets = torch::arange(4, torch::TensorOptions().dtype(torch::kInt64).device(x.device())).repeat_interleave(n);
  auto logits = head_->forward(model.features(inputs));
  BatchOutput out;
  out.loss = torch::nn::functional::cross_entropy(logits, targets);
  out.correct = logits.argmax(1).eq(targets).sum().item<int64_t>();
  out.count = 4 * n;
  return out;
}

MaskedReconstructionObjective::MaskedReconstructionObjective(int64_t featureDim, int64_t channels, int64_t height, int64_t width,
                                                             int64_t patch, double maskRatio)
    : decoder_(torch::nn::Linear(featureDim, channels * height * width)),
      channels_(channels),
      height_(height),
      width_(width),
      patch_(patch),
      maskRatio_(maskRatio) {
  if (patch <= 0 || !(maskRatio > 0 && maskRatio < 1)) throw std::invalid_argument("masked reconstruction: patch > 0 and mask ratio in (0,1) required");
}

BatchOutput MaskedReconstructionObjective::batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor&, at::Generator& gen) {
  const int64_t n = x.size(0);
  const int64_t ph = (height_ + patch_ - 1) / patch_, pw = (width_ + patch_ - 1) / patch_;
  auto keep = (torch::rand({n, 1, ph, pw}, gen) >= maskRatio_).to(x.dtype());
  keep = keep.repeat_interleave(patch_, 2).repeat_interleave(patch_, 3).slice(2, 0, height_).slice(3, 0, width_).to(x.device());
  auto recon = torch::sigmoid(decoder_->forward(model.features(x * keep))).view({n, channels_, height_, width_});
  BatchOutput out;
  // Squared error summed over an image's pixels, averaged over images: a per-pixel mean would make
  // the gradients ~1000x smaller than a classification loss's and SGD would barely move.
  out.loss = (recon - x).pow(2).flatten(1).sum(1).mean();
  return out;
}

}  // namespace robustlab
