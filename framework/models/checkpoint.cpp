#include "framework/models/checkpoint.h"

#include <torch/utils.h>

#include <memory>
#include <sstream>
#include <stdexcept>

namespace robustlab {
namespace {

std::unique_ptr<H5File> openCheckpoint(const std::string& path) {
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

Classifier loadClassifier(const std::string& path) {
  Classifier model(readCheckpointSpec(path));
  loadWeights(path, *model, /*backboneOnly=*/false);
  return model;
}

void loadWeights(const std::string& path, ClassifierImpl& model, bool backboneOnly) {
  auto fp = openCheckpoint(path);
  H5File& f = *fp;
  const ModelSpec stored = parseModelSpec(f.attrString("/", "model_spec"), path + " (model_spec)");
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
