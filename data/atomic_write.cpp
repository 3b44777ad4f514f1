#include "data/atomic_write.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace robustlab {
namespace fs = std::filesystem;

namespace {

/// This machine's name as temporaries carry it: on a shared file system (a cluster) a process id
/// means something only on the machine that made it.
const std::string& hostTag() {
  static const std::string tag = [] {
    char buf[256] = {0};
    if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return std::string("localhost");
    std::string h = buf;
    for (char& c : h)
      if (c == '/' || c == '@') c = '_';
    return h;
  }();
  return tag;
}

}  // namespace

std::string temporaryPathFor(const std::string& path) {
  static std::atomic<int> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "@" + hostTag();
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

/// Whether process `pid` is gone: no such process, or a zombie (dead, its exit status not yet collected:
/// the parent of a killed run's children may be an init that reaps late).
static bool processGone(long long pid) {
  if (pid <= 0) return true;
  if (::kill(static_cast<pid_t>(pid), 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto close = line.rfind(')');  // the state follows the command name, which may hold spaces
  return close != std::string::npos && close + 2 < line.size() && (line[close + 2] == 'Z' || line[close + 2] == 'X');
}

int removeStaleTemporaries(const std::string& dir) {
  int removed = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const auto at = name.rfind(".tmp-");
    if (at == std::string::npos) continue;
    const std::string tail = name.substr(at + 5);  // "<pid>-<n>@<host>"
    const auto atSign = tail.find('@');
    if (atSign == std::string::npos || tail.substr(atSign + 1) != hostTag()) continue;  // another machine's
    const std::string rest = tail.substr(0, atSign);
    const auto dash = rest.find('-');
    if (dash == std::string::npos || dash == 0 || rest.find_first_not_of("0123456789-") != std::string::npos) continue;
    const long long pid = std::stoll(rest.substr(0, dash));
    if (processGone(pid)) {
      std::error_code rm;
      if (fs::remove_all(e.path(), rm) > 0) ++removed;
    }
  }
  return removed;
}

namespace {

void writeBytes(const std::string& tmp, const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error(path + ": cannot create (" + std::strerror(errno) + ")");
  const size_t n = std::fwrite(text.data(), 1, text.size(), f);
  const int err = errno;
  const bool closed = std::fclose(f) == 0;
  if (n != text.size() || !closed) throw std::runtime_error(path + ": cannot write (" + std::strerror(n != text.size() ? err : errno) + ")");
}

}  // namespace

void writeTextAtomically(const std::string& path, const std::string& text) {
  writeAtomically(path, [&](const std::string& tmp) { writeBytes(tmp, path, text); });
}

void checkOutputTarget(const std::string& path, const std::string& flag) {
  auto fail = [&](const std::string& why) { throw std::runtime_error(flag + " " + path + ": " + why); };
  if (path.empty()) fail("an empty file name");
  const fs::path target(path);
  std::error_code ec;
  if (fs::is_directory(target, ec)) fail("is a folder, expected a file name");
  if (fs::exists(target, ec) && !fs::is_regular_file(target, ec)) fail("is not a regular file");
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  if (fs::exists(parent, ec) && !fs::is_directory(parent, ec)) fail("its folder " + parent.string() + " is a file");
  fs::create_directories(parent, ec);
  if (ec) fail("cannot create its folder (" + ec.message() + ")");
  const std::string probe = temporaryPathFor(path);
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) fail("cannot be written (" + std::string(std::strerror(errno)) + ")");
  ::close(fd);
  ::unlink(probe.c_str());
}

OutputSet::~OutputSet() {
  for (const auto& t : targets_)
    if (!t.tmp.empty()) ::unlink(t.tmp.c_str());
}

void OutputSet::declare(const std::string& path, const std::string& flag) {
  checkOutputTarget(path, flag);
  std::error_code ec;
  const std::string key = fs::weakly_canonical(fs::absolute(path), ec).string();
  for (const auto& t : targets_)
    if (t.key == key) throw std::runtime_error(flag + " " + path + ": the same file as " + t.flag + " " + t.path + " (give each output its own file)");
  targets_.push_back({path, flag, key, ""});
}

void OutputSet::stage(const std::string& path, const std::string& bytes) {
  for (auto& t : targets_) {
    if (t.path != path) continue;
    if (!t.tmp.empty()) ::unlink(t.tmp.c_str());
    t.tmp = temporaryPathFor(path);
    try {
      writeBytes(t.tmp, path, bytes);
      syncFile(t.tmp, path);
    } catch (...) {
      ::unlink(t.tmp.c_str());
      t.tmp.clear();
      throw;
    }
    return;
  }
  throw std::logic_error(path + ": staged but never declared");
}

void OutputSet::commit() {
  for (const auto& t : targets_)
    if (t.tmp.empty()) throw std::logic_error(t.path + ": declared but never staged");
  for (auto& t : targets_) {
    std::error_code ec;
    fs::rename(t.tmp, t.path, ec);
    if (ec) throw std::runtime_error(t.path + ": cannot move the finished file into place (" + ec.message() + ")");
    t.tmp.clear();
  }
}

}  // namespace robustlab
