#include "framework/models/predict.h"

#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace robustlab {

torch::Tensor predict(ClassifierImpl& model, const torch::Tensor& images, torch::Device device, int64_t batchSize) {
  const bool wasTraining = model.is_training();
  model.eval();
  torch::NoGradGuard noGrad;
  std::vector<torch::Tensor> preds;
  for (int64_t b = 0; b < images.size(0); b += batchSize)
    preds.push_back(model.forward(images.slice(0, b, std::min(b + batchSize, images.size(0))).to(device)).argmax(1).cpu());
  model.train(wasTraining);
  return preds.empty() ? torch::empty({0}, torch::kInt64) : torch::cat(preds);
}

double accuracy(ClassifierImpl& model, const Dataset& ds, torch::Device device, int64_t batchSize) {
  if (ds.size() == 0) return NAN;
  return predict(model, ds.images, device, batchSize).eq(ds.labels).to(torch::kFloat64).mean().item<double>();
}

}  // namespace robustlab
