#include "data/hdf5_dataset.h"

#include "data/h5io.h"

#include <stdexcept>

namespace robustlab {

void saveHdf5Dataset(const std::string& path, const Dataset& ds) {
  ds.validate(path);
  writeH5Atomically(path, [&](H5File& f) {
    f.writeTensor("/images", ds.images, /*compress=*/true);
    f.writeTensor("/labels", ds.labels);
    f.setAttr("/", "num_classes", ds.numClasses);
    f.setAttr("/", "name", ds.name);
    f.setAttr("/", "format", std::string(kDatasetFormat));
  });
}

Dataset loadHdf5Dataset(const std::string& path) {
  H5File f(path, H5File::Mode::kRead);
  if (!f.has("/images")) throw std::runtime_error(path + ": missing dataset /images (float32 N x C x H x W)");
  if (!f.has("/labels")) throw std::runtime_error(path + ": missing dataset /labels (int64 N)");
  if (!f.hasAttr("/", "num_classes")) throw std::runtime_error(path + ": missing attribute num_classes on /");
  Dataset ds;
  ds.images = f.readTensor("/images");
  ds.labels = f.readTensor("/labels");
  if (ds.labels.is_floating_point()) {
    // A float label is accepted only when it is a whole number: 5.5 is corrupt data, not class 5.
    if (!torch::isfinite(ds.labels).all().item<bool>() || !ds.labels.eq(ds.labels.round()).all().item<bool>())
      throw std::runtime_error(path + ": /labels holds values that are not whole numbers (expected integer class labels)");
  }
  if (ds.labels.scalar_type() != torch::kInt64) ds.labels = ds.labels.to(torch::kInt64);
  ds.numClasses = f.attrInt("/", "num_classes");
  ds.name = f.hasAttr("/", "name") ? f.attrString("/", "name") : path;
  ds.validate(path);
  return ds;
}

}  // namespace robustlab
