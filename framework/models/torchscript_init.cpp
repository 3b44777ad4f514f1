// A fresh initialisation of a TorchScript model: what "from scratch" means for a model brought from
// PyTorch. Every module of a type PyTorch defines is re-initialised in place by that type's own
// reset_parameters() (and reset_running_stats()), in the script's module order, from the global
// generator: with the same seed, the weights PyTorch itself gives `torch.manual_seed(s); Model()` for a
// model built in that order (tested against PyTorch). The rules, as written in PyTorch 1.13 and 2.x
// (torch/nn/modules/):
//   linear.py  Linear.reset_parameters: kaiming_uniform_(weight, a=sqrt(5)); bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))
//              Bilinear.reset_parameters: weight and bias U(-1/sqrt(weight.size(1)), +)
//   conv.py    _ConvNd.reset_parameters (Conv1d/2d/3d, ConvTranspose1d/2d/3d): as Linear, fan_in from the
//              weight (size(1) * kernel elements); the bias only when fan_in != 0
//   batchnorm.py _NormBase.reset_running_stats + reset_parameters (BatchNorm1d/2d/3d, SyncBatchNorm,
//              InstanceNorm1d/2d/3d): running_mean 0, running_var 1, num_batches_tracked 0; weight 1, bias 0
//   normalization.py LayerNorm, GroupNorm: weight 1, bias 0
//   sparse.py  Embedding.reset_parameters: normal_(weight); the padding_idx row zeroed
//   activation.py PReLU: weight filled with `init` (0.25 unless the module records another)
// kaiming_uniform_(a) (init.py): gain = sqrt(2 / (1 + a^2)), std = gain / sqrt(fan_in), bound = sqrt(3) * std,
// uniform_(-bound, bound): the same doubles are computed here, so the same floats come out.
#include "framework/models/torchscript.h"

#include <torch/csrc/jit/api/module.h>

#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>

namespace robustlab {
namespace {

constexpr const char* kTorchModules = "__torch__.torch.nn.modules.";

/// The module's type as PyTorch names it ("Conv2d"), "" for a type that is not one of torch.nn's.
/// Scripted: __torch__.torch.nn.modules.conv.Conv2d; traced: ...conv.___torch_mangle_3.Conv2d.
std::string torchTypeOf(const torch::jit::Module& m) {
  const auto q = m.type()->name();
  if (!q || q->qualifiedName().rfind(kTorchModules, 0) != 0) return "";
  return q->name();
}

/// The type as a user reads it: "MyBlock", "torch.nn.modules.conv.Conv2d" (TorchScript's prefixes dropped).
std::string readableTypeOf(const torch::jit::Module& m) {
  const auto q = m.type()->name();
  if (!q) return "(unnamed type)";
  std::string s = q->qualifiedName();
  if (s.rfind("__torch__.", 0) == 0) s = s.substr(10);
  for (auto pos = s.find("___torch_mangle_"); pos != std::string::npos; pos = s.find("___torch_mangle_")) {
    const auto dot = s.find('.', pos);
    s.erase(pos, dot == std::string::npos ? std::string::npos : dot - pos + 1);
  }
  return s;
}

torch::Tensor tensorAttr(const torch::jit::Module& m, const char* name) {
  if (!m.hasattr(name)) return {};
  const auto v = m.attr(name);
  return v.isTensor() ? v.toTensor() : torch::Tensor{};
}

int64_t fanIn(const torch::Tensor& w) {  // init._calculate_fan_in_and_fan_out's fan_in
  int64_t receptive = 1;
  for (int64_t d = 2; d < w.dim(); ++d) receptive *= w.size(d);
  return w.size(1) * receptive;
}

void kaimingUniformSqrt5(const torch::jit::Module& m) {
  auto w = tensorAttr(m, "weight");
  const int64_t fan = fanIn(w);
  if (fan == 0) return;  // PyTorch warns and leaves an empty tensor as it is
  const double a = std::sqrt(5.0);
  const double gain = std::sqrt(2.0 / (1 + a * a));
  const double bound = std::sqrt(3.0) * (gain / std::sqrt(static_cast<double>(fan)));
  w.uniform_(-bound, bound);
  if (auto b = tensorAttr(m, "bias"); b.defined()) {
    const double bb = 1 / std::sqrt(static_cast<double>(fan));
    b.uniform_(-bb, bb);
  }
}

void bilinear(const torch::jit::Module& m) {
  auto w = tensorAttr(m, "weight");
  const double bound = 1 / std::sqrt(static_cast<double>(w.size(1)));
  w.uniform_(-bound, bound);
  if (auto b = tensorAttr(m, "bias"); b.defined()) b.uniform_(-bound, bound);
}

void affineOnesZeros(const torch::jit::Module& m) {
  if (auto w = tensorAttr(m, "weight"); w.defined()) w.fill_(1);
  if (auto b = tensorAttr(m, "bias"); b.defined()) b.zero_();
}

void normWithStats(const torch::jit::Module& m) {
  if (auto t = tensorAttr(m, "running_mean"); t.defined()) t.zero_();
  if (auto t = tensorAttr(m, "running_var"); t.defined()) t.fill_(1);
  if (auto t = tensorAttr(m, "num_batches_tracked"); t.defined()) t.zero_();
  affineOnesZeros(m);
}

/// An int attribute or class constant (scripted Embedding keeps padding_idx as a constant; a traced
/// one does not record it).
std::optional<int64_t> intAttrOrConstant(const torch::jit::Module& m, const char* name) {
  if (m.hasattr(name) && m.attr(name).isInt()) return m.attr(name).toInt();
  const auto type = m.type();
  if (type->hasConstant(name)) {
    const auto v = type->getConstant(name);
    if (v.isInt()) return v.toInt();
  }
  return std::nullopt;
}

void embedding(const torch::jit::Module& m) {
  auto w = tensorAttr(m, "weight");
  w.normal_();
  if (const auto pad = intAttrOrConstant(m, "padding_idx")) w[*pad].fill_(0);
}

void prelu(const torch::jit::Module& m) {
  double init = 0.25;
  if (m.hasattr("init") && m.attr("init").isDouble()) init = m.attr("init").toDouble();
  tensorAttr(m, "weight").fill_(init);
}

using Rule = std::function<void(const torch::jit::Module&)>;

const std::map<std::string, Rule>& rules() {
  static const std::map<std::string, Rule> r = {
      {"Linear", kaimingUniformSqrt5},         {"Conv1d", kaimingUniformSqrt5},          {"Conv2d", kaimingUniformSqrt5},
      {"Conv3d", kaimingUniformSqrt5},         {"ConvTranspose1d", kaimingUniformSqrt5}, {"ConvTranspose2d", kaimingUniformSqrt5},
      {"ConvTranspose3d", kaimingUniformSqrt5}, {"Bilinear", bilinear},                   {"BatchNorm1d", normWithStats},
      {"BatchNorm2d", normWithStats},          {"BatchNorm3d", normWithStats},           {"SyncBatchNorm", normWithStats},
      {"InstanceNorm1d", normWithStats},       {"InstanceNorm2d", normWithStats},        {"InstanceNorm3d", normWithStats},
      {"LayerNorm", affineOnesZeros},          {"GroupNorm", affineOnesZeros},           {"Embedding", embedding},
      {"PReLU", prelu}};
  return r;
}

bool holdsParameters(const torch::jit::Module& m) { return m.named_parameters(/*recurse=*/false).size() > 0; }

std::string pathOf(const std::string& name) { return name.empty() ? "(the top-level module)" : "'" + name + "'"; }

}  // namespace

std::vector<std::string> ScriptModelImpl::modulesWithoutInitRule() const {
  std::vector<std::string> out;
  for (const auto& sub : script_->named_modules()) {
    if (!cut_.empty() && sub.name == cut_) continue;  // robustlab's head replaces it
    if (!holdsParameters(sub.value)) continue;
    if (!rules().count(torchTypeOf(sub.value))) out.push_back(pathOf(sub.name) + " of type " + readableTypeOf(sub.value));
  }
  return out;
}

void ScriptModelImpl::requireInitRules() const {
  const auto unknown = modulesWithoutInitRule();
  if (!unknown.empty())
    throw std::invalid_argument("model.torchscript: " + what_ + ": cannot start from scratch: module " + unknown.front() +
                                " holds parameters and has no known initialisation rule (PyTorch's own layers have); give the "
                                "untrained model as a second TorchScript file in model.torchscript_init");
}

void ScriptModelImpl::initialiseFresh() {
  requireInitRules();
  torch::NoGradGuard noGrad;
  for (const auto& sub : script_->named_modules()) {
    if (!cut_.empty() && sub.name == cut_) continue;
    const auto it = rules().find(torchTypeOf(sub.value));
    if (it != rules().end()) it->second(sub.value);
  }
}

void ScriptModelImpl::copyWeightsFrom(const std::string& bytes, const std::string& what) {
  const torch::jit::Module init = *loadScriptArchive(bytes, "model.torchscript_init: " + what);
  std::map<std::string, torch::Tensor> from;
  for (const auto& p : init.named_parameters(/*recurse=*/true)) from[p.name] = p.value;
  for (const auto& b : init.named_buffers(/*recurse=*/true)) from[b.name] = b.value;
  const std::string cutPrefix = cut_.empty() ? "" : cut_ + ".";
  torch::NoGradGuard noGrad;
  auto copy = [&](const std::string& name, torch::Tensor dst) {
    if (!cutPrefix.empty() && name.rfind(cutPrefix, 0) == 0) return;  // the cut layer is robustlab's head
    const auto it = from.find(name);
    if (it == from.end())
      throw std::invalid_argument("model.torchscript_init: " + what + " has no tensor '" + name + "', which " + what_ +
                                  " holds (expected the same model, untrained)");
    if (it->second.sizes() != dst.sizes())
      throw std::invalid_argument("model.torchscript_init: " + what + ": '" + name + "' has another shape than in " + what_);
    dst.copy_(it->second);
  };
  for (const auto& p : script_->named_parameters(/*recurse=*/true)) copy(p.name, p.value);
  for (const auto& b : script_->named_buffers(/*recurse=*/true)) copy(b.name, b.value);
}

}  // namespace robustlab
