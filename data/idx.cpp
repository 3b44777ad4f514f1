#include "data/idx.h"

#include <zlib.h>

#include <array>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <vector>

namespace robustlab {
namespace {

constexpr int kUnsignedByte = 0x08;
constexpr int kMaxDims = 4;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzPtr = std::unique_ptr<gzFile_s, GzCloser>;

int64_t readFully(gzFile f, void* dst, int64_t n) {
  auto* p = static_cast<char*>(dst);
  int64_t done = 0;
  while (done < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<int64_t>(n - done, 1 << 30));
    const int got = gzread(f, p + done, chunk);
    if (got < 0) return -1;
    if (got == 0) break;
    done += got;
  }
  return done;
}

}  // namespace

torch::Tensor readIdx(const std::string& path) {
  auto fail = [&](const std::string& msg) { throw std::runtime_error(path + ": " + msg); };
  if (!std::filesystem::exists(path)) fail("file not found");
  GzPtr f(gzopen(path.c_str(), "rb"));
  if (!f) fail("cannot open file");
  std::array<unsigned char, 4> magic{};
  if (readFully(f.get(), magic.data(), 4) != 4) fail("truncated: file is shorter than the 4-byte IDX header");
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != kUnsignedByte || magic[3] < 1 || magic[3] > kMaxDims) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "0x%02x%02x%02x%02x", magic[0], magic[1], magic[2], magic[3]);
    fail(std::string("wrong magic number ") + buf +
         ", expected 0x000008NN (unsigned-byte IDX with NN = 1..4 dimensions, e.g. 0x00000803 for images)");
  }
  const int ndims = magic[3];
  std::vector<int64_t> dims(ndims);
  int64_t count = 1;
  for (int i = 0; i < ndims; ++i) {
    std::array<unsigned char, 4> b{};
    if (readFully(f.get(), b.data(), 4) != 4) fail("truncated: header ends inside dimension " + std::to_string(i));
    dims[i] = (int64_t(b[0]) << 24) | (int64_t(b[1]) << 16) | (int64_t(b[2]) << 8) | int64_t(b[3]);
    if (dims[i] <= 0 || dims[i] > (1 << 28)) fail("implausible dimension " + std::to_string(i) + " = " + std::to_string(dims[i]));
    count *= dims[i];
  }
  if (count > (int64_t(1) << 34)) fail("data too large (" + std::to_string(count) + " bytes)");
  auto out = torch::empty(dims, torch::kUInt8);
  const int64_t got = readFully(f.get(), out.data_ptr<uint8_t>(), count);
  if (got < 0) fail("corrupt gzip stream");
  if (got != count)
    fail("truncated: header promises " + std::to_string(count) + " data bytes, found " + std::to_string(got));
  unsigned char extra;
  if (readFully(f.get(), &extra, 1) == 1) fail("trailing data after the " + std::to_string(count) + " bytes the header promises");
  return out;
}

void writeIdxGz(const std::string& path, const torch::Tensor& data) {
  auto t = data.contiguous().to(torch::kUInt8);
  GzPtr f(gzopen(path.c_str(), "wb"));
  if (!f) throw std::runtime_error(path + ": cannot open for writing");
  unsigned char magic[4] = {0, 0, kUnsignedByte, static_cast<unsigned char>(t.dim())};
  gzwrite(f.get(), magic, 4);
  for (int64_t d : t.sizes()) {
    unsigned char b[4] = {static_cast<unsigned char>(d >> 24), static_cast<unsigned char>(d >> 16),
                          static_cast<unsigned char>(d >> 8), static_cast<unsigned char>(d)};
    gzwrite(f.get(), b, 4);
  }
  if (t.numel() > 0 && gzwrite(f.get(), t.data_ptr<uint8_t>(), static_cast<unsigned>(t.numel())) <= 0)
    throw std::runtime_error(path + ": write failed");
}

}  // namespace robustlab
