#pragma once
// A TorchScript module (a model scripted or traced in PyTorch) as a robustlab backbone.
//
// The scripted module's parameters and buffers are registered on this module under their own dotted
// names (conv1.weight stays conv1.weight), as the same tensors: the optimiser, checkpoints, .to(device),
// parameter freezing and the attacks' gradient rules see them as they see a native model's, and a
// BatchNorm inside the script updates the statistics robustlab saves. train()/eval() reach the script.
//
// A classifier is used as it is (its output is the logits), or cut: the user names its last linear
// layer, whose weight and bias are taken out as the head's (cutWeight, cutBias) and replaced inside
// the script by the identity, so forward() returns the features that layer read.
#include "framework/models/model_spec.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <vector>

namespace torch::jit {
struct Module;
}

namespace robustlab {

class ScriptModelImpl : public torch::nn::Module {
 public:
  /// `bytes`: a TorchScript archive (what torch.jit.save writes); `what` names it in errors; `cut`:
  /// the dotted name of a linear submodule to cut, "" for none; pixels x in [0,1] reach the script as
  /// lo + x * (hi - lo). Errors are std::invalid_argument naming `what` and the problem.
  ScriptModelImpl(const std::string& bytes, const std::string& what, const std::string& cut, double lo, double hi);

  /// In eval mode on the CPU, the lowered chain when there is one (same tensors), else the script.
  torch::Tensor forward(const torch::Tensor& x);
  void train(bool on = true) override;

  /// Maps a plain forward graph onto robustlab's own layers (torchscript_lowering.cpp) and keeps the
  /// mapping only if it computes the script's output on `probe` (eval mode; a check for a wrong
  /// mapping, whose errors are of the logits' size, not for rounding). Inputs must reach the script
  /// unchanged (input range [0, 1]).
  void lower(const torch::Tensor& probe);
  /// The lowered chain (conv, relu, flatten, linear modules), or empty: what input_grad.h follows.
  const torch::nn::Sequential& lowered() const { return lowered_; }

  /// From scratch: every parameter and buffer of the script's modules re-initialised in place by
  /// PyTorch's reset_parameters() rules for its layer type, in module order, from the global generator
  /// (torchscript_init.cpp; the cut layer is left, robustlab's head replaces it). std::invalid_argument
  /// naming the module and model.torchscript_init when a module holding parameters has no known rule.
  void initialiseFresh();
  /// "'path' of type T" for each module holding parameters that initialiseFresh has no rule for.
  std::vector<std::string> modulesWithoutInitRule() const;
  /// Throws initialiseFresh's error, without touching the weights, when it would fail.
  void requireInitRules() const;
  /// Every parameter and buffer copied from another TorchScript archive of the same model (the same
  /// names and shapes; model.torchscript_init), named `what` in errors.
  void copyWeightsFrom(const std::string& bytes, const std::string& what);

  /// Why the script cannot take `channels`-channel images, judged from its first convolution (in module
  /// order): "its first layer 'conv1' (Conv2d) takes 3 channels"; "" when it can, or when it has none.
  std::string channelMismatch(int64_t channels) const;

  /// The cut layer's weight (out x in) and bias (out; undefined when it had none); undefined without a cut.
  torch::Tensor cutWeight, cutBias;

 private:
  void registerTensors();
  torch::Tensor scriptForward(const torch::Tensor& x);
  torch::nn::Sequential lowered_{nullptr};
  std::shared_ptr<torch::jit::Module> script_;  // the TorchScript headers stay in torchscript.cpp
  std::string what_, cut_;
  double lo_, hi_;
};
TORCH_MODULE(ScriptModel);

/// The plain chain `script`'s forward graph is, as robustlab layers sharing its tensors, or empty
/// (torchscript_lowering.cpp).
torch::nn::Sequential lowerScript(torch::jit::Module& script);

/// The bytes of the TorchScript file `spec` names: those a config or checkpoint brought
/// (rememberScriptBytes), found by the spec's SHA-256, else the file spec.torchscript, checked against
/// spec.torchscriptSha256 when that is set; their SHA-256 into `sha` when given. std::invalid_argument
/// naming the field and the file otherwise.
std::string scriptBytesFor(const ModelSpec& spec, std::string* sha = nullptr);
/// The bytes of spec.torchscriptInit (model.torchscript_init), as scriptBytesFor finds a script's;
/// errors name model.torchscript_init.
std::string scriptInitBytesFor(const ModelSpec& spec);
/// A TorchScript archive loaded on the CPU; std::invalid_argument "`what`: not a TorchScript file ..."
/// (the first line of LibTorch's message) when it is not one.
std::shared_ptr<torch::jit::Module> loadScriptArchive(const std::string& bytes, const std::string& what);
/// Keeps `bytes` for scriptBytesFor under their SHA-256, which it returns.
std::string rememberScriptBytes(const std::string& bytes);

}  // namespace robustlab
