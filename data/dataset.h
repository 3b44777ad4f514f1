#pragma once
// An in-memory labelled image dataset. Pixels are float32 in [0,1]; any normalisation lives inside
// the model so that attacks work in pixel space.
#include <torch/types.h>

#include <cstdint>
#include <string>

namespace robustlab {

struct Dataset {
  torch::Tensor images;  ///< N x C x H x W, float32, values in [0,1]
  torch::Tensor labels;  ///< N, int64, values in [0, numClasses)
  int64_t numClasses = 0;
  std::string name;
  /// N, int64: each example's place in the split file it was read from (loadSplit), kept through every
  /// selection, so results can name the test images they evaluated. Undefined for made-up data.
  torch::Tensor sourceIndex;

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  int64_t channels() const { return images.size(1); }
  int64_t height() const { return images.size(2); }
  int64_t width() const { return images.size(3); }

  /// The examples at `index` (an int64 index tensor), in that order.
  Dataset select(const torch::Tensor& index) const;
  /// The first `n` examples (all when n <= 0 or n >= size()).
  Dataset head(int64_t n) const;
  /// Throws std::runtime_error naming `what` when shapes, dtypes or value ranges are wrong.
  void validate(const std::string& what) const;
};

}  // namespace robustlab
