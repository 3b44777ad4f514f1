#include "data/cifar.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

namespace robustlab {
namespace fs = std::filesystem;
namespace {

constexpr int64_t kPixels = 3 * 32 * 32;

/// The folder holding the .bin files: `dir` itself or the archive's own sub-folder in it.
std::string binFolder(const std::string& dir, bool hundred) {
  const std::string first = hundred ? "train.bin" : "data_batch_1.bin";
  const std::string sub = dir + (hundred ? "/cifar-100-binary" : "/cifar-10-batches-bin");
  if (fs::exists(dir + "/" + first)) return dir;
  if (fs::exists(sub + "/" + first)) return sub;
  if (!fs::is_directory(dir)) throw std::runtime_error(dir + ": data directory not found (data.dir)");
  throw std::runtime_error(dir + ": no " + first + " here or in " + fs::path(sub).filename().string() +
                           "/ (the binary version of " + (hundred ? "CIFAR-100" : "CIFAR-10") + " from https://www.cs.toronto.edu/~kriz/cifar.html)");
}

/// The records of one file, N x record bytes (uint8).
torch::Tensor readRecords(const std::string& path, int64_t recordBytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error(path + ": missing or unreadable CIFAR file");
  const auto size = static_cast<int64_t>(in.tellg());
  if (size <= 0 || size % recordBytes != 0)
    throw std::runtime_error(path + ": " + std::to_string(size) + " bytes is not a whole number of " + std::to_string(recordBytes) +
                             "-byte records (truncated, or not this CIFAR binary format)");
  auto t = torch::empty({size / recordBytes, recordBytes}, torch::kUInt8);
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(t.data_ptr<uint8_t>()), size)) throw std::runtime_error(path + ": read error");
  return t;
}

}  // namespace

Dataset loadCifar(const std::string& dir, const std::string& split, bool hundred, bool coarse) {
  if (split != "train" && split != "test") throw std::invalid_argument("split must be 'train' or 'test', got '" + split + "'");
  const std::string folder = binFolder(dir, hundred);
  std::vector<std::string> files;
  if (hundred) files = {split + ".bin"};
  else if (split == "test") files = {"test_batch.bin"};
  else for (int i = 1; i <= 5; ++i) files.push_back("data_batch_" + std::to_string(i) + ".bin");
  if (coarse && !hundred) throw std::invalid_argument("CIFAR-10 has no coarse labels");
  const int64_t labelBytes = hundred ? 2 : 1, classes = coarse ? 20 : hundred ? 100 : 10;
  // CIFAR-100's record: the coarse label byte, then the fine one.
  const int64_t labelAt = coarse ? 0 : labelBytes - 1;
  std::vector<torch::Tensor> images, labels;
  for (const auto& name : files) {
    const std::string path = folder + "/" + name;
    const auto rec = readRecords(path, labelBytes + kPixels);
    const auto label = rec.select(1, labelAt).to(torch::kInt64);
    const int64_t top = label.max().item<int64_t>();
    if (top >= classes)
      throw std::runtime_error(path + ": label " + std::to_string(top) + " out of range, expected 0.." + std::to_string(classes - 1) +
                               " (is this " + (hundred ? "CIFAR-100" : "CIFAR-10") + (coarse ? ", coarse labels" : "") + "?)");
    images.push_back(rec.slice(1, labelBytes).reshape({rec.size(0), 3, 32, 32}));
    labels.push_back(label);
  }
  Dataset ds;
  ds.images = torch::cat(images).to(torch::kFloat32).div_(255.0f);
  ds.labels = torch::cat(labels);
  ds.numClasses = classes;
  ds.name = std::string(coarse ? "cifar100-coarse:" : hundred ? "cifar100:" : "cifar10:") + split;
  return ds;
}

}  // namespace robustlab
