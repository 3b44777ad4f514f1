#pragma once
// Reader for the IDX format of (Fashion-)MNIST, plain or gzip-compressed.
#include <torch/types.h>

#include <string>

namespace robustlab {

/// Reads an unsigned-byte IDX file (`.gz` or plain) and returns a uint8 tensor with the file's
/// dimensions. Validates the magic number, the dimensions and that the data is complete; any problem
/// throws std::runtime_error naming the file and what was expected.
torch::Tensor readIdx(const std::string& path);

/// Writes a uint8 tensor as a gzip-compressed IDX file.
void writeIdxGz(const std::string& path, const torch::Tensor& data);

}  // namespace robustlab
