#pragma once
// robustlab's generic dataset file: any dataset a user brings, as HDF5.
//   /images  float32 N x C x H x W, values in [0,1]
//   /labels  int64   N, values in [0, num_classes)
//   attributes on /: num_classes (int64), name (string), format = "robustlab-dataset-1"
#include "data/dataset.h"

#include <string>

namespace robustlab {

inline constexpr const char* kDatasetFormat = "robustlab-dataset-1";

void saveHdf5Dataset(const std::string& path, const Dataset& ds);
/// Throws std::runtime_error naming the file and the missing or malformed field.
Dataset loadHdf5Dataset(const std::string& path);

}  // namespace robustlab
