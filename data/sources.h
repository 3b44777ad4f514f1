#pragma once
// Named dataset sources: Fashion-MNIST (Debian's dataset-fashion-mnist), any IDX directory laid out
// like MNIST, robustlab's HDF5 dataset files, and CIFAR-10/100 in their binary version (data/cifar.h).
#include "data/dataset.h"

#include <string>
#include <vector>

namespace robustlab {

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

/// Reads `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]` from `dir`; split is "train" or "test".
/// Images become float32 N x 1 x H x W in [0,1].
Dataset loadIdxDirectory(const std::string& dir, const std::string& split, int64_t numClasses = 10);

struct DataSourceSpec {
  std::string source = "fashion-mnist";  ///< fashion-mnist | mnist | idx | hdf5 | cifar10 | cifar100
  std::string dir;                        ///< idx, cifar10, cifar100: directory; fashion-mnist: optional override
  std::string trainFile;                  ///< hdf5: training file
  std::string testFile;                   ///< hdf5: test file
};

/// The sources loadSplit reads, as configs name them (data.source): a new source is a reader, one
/// name here and one branch in loadSplit.
std::vector<std::string> dataSourceNames();

/// Loads the train or test split of a source. Errors name the file or directory and what is wrong.
Dataset loadSplit(const DataSourceSpec& spec, const std::string& split);

/// Where the MNIST digits converted by data/fetch_mnist.sh live.
std::string mnistDirectory();

}  // namespace robustlab
