#include "framework/models/predict.h"

#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace robustlab {

torch::Tensor logits(ClassifierImpl& model, const torch::Tensor& images, torch::Device device, int64_t batchSize) {
  const bool wasTraining = model.is_training();
  model.eval();
  torch::NoGradGuard noGrad;
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < images.size(0); b += batchSize)
    parts.push_back(model.forward(images.slice(0, b, std::min(b + batchSize, images.size(0))).to(device)).cpu());
  model.train(wasTraining);
  return parts.empty() ? torch::empty({0, model.spec().numClasses}) : torch::cat(parts);
}

torch::Tensor predict(ClassifierImpl& model, const torch::Tensor& images, torch::Device device, int64_t batchSize) {
  return logits(model, images, device, batchSize).argmax(1);
}

double accuracy(ClassifierImpl& model, const Dataset& ds, torch::Device device, int64_t batchSize) {
  if (ds.size() == 0) return NAN;
  return predict(model, ds.images, device, batchSize).eq(ds.labels).to(torch::kFloat64).mean().item<double>();
}

}  // namespace robustlab
