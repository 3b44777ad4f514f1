#pragma once
// A small HDF5 wrapper: tensors as datasets, scalars and strings as attributes. The only place in
// the project that includes H5Cpp.h (it lives behind a pointer here).
#include <torch/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace robustlab {

class H5File {
 public:
  /// kMemory: a new file held in memory (image() gives its bytes); writeH5Atomically uses it.
  enum class Mode { kRead, kTruncate, kReadWrite, kMemory };

  /// Opens `path`; throws std::runtime_error naming the file when it is missing or not HDF5.
  H5File(const std::string& path, Mode mode);
  ~H5File();
  H5File(const H5File&) = delete;
  H5File& operator=(const H5File&) = delete;

  const std::string& path() const { return path_; }
  /// Flushes and closes the file; throws naming it when that fails (a full disk). The destructor
  /// closes too but cannot report a failure.
  void close();
  /// The bytes of the whole file (Mode::kMemory).
  std::string image();
  bool has(const std::string& objectPath) const;
  bool isGroup(const std::string& objectPath) const;
  /// Names of the direct children of a group, sorted.
  std::vector<std::string> children(const std::string& group) const;
  void createGroup(const std::string& group);

  /// Writes a float32/float64/int64/int32/uint8/bool tensor; parent groups are created as needed.
  void writeTensor(const std::string& name, const torch::Tensor& t, bool compress = false);
  /// Reads a dataset written by writeTensor (bool comes back as uint8).
  torch::Tensor readTensor(const std::string& name) const;
  void writeStrings(const std::string& name, const std::vector<std::string>& values);
  std::vector<std::string> readStrings(const std::string& name) const;

  /// Copies object `from` of `source` (a group with everything under it, or a dataset) to `to` here,
  /// attributes included; parent groups are created as needed.
  void copyFrom(const H5File& source, const std::string& from, const std::string& to);

  void setAttr(const std::string& object, const std::string& key, const std::string& value);
  void setAttr(const std::string& object, const std::string& key, double value);
  void setAttr(const std::string& object, const std::string& key, int64_t value);
  bool hasAttr(const std::string& object, const std::string& key) const;
  std::string attrString(const std::string& object, const std::string& key) const;
  double attrDouble(const std::string& object, const std::string& key) const;
  int64_t attrInt(const std::string& object, const std::string& key) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

/// Whether `path` is a readable HDF5 file whose root attribute `key` is the string `value` (how a
/// finished unit or sweep point is recognised: a missing, partial or corrupt file is "no").
bool h5RootAttrEquals(const std::string& path, const std::string& key, const std::string& value);

/// The bytes of an HDF5 file `fill` writes (built in memory; `path` names it in errors), for OutputSet.
std::string h5Bytes(const std::string& path, const std::function<void(H5File&)>& fill);

/// Writes `path` through writeAtomically (data/atomic_write.h): a temporary file and an atomic rename, so a run killed halfway never leaves
/// a truncated or corrupt file where a complete one was expected (and never clobbers the old one).
void writeH5Atomically(const std::string& path, const std::function<void(H5File&)>& fill);

}  // namespace robustlab
