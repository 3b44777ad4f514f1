#include "framework/models/checkpoint.h"

#include "framework/models/torchscript.h"

#include <torch/utils.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace robustlab {
namespace {

/// Whether `path` starts as a zip archive does (what torch.jit.save and torch.save write).
bool looksLikeZip(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4;
}

std::unique_ptr<H5File> openCheckpoint(const std::string& path) {
  if (looksLikeZip(path))
    throw std::runtime_error(path + ": a PyTorch file (TorchScript or torch.save), not a robustlab checkpoint (.h5): give a TorchScript "
                                    "model as attack --model " + path + ", or as [model] arch = \"torchscript\" in a config");
  auto f = std::make_unique<H5File>(path, H5File::Mode::kRead);
  if (!f->hasAttr("/", "format") || f->attrString("/", "format") != kCheckpointFormat)
    throw std::runtime_error(path + ": not a robustlab checkpoint (attribute format != " + kCheckpointFormat + ")");
  return f;
}

std::string shapeString(at::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

}  // namespace

void saveCheckpoint(const std::string& path, ClassifierImpl& model, const std::string& configToml,
                    const std::function<void(H5File&)>& extra) {
  writeH5Atomically(path, [&](H5File& f) {
    f.setAttr("/", "format", std::string(kCheckpointFormat));
    f.setAttr("/", "model_spec", model.spec().toToml());
    f.setAttr("/", "config", configToml);
    if (model.spec().arch == "torchscript") {
      // The script's own bytes travel with its weights: the checkpoint alone rebuilds the model.
      const std::string bytes = scriptBytesFor(model.spec());
      f.writeTensor("/model/torchscript", torch::from_blob(const_cast<char*>(bytes.data()), {int64_t(bytes.size())}, torch::kUInt8), true);
      f.setAttr("/model", "sha256", model.spec().torchscriptSha256);
      f.setAttr("/model", "file", model.spec().torchscript);
    }
    for (const auto& p : model.named_parameters()) f.writeTensor("/state/" + p.key(), p.value().detach().cpu());
    for (const auto& b : model.named_buffers()) f.writeTensor("/state/" + b.key(), b.value().detach().cpu());
    if (extra) extra(f);
  });
}

ModelSpec readCheckpointSpec(const std::string& path) {
  auto f = openCheckpoint(path);
  return parseModelSpec(f->attrString("/", "model_spec"), path + " (model_spec)");
}

std::string readCheckpointConfig(const std::string& path) {
  auto f = openCheckpoint(path);
  return f->hasAttr("/", "config") ? f->attrString("/", "config") : "";
}

/// A TorchScript checkpoint's script bytes, kept for scriptBytesFor; checked against the stored spec.
void rememberStoredScript(const std::string& path, const ModelSpec& spec) {
  auto f = openCheckpoint(path);
  if (!f->has("/model/torchscript")) throw std::runtime_error(path + ": TorchScript checkpoint without /model/torchscript");
  const auto t = f->readTensor("/model/torchscript").contiguous();
  const std::string sha = rememberScriptBytes(std::string(reinterpret_cast<const char*>(t.data_ptr<uint8_t>()), t.numel()));
  if (sha != spec.torchscriptSha256)
    throw std::runtime_error(path + ": /model/torchscript has SHA-256 " + sha + " but model_spec pins " + spec.torchscriptSha256 +
                             " (a corrupt checkpoint)");
}

Classifier loadClassifier(const std::string& path) {
  const ModelSpec spec = readCheckpointSpec(path);
  if (spec.arch == "torchscript") rememberStoredScript(path, spec);
  Classifier model(spec);
  loadWeights(path, *model, /*backboneOnly=*/false);
  return model;
}

void loadWeights(const std::string& path, ClassifierImpl& model, bool backboneOnly) {
  auto fp = openCheckpoint(path);
  H5File& f = *fp;
  const ModelSpec stored = parseModelSpec(f.attrString("/", "model_spec"), path + " (model_spec)");
  const ModelSpec& target = model.spec();
  if (stored.inChannels != target.inChannels || stored.height != target.height || stored.width != target.width)
    throw std::runtime_error(path + ": the backbone was trained on " + std::to_string(stored.inChannels) + " x " + std::to_string(stored.height) +
                             " x " + std::to_string(stored.width) + " images but this task's are " + std::to_string(target.inChannels) + " x " +
                             std::to_string(target.height) + " x " + std::to_string(target.width) +
                             " (pre-training and fine-tuning data must have the same image shape)");
  if (stored.backboneKey() != model.spec().backboneKey())
    throw std::runtime_error(path + ": checkpoint architecture differs from the model's (stored arch '" + stored.arch +
                             "', " + std::to_string(stored.layers.size()) + " layers; model arch '" + model.spec().arch + "', " +
                             std::to_string(model.spec().layers.size()) + " layers)");
  torch::NoGradGuard noGrad;
  auto load = [&](const std::string& name, torch::Tensor& target) {
    if (backboneOnly && name.rfind("head.", 0) == 0) return;
    const std::string key = "/state/" + name;
    if (!f.has(key)) throw std::runtime_error(path + ": checkpoint has no tensor '" + name + "' (another architecture?)");
    auto t = f.readTensor(key);
    if (t.sizes() != target.sizes())
      throw std::runtime_error(path + ": tensor '" + name + "' has shape " + shapeString(t.sizes()) + " in the checkpoint but " +
                               shapeString(target.sizes()) + " in the model");
    if (t.is_floating_point() && !torch::isfinite(t).all().item<bool>())
      throw std::runtime_error(path + ": tensor '" + name + "' holds NaN or Inf values (a diverged or corrupt checkpoint)");
    target.copy_(t.to(target.dtype()));
  };
  for (auto& p : model.named_parameters()) load(p.key(), p.value());
  for (auto& b : model.named_buffers()) load(b.key(), b.value());
}

}  // namespace robustlab
