#include "data/sources.h"

#include "data/cifar.h"
#include "data/hdf5_dataset.h"
#include "data/idx.h"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace robustlab {
namespace fs = std::filesystem;

namespace {

std::string findIdx(const std::string& dir, const std::string& stem) {
  for (const std::string& cand : {dir + "/" + stem + ".gz", dir + "/" + stem}) {
    if (fs::exists(cand)) return cand;
  }
  throw std::runtime_error(dir + ": missing " + stem + ".gz (IDX file expected in this directory)");
}

}  // namespace

Dataset loadIdxDirectory(const std::string& dir, const std::string& split, int64_t numClasses) {
  if (!fs::is_directory(dir)) throw std::runtime_error(dir + ": data directory not found");
  if (split != "train" && split != "test") throw std::invalid_argument("split must be 'train' or 'test', got '" + split + "'");
  const std::string prefix = split == "train" ? "train" : "t10k";
  const std::string imgPath = findIdx(dir, prefix + "-images-idx3-ubyte");
  const std::string lblPath = findIdx(dir, prefix + "-labels-idx1-ubyte");
  auto images = readIdx(imgPath);
  auto labels = readIdx(lblPath);
  if (images.dim() != 3) throw std::runtime_error(imgPath + ": expected 3 dimensions (N x H x W), found " + std::to_string(images.dim()));
  if (labels.dim() != 1) throw std::runtime_error(lblPath + ": expected 1 dimension (N), found " + std::to_string(labels.dim()));
  if (images.size(0) != labels.size(0))
    throw std::runtime_error(lblPath + ": " + std::to_string(labels.size(0)) + " labels for " +
                             std::to_string(images.size(0)) + " images in " + imgPath);
  Dataset ds;
  ds.images = images.unsqueeze(1).to(torch::kFloat32).div_(255.0f);
  ds.labels = labels.to(torch::kInt64);
  ds.numClasses = numClasses;
  ds.name = dir + ":" + split;
  if (ds.labels.max().item<int64_t>() >= numClasses)
    throw std::runtime_error(lblPath + ": label " + std::to_string(ds.labels.max().item<int64_t>()) +
                             " out of range, expected 0.." + std::to_string(numClasses - 1));
  return ds;
}

std::string mnistDirectory() {
  if (const char* env = std::getenv("ROBUSTLAB_MNIST_DIR")) return env;
  return "data/cache/mnist";
}

namespace {

Dataset readFashionMnist(const DataSourceSpec& spec, const std::string& split) {
  Dataset ds = loadIdxDirectory(spec.dir.empty() ? kFashionMnistDir : spec.dir, split);
  ds.name = "fashion-mnist:" + split;
  return ds;
}

Dataset readMnist(const DataSourceSpec& spec, const std::string& split) {
  const std::string dir = spec.dir.empty() ? mnistDirectory() : spec.dir;
  if (!fs::is_directory(dir)) throw std::runtime_error(dir + ": MNIST digits not found; run data/fetch_mnist.sh first");
  Dataset ds = loadIdxDirectory(dir, split);
  ds.name = "mnist:" + split;
  return ds;
}

Dataset readIdxSource(const DataSourceSpec& spec, const std::string& split) {
  if (spec.dir.empty()) throw std::invalid_argument("data.dir: required when data.source = \"idx\"");
  return loadIdxDirectory(spec.dir, split);
}

Dataset readHdf5Source(const DataSourceSpec& spec, const std::string& split) {
  const std::string& file = split == "train" ? spec.trainFile : spec.testFile;
  if (file.empty())
    throw std::invalid_argument(std::string("data.") + (split == "train" ? "train_file" : "test_file") + ": required when data.source = \"hdf5\"");
  return loadHdf5Dataset(file);
}

/// CIFAR-10, CIFAR-100 (fine labels) or CIFAR-100 with its 20 coarse labels.
DataSourceReader cifarReader(bool hundred, bool coarse) {
  return [hundred, coarse](const DataSourceSpec& spec, const std::string& split) {
    if (spec.dir.empty())
      throw std::invalid_argument("data.dir: required when data.source = \"" + spec.source +
                                  "\" (the folder of the binary version from https://www.cs.toronto.edu/~kriz/cifar.html)");
    return loadCifar(spec.dir, split, hundred, coarse);
  };
}

/// The built-in sources: one line each.
std::vector<std::pair<std::string, DataSourceReader>>& sources() {
  static std::vector<std::pair<std::string, DataSourceReader>> s{
      {"fashion-mnist", readFashionMnist},          {"mnist", readMnist},
      {"idx", readIdxSource},                       {"hdf5", readHdf5Source},
      {"cifar10", cifarReader(false, false)},       {"cifar100", cifarReader(true, false)},
      {"cifar100-coarse", cifarReader(true, true)},
  };
  return s;
}

Dataset readSplit(const DataSourceSpec& spec, const std::string& split) {
  for (const auto& [name, read] : sources())
    if (name == spec.source) return read(spec, split);
  std::string names;
  for (const auto& n : dataSourceNames()) names += (names.empty() ? "" : ", ") + n;
  throw std::invalid_argument("data.source: unknown source '" + spec.source + "', expected one of " + names);
}

}  // namespace

std::vector<std::string> dataSourceNames() {
  std::vector<std::string> out;
  for (const auto& [name, read] : sources()) out.push_back(name);
  return out;
}

DataSourceRegistration::DataSourceRegistration(const std::string& name, DataSourceReader read) {
  for (const auto& [n, r] : sources())
    if (n == name) throw std::logic_error("data source '" + name + "' registered twice");
  sources().emplace_back(name, std::move(read));
}

Dataset loadSplit(const DataSourceSpec& spec, const std::string& split) {
  Dataset ds = readSplit(spec, split);
  ds.sourceIndex = torch::arange(ds.size(), torch::kInt64);  // each example's place in the split, followed through every selection
  return ds;
}

}  // namespace robustlab
