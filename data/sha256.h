#pragma once
// SHA-256 (FIPS 180-4) of bytes and of files: what identifies a TorchScript model in configs,
// checkpoints and cache keys, so a changed file never reuses results computed from the old one.
#include <string>

namespace robustlab {

/// Lower-case hex digest of `bytes`.
std::string sha256Hex(const std::string& bytes);

/// The whole content of `path`; std::runtime_error naming the file when it cannot be read.
std::string readBinaryFile(const std::string& path);

}  // namespace robustlab
