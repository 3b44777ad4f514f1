#include "framework/models/model.h"

#include "framework/models/architectures.h"
#include "framework/models/batchnorm.h"
#include "framework/models/conv.h"
#include "framework/models/resnet.h"
#include "framework/models/torchscript.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/adaptive.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>
#include <torch/utils.h>

#include <algorithm>
#include <stdexcept>

namespace robustlab {
namespace nn = torch::nn;
namespace {

/// Shape of one example after the layers pushed so far, tracked to size conv/fc/bn layers.
struct Shape {
  int64_t c, h, w, flat;
  bool flattened = false;
};

void appendCnn(nn::Sequential& seq, const ModelSpec& spec) {
  Shape s{spec.inChannels, spec.height, spec.width, 0};
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const auto& l = spec.layers[i];
    const std::string where = "model.layers[" + std::to_string(i) + "] (" + l.type + ")";
    if (l.type == "conv") {
      if (s.flattened) throw std::invalid_argument(where + ": conv after flatten");
      seq->push_back(Conv(nn::Conv2dOptions(s.c, l.channels, l.kernel).stride(l.stride).padding(l.padding)));
      s.c = l.channels;
      s.h = (s.h + 2 * l.padding - l.kernel) / l.stride + 1;
      s.w = (s.w + 2 * l.padding - l.kernel) / l.stride + 1;
    } else if (l.type == "bn") {
      if (s.flattened) seq->push_back(SyncableBatchNorm1d(s.flat));
      else seq->push_back(SyncableBatchNorm2d(s.c));
    } else if (l.type == "relu") {
      seq->push_back(nn::ReLU());
    } else if (l.type == "maxpool" || l.type == "avgpool") {
      if (s.flattened) throw std::invalid_argument(where + ": pooling after flatten");
      if (l.type == "maxpool") seq->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(l.kernel).stride(l.stride)));
      else seq->push_back(nn::AvgPool2d(nn::AvgPool2dOptions(l.kernel).stride(l.stride)));
      s.h = (s.h - l.kernel) / l.stride + 1;
      s.w = (s.w - l.kernel) / l.stride + 1;
    } else if (l.type == "flatten") {
      if (!s.flattened) {
        seq->push_back(nn::Flatten());
        s.flat = s.c * s.h * s.w;
        s.flattened = true;
      }
    } else if (l.type == "fc") {
      if (!s.flattened) {
        seq->push_back(nn::Flatten());
        s.flat = s.c * s.h * s.w;
        s.flattened = true;
      }
      seq->push_back(nn::Linear(s.flat, l.units));
      s.flat = l.units;
    } else if (l.type == "dropout") {
      seq->push_back(nn::Dropout(l.p));
    } else {
      throw std::invalid_argument(where + ": unknown layer type");
    }
    if (!s.flattened && (s.h <= 0 || s.w <= 0)) throw std::invalid_argument(where + ": spatial size shrinks to zero");
  }
  if (!s.flattened) seq->push_back(nn::Flatten());
}

void appendMlp(nn::Sequential& seq, const ModelSpec& spec) {
  seq->push_back(nn::Flatten());
  int64_t in = spec.inChannels * spec.height * spec.width;
  for (int64_t h : spec.hidden) {
    seq->push_back(nn::Linear(in, h));
    seq->push_back(nn::ReLU());
    in = h;
  }
}

void appendResnet(nn::Sequential& seq, const ModelSpec& spec) {
  int64_t width = spec.resnetWidth;
  seq->push_back(Conv(nn::Conv2dOptions(spec.inChannels, width, 3).padding(1).bias(false)));
  int64_t in = width;
  for (size_t stage = 0; stage < spec.resnetBlocks.size(); ++stage) {
    const int64_t out = spec.resnetWidth << stage;
    for (int64_t b = 0; b < spec.resnetBlocks[stage]; ++b) {
      seq->push_back(PreActBlock(in, out, (stage > 0 && b == 0) ? 2 : 1));
      in = out;
    }
  }
  seq->push_back(SyncableBatchNorm2d(in));
  seq->push_back(nn::ReLU());
  seq->push_back(nn::AdaptiveAvgPool2d(1));
  seq->push_back(nn::Flatten());
}

/// The head a cut TorchScript classifier brings: its own last layer when the class count is the same.
void copyCutHead(nn::Linear& head, const ScriptModelImpl& script) {
  if (!script.cutWeight.defined() || script.cutWeight.size(0) != head->weight.size(0)) return;
  torch::NoGradGuard noGrad;
  head->weight.copy_(script.cutWeight);
  if (script.cutBias.defined()) head->bias.copy_(script.cutBias);
  else head->bias.zero_();
}

/// WideResNet-depth-width: a 16-channel stem, three stages of (depth - 4) / 6 pre-activation blocks of
/// 16k, 32k, 64k channels (strides 1, 2, 2), then BN-ReLU and global average pooling. WRN-28-10 has
/// 36,479,194 parameters for 10 classes (tested), as published.
void appendWrn(nn::Sequential& seq, const ModelSpec& spec) {
  const int64_t n = (spec.wrnDepth - 4) / 6, k = spec.wrnWidth;
  seq->push_back(Conv(nn::Conv2dOptions(spec.inChannels, 16, 3).padding(1).bias(false)));
  int64_t in = 16;
  const int64_t widths[3] = {16 * k, 32 * k, 64 * k};
  for (int stage = 0; stage < 3; ++stage)
    for (int64_t b = 0; b < n; ++b) {
      seq->push_back(PreActBlock(in, widths[stage], stage > 0 && b == 0 ? 2 : 1));
      in = widths[stage];
    }
  seq->push_back(SyncableBatchNorm2d(in));
  seq->push_back(nn::ReLU());
  seq->push_back(nn::AdaptiveAvgPool2d(1));
  seq->push_back(nn::Flatten());
}

std::map<std::string, BackboneBuilder>& registry() {
  static std::map<std::string, BackboneBuilder> r = {{"cnn", appendCnn}, {"mlp", appendMlp}, {"resnet", appendResnet}, {"wrn", appendWrn}};
  return r;
}

}  // namespace

const std::map<std::string, BackboneBuilder>& architectures() { return registry(); }

std::vector<std::string> architectureNames() {
  std::vector<std::string> names{"torchscript"};
  for (const auto& [name, _] : registry()) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

ArchitectureRegistration::ArchitectureRegistration(const std::string& name, BackboneBuilder build) {
  if (name == "torchscript" || !registry().emplace(name, std::move(build)).second)
    throw std::logic_error("architecture '" + name + "' is registered twice");
}

ClassifierImpl::ClassifierImpl(const ModelSpec& spec) : spec_(spec) {
  spec_.validate();
  backbone_ = nn::Sequential();
  if (spec_.arch != "torchscript") {
    architectures().at(spec_.arch)(backbone_, spec_);
  } else {
    const std::string bytes = scriptBytesFor(spec_, &spec_.torchscriptSha256);  // pins the hash of a spec not read from a config
    backbone_->push_back(ScriptModel(bytes, spec_.torchscript, spec_.cut, spec_.rangeLo, spec_.rangeHi));
    // Broadcasting and global pooling let a model of other inputs run on these and score about chance:
    // refused unless the shape was declared (a model that adapts its inputs itself).
    const std::string mismatch = spec_.inputShape.empty() ? backbone_->at<ScriptModelImpl>(0).channelMismatch(spec_.inChannels) : "";
    if (!mismatch.empty())
      throw std::invalid_argument("model.torchscript: " + spec_.torchscript + ": " + mismatch + " but the data has " +
                                  std::to_string(spec_.inChannels) + " x " + std::to_string(spec_.height) + " x " + std::to_string(spec_.width) +
                                  " images (another data.source, or declare model.input_shape / attack --input-shape if the model takes these)");
  }
  register_module("backbone", backbone_);
  if (spec_.channelMean.empty()) {
    mean_ = register_buffer("input_mean", torch::full({1}, spec_.mean));
    std_ = register_buffer("input_std", torch::full({1}, spec_.stdev));
  } else {
    const auto c = static_cast<int64_t>(spec_.channelMean.size());
    if (c != spec_.inChannels)
      throw std::invalid_argument("model.mean: " + std::to_string(c) + " per-channel values for " + std::to_string(spec_.inChannels) +
                                  "-channel images (one value per channel, or one number for all)");
    mean_ = register_buffer("input_mean", torch::tensor(spec_.channelMean, torch::kFloat64).to(torch::kFloat32).view({1, c, 1, 1}));
    std_ = register_buffer("input_std", torch::tensor(spec_.channelStd, torch::kFloat64).to(torch::kFloat32).view({1, c, 1, 1}));
  }
  {
    torch::NoGradGuard noGrad;
    backbone_->eval();
    const auto probe = backbone_->forward(torch::zeros({2, spec_.inChannels, spec_.height, spec_.width}));
    featureDim_ = probe.size(1);
    if (spec_.arch == "torchscript") {
      if (!torch::isfinite(probe).all().item<bool>())
        throw std::invalid_argument("model.torchscript: " + spec_.torchscript + " returns NaN or Inf on an all-zero input");
      // A fixed, non-constant image pattern in [0, 1] checks the lowered chain (no random numbers drawn).
      const auto n = 4 * spec_.inChannels * spec_.height * spec_.width;
      const auto pattern = (torch::arange(n, torch::kFloat32).mul(0.37).sin() * 0.5 + 0.5).reshape({4, spec_.inChannels, spec_.height, spec_.width});
      backbone_->at<ScriptModelImpl>(0).lower(pattern);
    }
    backbone_->train();
  }
  if (spec_.arch == "torchscript" && spec_.cut.empty()) {
    // Used as it is: its output is the logits, and there is no head to replace.
    if (featureDim_ != spec_.numClasses)
      throw std::invalid_argument("model.torchscript: " + spec_.torchscript + " returns " + std::to_string(featureDim_) +
                                  " logits but the data has " + std::to_string(spec_.numClasses) +
                                  " classes (name its last linear layer in model.cut to give it a new head)");
    return;
  }
  head_ = register_module("head", nn::Linear(featureDim_, spec_.numClasses));
  if (spec_.arch == "torchscript") copyCutHead(head_, backbone_->at<ScriptModelImpl>(0));
}

torch::Tensor ClassifierImpl::features(const torch::Tensor& x) {
  // The identity normalisation (the default) costs two element-wise ops forward and backward: skip it.
  if (!normalises()) return backbone_->forward(x);
  return backbone_->forward((x - mean_) / std_);
}

torch::Tensor ClassifierImpl::forward(const torch::Tensor& x) {
  // Under bf16 autocast the logits come out in bf16; losses and argmax are taken in fp32 (an fp64
  // model's, in the tests' exact comparisons, in fp64).
  const auto f = features(x);
  const auto logits = head_ ? head_->forward(f) : f;
  return logits.scalar_type() == torch::kFloat64 ? logits : logits.to(torch::kFloat32);
}

void ClassifierImpl::resetHead(int64_t numClasses) {
  if (!head_)
    throw std::invalid_argument("model.cut: " + spec_.torchscript +
                                " is used as it is; name its last linear layer in model.cut to give it a new head");
  const auto device = mean_.device();
  spec_.numClasses = numClasses;
  head_ = replace_module("head", nn::Linear(featureDim_, numClasses));
  head_->to(device);
}

std::string ClassifierImpl::initialiseFresh() {
  if (spec_.arch != "torchscript") return "fresh: LibTorch's default initialisation (PyTorch's rules)";
  auto& script = backbone_->at<ScriptModelImpl>(0);
  std::string how;
  if (spec_.torchscriptInit.empty()) {
    script.initialiseFresh();
    how = "fresh: PyTorch's reset_parameters() rules per layer type";
  } else {
    script.copyWeightsFrom(scriptInitBytesFor(spec_), spec_.torchscriptInit);
    how = "fresh: the weights of model.torchscript_init " + spec_.torchscriptInit;
  }
  if (head_) head_->reset_parameters();
  return how;
}

void ClassifierImpl::freezeBackbone(bool frozen) {
  for (auto& p : backbone_->parameters()) p.requires_grad_(!frozen);
}

std::vector<std::shared_ptr<torch::nn::Module>> batchNormLayers(torch::nn::Module& m) {
  std::vector<std::shared_ptr<torch::nn::Module>> out;
  for (const auto& sub : m.modules(/*include_self=*/true))
    if (sub->as<torch::nn::BatchNorm1dImpl>() || sub->as<torch::nn::BatchNorm2dImpl>()) out.push_back(sub);
  return out;
}

}  // namespace robustlab
