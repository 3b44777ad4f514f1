#include "framework/models/resnet.h"

#include <torch/nn/functional/activation.h>

namespace robustlab {

PreActBlockImpl::PreActBlockImpl(int64_t in, int64_t out, int64_t stride) {
  namespace nn = torch::nn;
  bn1_ = register_module("bn1", SyncableBatchNorm2d(in));
  conv1_ = register_module("conv1", Conv(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
  bn2_ = register_module("bn2", SyncableBatchNorm2d(out));
  conv2_ = register_module("conv2", Conv(nn::Conv2dOptions(out, out, 3).stride(1).padding(1).bias(false)));
  if (stride != 1 || in != out)
    shortcut_ = register_module("shortcut", Conv(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
}

torch::Tensor PreActBlockImpl::forward(const torch::Tensor& x) {
  auto out = torch::relu(bn1_->forward(x));
  auto sc = shortcut_ ? shortcut_->forward(out) : x;
  out = conv1_->forward(out);
  out = conv2_->forward(torch::relu(bn2_->forward(out)));
  return out + sc;
}

}  // namespace robustlab
