#pragma once
// Data augmentation for training, applied on the fly to each batch with the trainer's seeded
// generator: random crop with zero padding and horizontal flip, the standard CIFAR recipe.
#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace robustlab {

/// The values of a stage's `augment`: auto, none, crop, flip, crop+flip.
std::vector<std::string> augmentNames();

/// What "auto" means for a data source: crop+flip for CIFAR-10/100 (cifar10, cifar100, cifar100-coarse: photographs, 4 px padding is the
/// published recipe), none for the digit and clothing sets (a mirrored digit is not the same digit, and
/// the shipped numbers were made without). Anything else is returned as it is.
std::string resolveAugment(const std::string& augment, const std::string& source);

/// x (N x C x H x W) augmented per example: with "crop", padded by `padding` zeros on every side and cut
/// back to H x W at an offset drawn uniformly from [0, 2 * padding] in each direction; with "flip",
/// mirrored left-right with probability 1/2. "none" and "auto" return x.
torch::Tensor augmentBatch(const torch::Tensor& x, const std::string& augment, int64_t padding, at::Generator& gen);

/// How a contrastive pre-training view is drawn (contrastive.h): SimCLR's recipe for small images.
struct ViewOptions {
  double minScale = 0.3;  ///< random resized crop: the crop's area is a share in [minScale, 1] of the image's
  bool flip = true;       ///< horizontal flip with probability 1/2
  double jitter = 0.4;    ///< brightness and contrast each scaled by a factor drawn from [1 - jitter, 1 + jitter]
  void validate() const;
};

/// One view of every image of x (N x C x H x W in [0,1]): a random resized crop (area share uniform in
/// [minScale, 1], aspect ratio log-uniform in [3/4, 4/3] and clamped so that the crop fits, resampled bilinearly back to H x W), the
/// flip, then brightness (x * b) and contrast (mean + (x - mean) * c, the image's own mean), clamped to
/// [0, 1]. Every draw comes from `gen`.
torch::Tensor contrastiveView(const torch::Tensor& x, const ViewOptions& o, at::Generator& gen);

}  // namespace robustlab
