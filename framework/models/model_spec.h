#pragma once
// Architecture specs: what a config's [model] section says, and what a checkpoint stores so a model
// can be rebuilt exactly.
#include <cstdint>
#include <string>
#include <vector>

namespace robustlab {

class TomlReader;

/// One backbone layer of the "cnn" architecture.
struct LayerSpec {
  std::string type;      ///< conv | bn | relu | maxpool | avgpool | flatten | fc | dropout
  int64_t channels = 0;  ///< conv: output channels
  int64_t kernel = 3;    ///< conv / pooling: kernel size
  int64_t stride = 1;    ///< conv / pooling
  int64_t padding = 0;   ///< conv
  int64_t units = 0;     ///< fc: output width
  double p = 0.5;        ///< dropout probability
};

/// A model is a backbone (feature extractor) and a linear head. Inputs are pixels in [0,1];
/// (x - mean) / std happens inside the model.
struct ModelSpec {
  std::string arch = "cnn";                ///< cnn | mlp | resnet | wrn | torchscript
  std::vector<LayerSpec> layers;           ///< cnn: backbone layers, in order
  std::vector<int64_t> hidden;             ///< mlp: hidden widths (empty: a linear model)
  int64_t resnetWidth = 16;                ///< resnet: channels of the first stage
  std::vector<int64_t> resnetBlocks{2, 2, 2};  ///< resnet: pre-activation blocks per stage
  int64_t wrnDepth = 28, wrnWidth = 10;    ///< wrn: WideResNet-depth-width (Zagoruyko & Komodakis 2016), depth = 6n + 4
  double mean = 0.0;                       ///< input normalisation inside the model, every channel alike
  double stdev = 1.0;
  /// Per-channel normalisation instead (a config's `mean` or `std` given as an array): one value per
  /// input channel each, both set, or both empty.
  std::vector<double> channelMean, channelStd;
  // torchscript: a model scripted or traced in PyTorch (framework/models/torchscript.h).
  std::string torchscript;                 ///< the TorchScript file, as the config names it
  std::string torchscriptSha256;           ///< its SHA-256, pinned when the config is read
  std::string torchscriptInit;             ///< the same model untrained, a from-scratch start's weights ("": PyTorch's rules)
  std::string torchscriptInitSha256;       ///< its SHA-256, pinned when the config is read
  std::string cut;                         ///< dotted name of its last linear layer to cut ("": used as it is)
  std::vector<int64_t> inputShape;         ///< declared C, H, W (empty: the data's), checked against the data
  double rangeLo = 0.0, rangeHi = 1.0;     ///< the value range its inputs live in (pixels [0,1] are mapped there)
  // Set from the data, not the config:
  int64_t inChannels = 1, height = 28, width = 28, numClasses = 10;

  /// Throws std::invalid_argument naming the field when the spec cannot be built.
  void validate() const;
  /// Canonical TOML text (stored in checkpoints; equal specs give equal text).
  std::string toToml() const;
  /// The backbone part of the canonical text (what must match to load a backbone).
  std::string backboneKey() const;
};

/// The small CNN of the brief: conv16(4x4,s2)-conv32(4x4,s2)-fc100, ReLU after each.
ModelSpec defaultSmallCnn();

/// Reads a [model] table; unknown layer types and bad fields raise ConfigError naming them.
ModelSpec readModelSpec(TomlReader& r);
/// Parses the text written by toToml() (checkpoints); `what` names the source in errors.
ModelSpec parseModelSpec(const std::string& tomlText, const std::string& what);

}  // namespace robustlab
