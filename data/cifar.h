#pragma once
// CIFAR-10 and CIFAR-100 in the binary version their authors distribute
// (https://www.cs.toronto.edu/~kriz/cifar.html, "CIFAR-10 binary version (suitable for C programs)"):
//   CIFAR-10:  data_batch_1.bin .. data_batch_5.bin, test_batch.bin; each record 1 label byte, then
//              3,072 pixel bytes: the 32 x 32 red plane, then green, then blue, rows in order.
//   CIFAR-100: train.bin, test.bin; each record a coarse label byte (20 classes), a fine label byte
//              (100 classes), then the 3,072 pixel bytes.
// The folder may be the one the archive unpacks to (cifar-10-batches-bin, cifar-100-binary) or the
// one above it.
#include "data/dataset.h"

#include <string>

namespace robustlab {

/// The train or test split as float32 N x 3 x 32 x 32 in [0,1]. `hundred`: CIFAR-100 (fine labels, 100
/// classes; with `coarse`, the 20 superclasses instead). A missing file, a size that is not whole records, or a label out of range is a
/// std::runtime_error naming the file and what was expected.
Dataset loadCifar(const std::string& dir, const std::string& split, bool hundred, bool coarse = false);

}  // namespace robustlab
