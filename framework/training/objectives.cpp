#include "framework/training/objectives.h"

#include <torch/nn/functional/loss.h>

namespace robustlab {

BatchOutput CrossEntropyObjective::batch(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, at::Generator&) {
  auto logits = model.forward(x);
  BatchOutput out;
  out.loss = torch::nn::functional::cross_entropy(logits, y);
  out.correct = logits.argmax(1).eq(y).sum().item<int64_t>();
  out.count = y.size(0);
  return out;
}

}  // namespace robustlab
