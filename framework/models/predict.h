#pragma once
// A model's predictions and clean accuracy: what evaluation, training and the commands all read of a
// model without attacking or training it.
#include "data/dataset.h"
#include "framework/models/model.h"

#include <torch/types.h>

#include <cstdint>

namespace robustlab {

/// Logits on the CPU (eval mode, restored afterwards, no gradient), `batchSize` images at a time.
torch::Tensor logits(ClassifierImpl& model, const torch::Tensor& images, torch::Device device, int64_t batchSize = 1000);
/// Predicted classes: the argmax of logits().
torch::Tensor predict(ClassifierImpl& model, const torch::Tensor& images, torch::Device device, int64_t batchSize = 1000);
/// Clean accuracy in [0,1]; NaN for an empty set.
double accuracy(ClassifierImpl& model, const Dataset& ds, torch::Device device, int64_t batchSize = 1000);

}  // namespace robustlab
