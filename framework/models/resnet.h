#pragma once
// Pre-activation residual block (He et al. 2016, "Identity Mappings in Deep Residual Networks"):
// BN-ReLU-conv3x3-BN-ReLU-conv3x3 with an identity or 1x1-conv shortcut.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include "framework/models/batchnorm.h"
#include "framework/models/conv.h"

#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

namespace robustlab {

class PreActBlockImpl : public torch::nn::Module {
 public:
  PreActBlockImpl(int64_t in, int64_t out, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  SyncableBatchNorm2d bn1_{nullptr}, bn2_{nullptr};
  Conv conv1_{nullptr}, conv2_{nullptr}, shortcut_{nullptr};
};
TORCH_MODULE(PreActBlock);

}  // namespace robustlab
