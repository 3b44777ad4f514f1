#include "data/atomic_write.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace robustlab {
namespace fs = std::filesystem;

std::string temporaryPathFor(const std::string& path) {
  static std::atomic<int> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

namespace {

void syncFile(const std::string& tmp, const std::string& path) {
  const int fd = ::open(tmp.c_str(), O_RDONLY);
  if (fd < 0) throw std::runtime_error(path + ": cannot reopen the file just written (" + std::strerror(errno) + ")");
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw std::runtime_error(path + ": cannot write to disk (" + std::strerror(err) + ")");
}

}  // namespace

void writeAtomically(const std::string& path, const std::function<void(const std::string& tmp)>& fill) {
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  const std::string tmp = temporaryPathFor(path);
  try {
    fill(tmp);
    syncFile(tmp, path);
    std::error_code ec;
    fs::rename(tmp, target, ec);
    if (ec) throw std::runtime_error(path + ": cannot move the finished file into place (" + ec.message() + ")");
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

void writeTextAtomically(const std::string& path, const std::string& text) {
  writeAtomically(path, [&](const std::string& tmp) {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw std::runtime_error(path + ": cannot create (" + std::strerror(errno) + ")");
    const size_t n = std::fwrite(text.data(), 1, text.size(), f);
    const int err = errno;
    const bool closed = std::fclose(f) == 0;
    if (n != text.size() || !closed) throw std::runtime_error(path + ": cannot write (" + std::strerror(n != text.size() ? err : errno) + ")");
  });
}

}  // namespace robustlab
