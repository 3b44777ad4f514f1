#pragma once
// Named dataset sources: Fashion-MNIST (Debian's dataset-fashion-mnist), any IDX directory laid out
// like MNIST, robustlab's HDF5 dataset files, and CIFAR-10/100 in their binary version (data/cifar.h).
#include "data/dataset.h"

#include <functional>
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

/// Reads the "train" or "test" split of a source: N x C x H x W floats in [0,1], labels 0..k-1.
using DataSourceReader = std::function<Dataset(const DataSourceSpec& spec, const std::string& split)>;

/// The sources loadSplit reads, as configs name them (data.source), in registration order: a new
/// source is a reader and one line in sources.cpp's table (or a DataSourceRegistration).
std::vector<std::string> dataSourceNames();

/// Registers a source from code outside data/ (a static object): its name becomes a valid data.source.
struct DataSourceRegistration {
  DataSourceRegistration(const std::string& name, DataSourceReader read);
};

/// Loads the train or test split of a source. Errors name the file or directory and what is wrong.
Dataset loadSplit(const DataSourceSpec& spec, const std::string& split);

/// Where the MNIST digits converted by data/fetch_mnist.sh live.
std::string mnistDirectory();

}  // namespace robustlab
