#include "framework/models/torchscript.h"

#include "data/sha256.h"

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/utils.h>

#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace robustlab {
namespace {

std::vector<std::string> splitDots(const std::string& name) {
  std::vector<std::string> parts;
  std::stringstream ss(name);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  return parts;
}

/// The first line of an exception's message (TorchScript errors carry a long traceback).
std::string firstLine(const std::exception& e) {
  std::string s = e.what();
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

std::mutex& storeMutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, std::string>& store() {
  static std::map<std::string, std::string> s;
  return s;
}

/// The dotted names of the script's linear layers (a 2-D weight), for an error about model.cut.
std::string linearLayers(const torch::jit::Module& script) {
  std::string names;
  for (const auto& sub : script.named_modules()) {
    if (sub.name.empty() || !sub.value.hasattr("weight") || !sub.value.attr("weight").isTensor() ||
        sub.value.attr("weight").toTensor().dim() != 2)
      continue;
    names += (names.empty() ? "" : ", ") + sub.name;
  }
  return names.empty() ? "it has none" : "its linear layers: " + names;
}

}  // namespace

std::string rememberScriptBytes(const std::string& bytes) {
  std::string sha = sha256Hex(bytes);
  std::lock_guard<std::mutex> lock(storeMutex());
  store().emplace(sha, bytes);
  return sha;
}

std::string scriptBytesFor(const ModelSpec& spec, std::string* shaOut) {
  if (!spec.torchscriptSha256.empty()) {
    std::lock_guard<std::mutex> lock(storeMutex());
    auto it = store().find(spec.torchscriptSha256);
    if (it != store().end()) {
      if (shaOut) *shaOut = it->first;
      return it->second;
    }
  }
  std::string bytes;
  try {
    bytes = readBinaryFile(spec.torchscript);
  } catch (const std::exception& e) {
    throw std::invalid_argument("model.torchscript: " + std::string(e.what()));
  }
  const std::string sha = rememberScriptBytes(bytes);
  if (!spec.torchscriptSha256.empty() && sha != spec.torchscriptSha256)
    throw std::invalid_argument("model.torchscript_sha256: " + spec.torchscript + " has SHA-256 " + sha + " but " +
                                spec.torchscriptSha256 + " is pinned (the file changed since the config or checkpoint was made)");
  if (shaOut) *shaOut = sha;
  return bytes;
}

std::string scriptInitBytesFor(const ModelSpec& spec) {
  ModelSpec init = spec;
  init.torchscript = spec.torchscriptInit;
  init.torchscriptSha256 = spec.torchscriptInitSha256;
  try {
    return scriptBytesFor(init);
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();  // "model.torchscript[_sha256]: ..."
    throw std::invalid_argument("model.torchscript_init" + msg.substr(msg.find(':')));
  }
}

std::shared_ptr<torch::jit::Module> loadScriptArchive(const std::string& bytes, const std::string& what) {
  try {
    std::istringstream in(bytes);
    return std::make_shared<torch::jit::Module>(torch::jit::load(in, torch::kCPU));
  } catch (const std::exception& e) {
    throw std::invalid_argument(what + ": not a TorchScript file (torch.jit.save output): " + firstLine(e));
  }
}

ScriptModelImpl::ScriptModelImpl(const std::string& bytes, const std::string& what, const std::string& cut, double lo, double hi)
    : script_(loadScriptArchive(bytes, what)), what_(what), cut_(cut), lo_(lo), hi_(hi) {
  if (!cut.empty()) {
    torch::jit::Module layer = *script_;
    for (const auto& part : splitDots(cut)) {
      if (!layer.hasattr(part) || !layer.attr(part).isModule())
        throw std::invalid_argument("model.cut: " + what + " has no submodule '" + cut + "' (" + linearLayers(*script_) + ")");
      layer = layer.attr(part).toModule();
    }
    if (!layer.hasattr("weight") || !layer.attr("weight").isTensor() || layer.attr("weight").toTensor().dim() != 2)
      throw std::invalid_argument("model.cut: " + what + ": '" + cut + "' is not a linear layer, no 2-D weight (" + linearLayers(*script_) + ")");
    torch::NoGradGuard noGrad;
    cutWeight = layer.attr("weight").toTensor().detach().clone();
    const auto in = cutWeight.size(1);
    layer.setattr("weight", torch::eye(in, cutWeight.options()));
    if (layer.hasattr("bias") && layer.attr("bias").isTensor()) {
      cutBias = layer.attr("bias").toTensor().detach().clone();
      layer.setattr("bias", torch::zeros({in}, cutWeight.options()));
    }
  }
  registerTensors();
}

void ScriptModelImpl::registerTensors() {
  // One holder module per level of the dotted names, so the names robustlab saves are the script's.
  auto holderFor = [this](std::vector<std::string>& parts) {
    torch::nn::Module* m = this;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      auto children = m->named_children();
      if (auto* found = children.find(parts[i])) m = found->get();
      else m = m->register_module(parts[i], std::make_shared<torch::nn::Module>()).get();
    }
    return m;
  };
  const std::string cutPrefix = cut_.empty() ? "" : cut_ + ".";
  for (const auto& p : script_->named_parameters(/*recurse=*/true)) {
    auto parts = splitDots(p.name);
    torch::nn::Module* holder = holderFor(parts);
    // The cut layer's identity stays fixed: a buffer, so it moves with .to() but is never trained.
    if (!cutPrefix.empty() && p.name.rfind(cutPrefix, 0) == 0) holder->register_buffer(parts.back(), p.value);
    else holder->register_parameter(parts.back(), p.value, p.value.requires_grad());
  }
  for (const auto& b : script_->named_buffers(/*recurse=*/true)) {
    auto parts = splitDots(b.name);
    holderFor(parts)->register_buffer(parts.back(), b.value);
  }
}

std::string ScriptModelImpl::channelMismatch(int64_t channels) const {
  for (const auto& sub : script_->named_modules()) {
    if (sub.name.empty() || !sub.value.hasattr("weight") || !sub.value.attr("weight").isTensor()) continue;
    const auto w = sub.value.attr("weight").toTensor();
    if (w.dim() < 3 || w.dim() > 5) continue;  // a convolution's weight: out x in/groups x kernel...
    const auto type = sub.value.type()->name();
    const std::string name = type ? type->name() : "";
    const int64_t groups = sub.value.hasattr("groups") && sub.value.attr("groups").isInt() ? sub.value.attr("groups").toInt() : 1;
    const int64_t in = name.rfind("ConvTranspose", 0) == 0 ? w.size(0) : w.size(1) * groups;
    if (in == channels) return "";
    return "its first layer '" + sub.name + "' (" + (name.empty() ? "a convolution" : name) + ") takes " + std::to_string(in) + " channels";
  }
  return "";
}

torch::Tensor ScriptModelImpl::forward(const torch::Tensor& x) {
  if (lowered_ && !is_training() && x.is_cpu()) return lowered_->forward(x);
  return scriptForward(x);
}

void ScriptModelImpl::lower(const torch::Tensor& probe) {
  if (lo_ != 0.0 || hi_ != 1.0) return;
  auto chain = lowerScript(*script_);
  if (!chain) return;
  torch::NoGradGuard noGrad;
  const bool wasTraining = is_training();
  train(false);
  const auto ref = scriptForward(probe), got = chain->forward(probe);
  train(wasTraining);
  // Rounding differs by ~1e-6 relative (other kernels, other summation orders); a wrong mapping by O(1).
  if (got.sizes() == ref.sizes() && (got - ref).abs().max().item<double>() <= 1e-3 * (1 + ref.abs().max().item<double>()))
    lowered_ = chain;
}

torch::Tensor ScriptModelImpl::scriptForward(const torch::Tensor& x) {
  const torch::Tensor in = (lo_ == 0.0 && hi_ == 1.0) ? x : x * (hi_ - lo_) + lo_;
  torch::jit::IValue out;
  try {
    out = script_->forward({in});
  } catch (const std::exception& e) {
    throw std::runtime_error(what_ + ": forward on a " + std::to_string(x.size(0)) + " x " + std::to_string(x.size(1)) + " x " +
                             std::to_string(x.size(2)) + " x " + std::to_string(x.size(3)) + " input failed: " + firstLine(e));
  }
  if (!out.isTensor())
    throw std::runtime_error(what_ + ": forward returned " + out.tagKind() + ", expected one Tensor (N x classes" +
                             std::string(cut_.empty() ? "" : ", or N x features before the cut") + ")");
  auto t = out.toTensor();
  if (t.dim() != 2 || t.size(0) != x.size(0))
    throw std::runtime_error(what_ + ": forward returned a tensor of " + std::to_string(t.dim()) +
                             " dimensions, expected N x classes for N = " + std::to_string(x.size(0)));
  return t;
}

void ScriptModelImpl::train(bool on) {
  torch::nn::Module::train(on);
  script_->train(on);
}

}  // namespace robustlab
