#pragma once
// An exclusive lock on a lock file (flock) for the life of the object; the kernel drops it if the
// process dies, so a killed run never leaves a lock behind.
#include <string>

namespace robustlab {

class FileLock {
 public:
  enum class Wait { kNo, kYes };
  /// Creates `lockPath` when missing and locks it: kYes waits until the lock is free, kNo returns at
  /// once with held() false when another process holds it. Throws naming the file when it cannot be
  /// created or locked.
  FileLock(const std::string& lockPath, Wait wait);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool held() const { return held_; }

 private:
  int fd_ = -1;
  bool held_ = false;
};

}  // namespace robustlab
