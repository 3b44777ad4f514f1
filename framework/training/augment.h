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

/// What "auto" means for a data source: crop+flip for CIFAR-10/100 (photographs, 4 px padding is the
/// published recipe), none for the digit and clothing sets (a mirrored digit is not the same digit, and
/// the shipped numbers were made without). Anything else is returned as it is.
std::string resolveAugment(const std::string& augment, const std::string& source);

/// x (N x C x H x W) augmented per example: with "crop", padded by `padding` zeros on every side and cut
/// back to H x W at an offset drawn uniformly from [0, 2 * padding] in each direction; with "flip",
/// mirrored left-right with probability 1/2. "none" and "auto" return x.
torch::Tensor augmentBatch(const torch::Tensor& x, const std::string& augment, int64_t padding, at::Generator& gen);

}  // namespace robustlab
