#include "framework/models/model_spec.h"

#include "framework/models/architectures.h"

#include "framework/toml/toml_reader.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace robustlab {
namespace {

const std::vector<std::string> kLayerTypes = {"conv", "bn", "relu", "maxpool", "avgpool", "flatten", "fc", "dropout"};

std::string joinInts(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

/// A TOML basic string (paths may hold quotes and backslashes).
std::string quoted(const std::string& v) {
  std::string s = "\"";
  for (char ch : v) {
    if (ch == '"' || ch == '\\') s += '\\';
    s += ch;
  }
  return s + "\"";
}

}  // namespace

ModelSpec defaultSmallCnn() {
  ModelSpec s;
  s.arch = "cnn";
  s.layers = {{"conv", 16, 4, 2, 1}, {"relu"}, {"conv", 32, 4, 2, 1}, {"relu"}, {"flatten"}, {"fc", 0, 3, 1, 0, 100}, {"relu"}};
  return s;
}

void ModelSpec::validate() const {
  auto bad = [](const std::string& field, const std::string& msg) { throw std::invalid_argument("model." + field + ": " + msg); };
  const auto archs = architectureNames();
  if (std::find(archs.begin(), archs.end(), arch) == archs.end()) {
    std::string names;
    for (const auto& a : archs) names += (names.empty() ? "" : ", ") + a;
    bad("arch", "unknown architecture '" + arch + "', expected one of " + names);
  }
  if (arch == "wrn") {
    if (wrnDepth < 10 || (wrnDepth - 4) % 6 != 0) bad("wrn_depth", "must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, 40, ...)");
    if (wrnWidth <= 0) bad("wrn_width", "must be > 0");
  }
  if (arch == "torchscript") {
    if (torchscript.empty()) bad("torchscript", "arch = \"torchscript\" needs the TorchScript file (torch.jit.save output)");
    if (!inputShape.empty() && (inputShape.size() != 3 || inputShape[0] <= 0 || inputShape[1] <= 0 || inputShape[2] <= 0))
      bad("input_shape", "expected [channels, height, width], all > 0");
    if (!(rangeLo < rangeHi)) bad("input_range", "expected [lo, hi] with lo < hi");
  }
  if (!(stdev > 0)) bad("std", "must be > 0");
  if (channelMean.size() != channelStd.size()) bad("std", "one value per channel, as many as mean has");
  if (channelMean.empty() != channelStd.empty()) bad("std", "per-channel mean and std go together");
  for (double v : channelStd)
    if (!(v > 0)) bad("std", "every channel's std must be > 0");
  if (arch == "cnn") {
    if (layers.empty()) bad("layers", "a cnn needs at least one layer");
    for (size_t i = 0; i < layers.size(); ++i) {
      const auto& l = layers[i];
      const std::string f = "layers[" + std::to_string(i) + "]";
      bool known = false;
      for (const auto& t : kLayerTypes) known |= t == l.type;
      if (!known) bad(f + ".type", "unknown layer type '" + l.type + "', expected one of conv, bn, relu, maxpool, avgpool, flatten, fc, dropout");
      if (l.type == "conv" && (l.channels <= 0 || l.kernel <= 0 || l.stride <= 0 || l.padding < 0))
        bad(f, "conv needs channels > 0, kernel > 0, stride > 0, padding >= 0");
      if (l.type == "fc" && l.units <= 0) bad(f + ".units", "fc needs units > 0");
      if ((l.type == "maxpool" || l.type == "avgpool") && (l.kernel <= 0 || l.stride <= 0)) bad(f, "pooling needs kernel > 0 and stride > 0");
      if (l.type == "dropout" && !(l.p >= 0 && l.p < 1)) bad(f + ".p", "dropout p must be in [0, 1)");
    }
  }
  if (arch == "mlp")
    for (auto h : hidden)
      if (h <= 0) bad("hidden", "widths must be > 0");
  if (arch == "resnet") {
    if (resnetWidth <= 0) bad("resnet_width", "must be > 0");
    if (resnetBlocks.empty()) bad("resnet_blocks", "needs at least one stage");
    for (auto b : resnetBlocks)
      if (b <= 0) bad("resnet_blocks", "block counts must be > 0");
  }
  if (inChannels <= 0 || height <= 0 || width <= 0 || numClasses < 2) bad("input", "input shape and class count (>= 2) must be positive");
}

std::string ModelSpec::backboneKey() const {
  std::ostringstream os;
  os.precision(17);
  os << "arch = \"" << arch << "\"\n";
  if (channelMean.empty()) {
    os << "mean = " << mean << "\nstd = " << stdev << "\n";
  } else {
    auto list = [&os](const std::vector<double>& v) {
      os << "[";
      for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
      os << "]\n";
    };
    os << "mean = ";
    list(channelMean);
    os << "std = ";
    list(channelStd);
  }
  os << "in_channels = " << inChannels << "\nheight = " << height << "\nwidth = " << width << "\n";
  if (arch == "mlp") os << "hidden = " << joinInts(hidden) << "\n";
  if (arch == "resnet") os << "resnet_width = " << resnetWidth << "\nresnet_blocks = " << joinInts(resnetBlocks) << "\n";
  if (arch == "wrn") os << "wrn_depth = " << wrnDepth << "\nwrn_width = " << wrnWidth << "\n";
  if (arch == "torchscript") {
    os << "torchscript = " << quoted(torchscript) << "\ntorchscript_sha256 = " << quoted(torchscriptSha256) << "\n";
    if (!torchscriptInit.empty())
      os << "torchscript_init = " << quoted(torchscriptInit) << "\ntorchscript_init_sha256 = " << quoted(torchscriptInitSha256) << "\n";
    os << "cut = " << quoted(cut) << "\ninput_range = [" << rangeLo << ", " << rangeHi << "]\n";
    if (!inputShape.empty()) os << "input_shape = " << joinInts(inputShape) << "\n";
  }
  if (arch == "cnn") {
    for (const auto& l : layers) {
      os << "\n[[layers]]\ntype = \"" << l.type << "\"\n";
      if (l.type == "conv") os << "channels = " << l.channels << "\nkernel = " << l.kernel << "\nstride = " << l.stride << "\npadding = " << l.padding << "\n";
      if (l.type == "maxpool" || l.type == "avgpool") os << "kernel = " << l.kernel << "\nstride = " << l.stride << "\n";
      if (l.type == "fc") os << "units = " << l.units << "\n";
      if (l.type == "dropout") os << "p = " << l.p << "\n";
    }
  }
  return os.str();
}

std::string ModelSpec::toToml() const { return "num_classes = " + std::to_string(numClasses) + "\n" + backboneKey(); }

namespace {

/// `mean` and `std`: a number for every channel, or an array with one per channel (then the other
/// may be one number, used for every channel).
void readNormalisation(TomlReader& r, ModelSpec& s) {
  r.describe("mean", "number, or a list of numbers (one per channel)", "0");
  r.describe("std", "number > 0, or a list of numbers (one per channel)", "1");
  const toml::node* meanNode = r.raw("mean");
  const toml::node* stdNode = r.raw("std");
  const bool perChannel = (meanNode && meanNode->is_array()) || (stdNode && stdNode->is_array());
  if (meanNode && meanNode->is_array()) s.channelMean = r.reals("mean", {});
  else s.mean = r.real("mean", 0.0);
  if (stdNode && stdNode->is_array()) s.channelStd = r.reals("std", {});
  else s.stdev = r.real("std", 1.0, 1e-12);
  if (!perChannel) return;
  if (s.channelMean.empty()) s.channelMean.assign(s.channelStd.size(), s.mean);
  if (s.channelStd.empty()) s.channelStd.assign(s.channelMean.size(), s.stdev);
  if (s.channelMean.size() != s.channelStd.size()) r.fail("std", "expected as many values as mean has (" + std::to_string(s.channelMean.size()) + ")");
}

}  // namespace

ModelSpec readModelSpec(TomlReader& r) {
  ModelSpec s;
  const ModelSpec def = defaultSmallCnn();
  s.arch = r.choice("arch", "cnn", architectureNames());
  readNormalisation(r, s);
  s.inChannels = r.integer("in_channels", s.inChannels, 1);
  s.height = r.integer("height", s.height, 1);
  s.width = r.integer("width", s.width, 1);
  s.numClasses = r.integer("num_classes", s.numClasses, 2);
  s.hidden = r.integers("hidden", {});
  s.resnetWidth = r.integer("resnet_width", s.resnetWidth, 1);
  s.resnetBlocks = r.integers("resnet_blocks", s.resnetBlocks);
  s.wrnDepth = r.integer("wrn_depth", s.wrnDepth, 10, 1000);
  s.wrnWidth = r.integer("wrn_width", s.wrnWidth, 1, 64);
  s.torchscript = r.str("torchscript", "");
  s.torchscriptSha256 = r.str("torchscript_sha256", "");
  s.torchscriptInit = r.str("torchscript_init", "");
  s.torchscriptInitSha256 = r.str("torchscript_init_sha256", "");
  s.cut = r.str("cut", "");
  s.inputShape = r.integers("input_shape", {});
  const auto range = r.reals("input_range", {0.0, 1.0});
  if (range.size() != 2 || !(range[0] < range[1])) r.fail("input_range", "expected [lo, hi] with lo < hi");
  s.rangeLo = range[0];
  s.rangeHi = range[1];
  if (s.arch != "torchscript")
    for (const char* k : {"torchscript", "torchscript_sha256", "torchscript_init", "torchscript_init_sha256", "cut", "input_shape", "input_range"})
      if (r.has(k)) r.fail(k, "only for arch = \"torchscript\"");
  if (!s.inputShape.empty() && s.inputShape.size() == 3) {
    s.inChannels = s.inputShape[0];
    s.height = s.inputShape[1];
    s.width = s.inputShape[2];
  }
  const auto layerTables = r.tables("layers");
  if (s.arch == "cnn" && layerTables.empty()) s.layers = def.layers;
  for (size_t i = 0; i < layerTables.size(); ++i) {
    TomlReader lr(*layerTables[i], r.file(), r.field("layers") + "[" + std::to_string(i) + "]");
    LayerSpec l;
    l.type = lr.choice("type", "", kLayerTypes);
    l.channels = lr.integer("channels", 0, 1, 1 << 16);
    l.kernel = lr.integer("kernel", 3, 1, 64);
    l.stride = lr.integer("stride", l.type == "maxpool" || l.type == "avgpool" ? l.kernel : 1, 1, 64);
    l.padding = lr.integer("padding", 0, 0, 64);
    l.units = lr.integer("units", 0, 1, 1 << 20);
    l.p = lr.real("p", 0.5, 0.0, 0.999);
    if (l.type == "conv" && !lr.has("channels")) lr.fail("channels", "required for a conv layer");
    if (l.type == "fc" && !lr.has("units")) lr.fail("units", "required for an fc layer");
    lr.rejectUnknown();
    s.layers.push_back(l);
  }
  r.rejectUnknown();
  try {
    s.validate();
  } catch (const std::invalid_argument& e) {
    throw ConfigError(r.file() + ": " + e.what());
  }
  return s;
}

ModelSpec parseModelSpec(const std::string& tomlText, const std::string& what) {
  const auto table = parseToml(tomlText, what);
  TomlReader r(table, what);
  return readModelSpec(r);
}

}  // namespace robustlab
