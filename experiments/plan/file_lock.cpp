#include "experiments/plan/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

namespace robustlab {

FileLock::FileLock(const std::string& lockPath, Wait wait) {
  fd_ = ::open(lockPath.c_str(), O_CREAT | O_RDWR, 0644);
  if (fd_ < 0) throw std::runtime_error(lockPath + ": cannot create the lock file");
  const int op = wait == Wait::kYes ? LOCK_EX : LOCK_EX | LOCK_NB;
  while (::flock(fd_, op) != 0) {
    if (errno == EWOULDBLOCK && wait == Wait::kNo) return;  // held by another process
    if (errno != EINTR) {
      ::close(fd_);
      fd_ = -1;
      throw std::runtime_error(lockPath + ": cannot take the lock");
    }
  }
  held_ = true;
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace robustlab
