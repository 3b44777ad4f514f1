#include "data/h5io.h"

#include "data/atomic_write.h"

#include <H5Cpp.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>

namespace robustlab {

struct H5File::Impl {
  Impl(const std::string& path, unsigned flags) : file(path, flags) {}
  /// A file that lives in memory only (HDF5's core driver without a backing store): nothing is
  /// written to disk by HDF5, so a full disk cannot leave the library with a file it cannot close.
  explicit Impl(const std::string& path) : file(path, H5F_ACC_TRUNC, H5::FileCreatPropList::DEFAULT, memoryAccess()) {}
  static H5::FileAccPropList memoryAccess() {
    H5::FileAccPropList fapl;
    fapl.setCore(1 << 20, false);
    return fapl;
  }
  H5::H5File file;
};

namespace {

std::string parentOf(const std::string& p) {
  const auto pos = p.find_last_of('/');
  return pos == std::string::npos || pos == 0 ? "/" : p.substr(0, pos);
}

H5::PredType memType(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32: return H5::PredType::NATIVE_FLOAT;
    case torch::kFloat64: return H5::PredType::NATIVE_DOUBLE;
    case torch::kInt64: return H5::PredType::NATIVE_INT64;
    case torch::kInt32: return H5::PredType::NATIVE_INT32;
    case torch::kUInt8: return H5::PredType::NATIVE_UINT8;
    default: throw std::runtime_error(std::string("HDF5: unsupported tensor dtype ") + c10::toString(t));
  }
}

/// Keeps whichever object (group or dataset) an attribute lives on open.
struct ObjectHolder {
  std::optional<H5::Group> group;
  std::optional<H5::DataSet> dataset;
};

H5::H5Object& objectRef(H5::H5File& f, const std::string& object, ObjectHolder& holder) {
  if (object.empty() || object == "/") return f;
  if (f.childObjType(object) == H5O_TYPE_GROUP) return holder.group.emplace(f.openGroup(object));
  return holder.dataset.emplace(f.openDataSet(object));
}

template <typename Fn>
auto guarded(const std::string& path, const std::string& what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const H5::Exception& e) {
    throw std::runtime_error(path + ": HDF5 error at '" + what + "': " + e.getDetailMsg());
  }
}

}  // namespace

H5File::H5File(const std::string& path, Mode mode) : path_(path) {
  H5::Exception::dontPrint();
  if (mode == Mode::kMemory) {
    guarded(path, "create in memory", [&] { impl_ = std::make_unique<Impl>(path); });
    return;
  }
  if (mode != Mode::kTruncate) {
    if (!std::filesystem::exists(path)) throw std::runtime_error(path + ": file not found");
    bool isHdf5 = false;
    try {
      isHdf5 = H5::H5File::isHdf5(path);
    } catch (const H5::Exception&) {
    }
    if (!isHdf5) throw std::runtime_error(path + ": not an HDF5 file (corrupt or wrong format)");
  }
  const unsigned flags = mode == Mode::kRead ? H5F_ACC_RDONLY : mode == Mode::kTruncate ? H5F_ACC_TRUNC : H5F_ACC_RDWR;
  guarded(path, "open", [&] { impl_ = std::make_unique<Impl>(path, flags); });
}

H5File::~H5File() = default;

bool H5File::has(const std::string& objectPath) const {
  if (objectPath == "/") return true;
  // Check each prefix so a missing intermediate group is "no", not an error.
  std::string cur;
  size_t start = 1;
  while (start <= objectPath.size()) {
    const size_t next = objectPath.find('/', start);
    cur = objectPath.substr(0, next);
    if (!impl_->file.nameExists(cur)) return false;
    if (next == std::string::npos) break;
    start = next + 1;
  }
  return true;
}

bool H5File::isGroup(const std::string& objectPath) const {
  if (objectPath == "/") return true;
  return has(objectPath) && guarded(path_, objectPath, [&] { return impl_->file.childObjType(objectPath) == H5O_TYPE_GROUP; });
}

std::vector<std::string> H5File::children(const std::string& group) const {
  return guarded(path_, group, [&] {
    H5::Group g = impl_->file.openGroup(group);
    std::vector<std::string> out;
    for (hsize_t i = 0; i < g.getNumObjs(); ++i) out.push_back(g.getObjnameByIdx(i));
    std::sort(out.begin(), out.end());
    return out;
  });
}

void H5File::createGroup(const std::string& group) {
  if (group.empty() || group == "/" || has(group)) return;
  createGroup(parentOf(group));
  guarded(path_, group, [&] { impl_->file.createGroup(group); });
}

void H5File::writeTensor(const std::string& name, const torch::Tensor& tensor, bool compress) {
  auto t = tensor.detach().to(torch::kCPU).contiguous();
  if (t.scalar_type() == torch::kBool) t = t.to(torch::kUInt8);
  createGroup(parentOf(name));
  guarded(path_, name, [&] {
    std::vector<hsize_t> dims(t.sizes().begin(), t.sizes().end());
    H5::DataSpace space = dims.empty() ? H5::DataSpace(H5S_SCALAR) : H5::DataSpace(static_cast<int>(dims.size()), dims.data());
    H5::DSetCreatPropList props;
    if (compress && t.numel() > 4096) {
      std::vector<hsize_t> chunk = dims;
      chunk[0] = std::min<hsize_t>(dims[0], 256);
      props.setChunk(static_cast<int>(chunk.size()), chunk.data());
      props.setDeflate(4);
    }
    const auto type = memType(t.scalar_type());
    if (impl_->file.nameExists(name)) impl_->file.unlink(name);
    H5::DataSet ds = impl_->file.createDataSet(name, type, space, props);
    if (t.numel() > 0) ds.write(t.data_ptr(), type);
  });
}

torch::Tensor H5File::readTensor(const std::string& name) const {
  if (!has(name)) throw std::runtime_error(path_ + ": dataset '" + name + "' is missing");
  return guarded(path_, name, [&] {
    H5::DataSet ds = impl_->file.openDataSet(name);
    H5::DataSpace space = ds.getSpace();
    std::vector<hsize_t> dims(space.getSimpleExtentNdims());
    if (!dims.empty()) space.getSimpleExtentDims(dims.data());
    const H5T_class_t cls = ds.getTypeClass();
    torch::ScalarType st;
    if (cls == H5T_FLOAT) {
      st = ds.getFloatType().getSize() == 8 ? torch::kFloat64 : torch::kFloat32;
    } else if (cls == H5T_INTEGER) {
      const auto it = ds.getIntType();
      const size_t size = it.getSize();
      st = size == 1 ? torch::kUInt8 : size == 4 ? torch::kInt32 : torch::kInt64;
    } else {
      throw std::runtime_error(path_ + ": dataset '" + name + "' is not numeric");
    }
    std::vector<int64_t> shape(dims.begin(), dims.end());
    auto out = torch::empty(shape, torch::TensorOptions().dtype(st));
    if (out.numel() > 0) ds.read(out.data_ptr(), memType(st));
    return out;
  });
}

void H5File::writeStrings(const std::string& name, const std::vector<std::string>& values) {
  createGroup(parentOf(name));
  guarded(path_, name, [&] {
    std::vector<const char*> ptrs;
    for (const auto& v : values) ptrs.push_back(v.c_str());
    hsize_t dims[1] = {values.size()};
    H5::DataSpace space(1, dims);
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    if (impl_->file.nameExists(name)) impl_->file.unlink(name);
    H5::DataSet ds = impl_->file.createDataSet(name, type, space);
    if (!values.empty()) ds.write(ptrs.data(), type);
  });
}

std::vector<std::string> H5File::readStrings(const std::string& name) const {
  if (!has(name)) throw std::runtime_error(path_ + ": dataset '" + name + "' is missing");
  return guarded(path_, name, [&] {
    H5::DataSet ds = impl_->file.openDataSet(name);
    H5::DataSpace space = ds.getSpace();
    const hssize_t n = space.getSimpleExtentNpoints();
    std::vector<char*> raw(static_cast<size_t>(n), nullptr);
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    if (n > 0) ds.read(raw.data(), type);
    std::vector<std::string> out;
    for (char* p : raw) out.emplace_back(p ? p : "");
    if (n > 0) H5Dvlen_reclaim(type.getId(), space.getId(), H5P_DEFAULT, raw.data());
    return out;
  });
}

void H5File::copyFrom(const H5File& source, const std::string& from, const std::string& to) {
  if (!source.has(from)) throw std::runtime_error(source.path() + ": object '" + from + "' is missing");
  createGroup(parentOf(to));
  guarded(path_, to, [&] {
    if (impl_->file.nameExists(to)) impl_->file.unlink(to);
    if (H5Ocopy(source.impl_->file.getId(), from.c_str(), impl_->file.getId(), to.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0)
      throw std::runtime_error(path_ + ": copying '" + from + "' from " + source.path() + " failed");
  });
}

void H5File::setAttr(const std::string& object, const std::string& key, const std::string& value) {
  guarded(path_, object + "@" + key, [&] {
    ObjectHolder holder;
    auto& obj = objectRef(impl_->file, object, holder);
    if (obj.attrExists(key)) obj.removeAttr(key);
    H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
    H5::Attribute a = obj.createAttribute(key, type, H5::DataSpace(H5S_SCALAR));
    a.write(type, value);
  });
}

void H5File::setAttr(const std::string& object, const std::string& key, double value) {
  guarded(path_, object + "@" + key, [&] {
    ObjectHolder holder;
    auto& obj = objectRef(impl_->file, object, holder);
    if (obj.attrExists(key)) obj.removeAttr(key);
    H5::Attribute a = obj.createAttribute(key, H5::PredType::NATIVE_DOUBLE, H5::DataSpace(H5S_SCALAR));
    a.write(H5::PredType::NATIVE_DOUBLE, &value);
  });
}

void H5File::setAttr(const std::string& object, const std::string& key, int64_t value) {
  guarded(path_, object + "@" + key, [&] {
    ObjectHolder holder;
    auto& obj = objectRef(impl_->file, object, holder);
    if (obj.attrExists(key)) obj.removeAttr(key);
    H5::Attribute a = obj.createAttribute(key, H5::PredType::NATIVE_INT64, H5::DataSpace(H5S_SCALAR));
    a.write(H5::PredType::NATIVE_INT64, &value);
  });
}

bool H5File::hasAttr(const std::string& object, const std::string& key) const {
  if (!has(object)) return false;
  return guarded(path_, object + "@" + key, [&] {
    ObjectHolder holder;
    return objectRef(impl_->file, object, holder).attrExists(key);
  });
}

std::string H5File::attrString(const std::string& object, const std::string& key) const {
  if (!hasAttr(object, key)) throw std::runtime_error(path_ + ": attribute '" + object + "@" + key + "' is missing");
  return guarded(path_, object + "@" + key, [&] {
    ObjectHolder holder;
    H5::Attribute a = objectRef(impl_->file, object, holder).openAttribute(key);
    std::string out;
    a.read(a.getStrType(), out);
    return out;
  });
}

double H5File::attrDouble(const std::string& object, const std::string& key) const {
  if (!hasAttr(object, key)) throw std::runtime_error(path_ + ": attribute '" + object + "@" + key + "' is missing");
  return guarded(path_, object + "@" + key, [&] {
    ObjectHolder holder;
    double v = 0;
    objectRef(impl_->file, object, holder).openAttribute(key).read(H5::PredType::NATIVE_DOUBLE, &v);
    return v;
  });
}

int64_t H5File::attrInt(const std::string& object, const std::string& key) const {
  if (!hasAttr(object, key)) throw std::runtime_error(path_ + ": attribute '" + object + "@" + key + "' is missing");
  return guarded(path_, object + "@" + key, [&] {
    ObjectHolder holder;
    int64_t v = 0;
    objectRef(impl_->file, object, holder).openAttribute(key).read(H5::PredType::NATIVE_INT64, &v);
    return v;
  });
}

void H5File::close() {
  if (impl_) guarded(path_, "close", [&] { impl_->file.close(); });
}

std::string H5File::image() {
  return guarded(path_, "file image", [&] {
    impl_->file.flush(H5F_SCOPE_GLOBAL);
    const hid_t id = impl_->file.getId();
    const ssize_t n = H5Fget_file_image(id, nullptr, 0);
    if (n < 0) throw std::runtime_error(path_ + ": cannot take the HDF5 file image");
    std::string bytes(static_cast<size_t>(n), '\0');
    if (H5Fget_file_image(id, bytes.data(), bytes.size()) != n) throw std::runtime_error(path_ + ": cannot take the HDF5 file image");
    return bytes;
  });
}

bool h5RootAttrEquals(const std::string& path, const std::string& key, const std::string& value) {
  if (!std::filesystem::exists(path)) return false;
  try {
    H5File f(path, H5File::Mode::kRead);
    return f.hasAttr("/", key) && f.attrString("/", key) == value;
  } catch (const std::exception&) {
    return false;  // unreadable: not done
  }
}

std::string h5Bytes(const std::string& path, const std::function<void(H5File&)>& fill) {
  H5File f(path, H5File::Mode::kMemory);
  fill(f);
  return f.image();
}

void writeH5Atomically(const std::string& path, const std::function<void(H5File&)>& fill) {
  // The file is built in memory and written to disk by writeTextAtomically: every write, sync and
  // rename is checked there, a full disk is one error naming `path`, and nothing half-written or
  // temporary is left behind.
  writeTextAtomically(path, h5Bytes(path, fill));
}

}  // namespace robustlab
