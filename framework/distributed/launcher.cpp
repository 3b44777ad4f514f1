#include "framework/distributed/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace robustlab {
namespace {

volatile sig_atomic_t forwardedSignal = 0;
std::vector<pid_t>* liveRanks = nullptr;

void forward(int sig) {
  forwardedSignal = sig;
  if (liveRanks)
    for (const pid_t p : *liveRanks)
      if (p > 0) ::kill(p, sig);
}

/// Starts one rank; a rank other than 0 writes its stderr into a pipe whose reading end goes to `errFd`
/// (its lines would repeat rank 0's: the launcher passes one on only when that rank caused a failure).
pid_t startRank(int rank, int n, int port, const std::vector<std::string>& argv, int* errFd) {
  int fds[2] = {-1, -1};
  if (rank > 0 && ::pipe(fds) != 0) throw std::runtime_error(std::string("--nproc: cannot make a pipe: ") + std::strerror(errno));
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("--nproc: cannot start rank ") + std::to_string(rank) + ": " + std::strerror(errno));
  if (pid > 0) {
    if (rank > 0) ::close(fds[1]);
    *errFd = fds[0];
    return pid;
  }
  if (rank > 0) {
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    ::close(fds[1]);
  }
  const std::string r = std::to_string(rank), w = std::to_string(n), p = std::to_string(port);
  ::setenv("RANK", r.c_str(), 1);
  ::setenv("LOCAL_RANK", r.c_str(), 1);
  ::setenv("WORLD_SIZE", w.c_str(), 1);
  ::setenv("LOCAL_WORLD_SIZE", w.c_str(), 1);
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", p.c_str(), 1);
  ::setenv("ROBUSTLAB_LAUNCHED", "1", 1);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execv("/proc/self/exe", args.data());
  std::fprintf(stderr, "robustlab: rank %d: cannot start %s: %s\n", rank, argv[0].c_str(), std::strerror(errno));
  ::_exit(127);
}

/// Reads what the ranks' stderr pipes hold (waiting up to `ms` for some), keeping the last 64 KiB each.
void drainErrors(std::vector<int>& fds, std::vector<std::string>& text, int ms) {
  std::vector<pollfd> p;
  for (const int fd : fds)
    if (fd >= 0) p.push_back({fd, POLLIN, 0});
  if (p.empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return;
  }
  if (::poll(p.data(), p.size(), ms) <= 0) return;
  for (const auto& q : p) {
    if (!(q.revents & (POLLIN | POLLHUP))) continue;
    const size_t r = static_cast<size_t>(std::find(fds.begin(), fds.end(), q.fd) - fds.begin());
    char buf[4096];
    const ssize_t got = ::read(q.fd, buf, sizeof buf);
    if (got > 0) {
      text[r].append(buf, static_cast<size_t>(got));
      if (text[r].size() > (64u << 10)) text[r].erase(0, text[r].size() - (64u << 10));
    } else {
      ::close(q.fd);
      fds[r] = -1;
    }
  }
}

int statusCode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

}  // namespace

int freeLocalPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("cannot open a socket for a free port: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error(std::string("cannot find a free port: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

bool startedByLauncher() {
  const char* v = std::getenv("ROBUSTLAB_LAUNCHED");
  return v && std::strcmp(v, "1") == 0;
}

int takeNprocFlag(int& argc, char** argv, int from) {
  int n = 0;
  for (int i = from; i < argc;) {
    std::string value;
    int width = 0;
    if (std::strcmp(argv[i], "--nproc") == 0) {
      if (i + 1 >= argc) throw std::invalid_argument("--nproc: expected a number of ranks after it, e.g. --nproc 2");
      value = argv[i + 1];
      width = 2;
    } else if (std::strncmp(argv[i], "--nproc=", 8) == 0) {
      value = argv[i] + 8;
      width = 1;
    } else {
      ++i;
      continue;
    }
    char* end = nullptr;
    const long v = std::strtol(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || v < 1 || v > 1024)
      throw std::invalid_argument("--nproc: '" + value + "' is not a number of ranks, expected a whole number in [1, 1024]");
    n = static_cast<int>(v);
    for (int k = i; k + width <= argc; ++k) argv[k] = argv[k + width];
    argc -= width;
  }
  return n;
}

namespace {

/// The job's ranks while they run: who failed first, and stopping the others.
struct Supervisor {
  using Clock = std::chrono::steady_clock;
  int n;
  std::vector<pid_t> ranks;
  std::vector<int> errFds;
  std::vector<std::string> errText;
  int failed = -1, failedStatus = 0, left;
  bool stopped = false;
  std::vector<int> runningAtStop;  ///< ranks that had not ended when the others were stopped
  Clock::time_point stopAt = Clock::time_point::max(), killAt = Clock::time_point::max();

  explicit Supervisor(int count) : n(count), ranks(count, 0), errFds(count, -1), errText(count), left(count) {}

  void signalAll(int sig) {
    for (const pid_t p : ranks)
      if (p > 0) ::kill(p, sig);
  }

  void ended(int r, int code) {
    ranks[r] = 0;
    --left;
    if (code == 0 || stopped) return;
    // The first failure is the cause; one that only lost its peers gives the rank that made it lose
    // them a second to be seen first.
    if (failed < 0 || (failedStatus == kPeerLostExit && code != kPeerLostExit)) {
      failed = r;
      failedStatus = code;
    }
    stopAt = std::min(stopAt, code == kPeerLostExit ? Clock::now() + std::chrono::seconds(1) : Clock::now());
  }

  /// One turn: reaps a rank that ended, stops the others once one failed (SIGTERM, SIGKILL 10 s later).
  void poll() {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    const int r = pid > 0 ? static_cast<int>(std::find(ranks.begin(), ranks.end(), pid) - ranks.begin()) : n;
    if (r < n) ended(r, statusCode(status));
    const auto now = Clock::now();
    if (!stopped && now >= stopAt) {
      for (int k = 0; k < n; ++k)
        if (ranks[k] > 0) runningAtStop.push_back(k);
      signalAll(SIGTERM);
      stopped = true;
      killAt = now + std::chrono::seconds(10);
    }
    if (now >= killAt) {
      signalAll(SIGKILL);
      killAt = Clock::time_point::max();
    }
    if (pid <= 0) drainErrors(errFds, errText, 20);
  }

  /// The failed rank's own error line, which its stderr's pipe holds (empty if none).
  std::string errorLine(int r) const {
    const std::string& t = errText[r];
    const size_t at = t.rfind("error:");
    if (at == std::string::npos) return "";
    const size_t nl = t.rfind('\n', at);
    const size_t begin = nl == std::string::npos ? 0 : nl + 1;
    return t.substr(begin, t.find('\n', at) - begin);
  }

  /// One line on stderr naming the failed rank, unless rank 0 printed its own error already.
  void report() const {
    if (failedStatus == 1 || failedStatus == 2) {
      if (failed == 0) return;
      const std::string line = errorLine(failed);
      if (!line.empty()) std::fprintf(stderr, "%s\n", line.c_str());
      else std::fprintf(stderr, "robustlab: rank %d of %d failed (status %d); stopped the other ranks\n", failed, n, failedStatus);
    } else if (failedStatus > 128) {
      std::fprintf(stderr, "robustlab: rank %d of %d was killed by signal %d (%s); stopped the other ranks\n", failed, n, failedStatus - 128,
                   strsignal(failedStatus - 128));
    } else if (failedStatus == kPeerLostExit) {
      std::string running;
      for (const int k : runningAtStop) running += (running.empty() ? "" : ", ") + std::to_string(k);
      std::fprintf(stderr, "robustlab: rank %d of %d lost its peers (a rank died or stopped answering)%s; stopped the other ranks\n", failed, n,
                   running.empty() ? "" : ("; still running then, not answering: rank " + running).c_str());
    } else {
      std::fprintf(stderr, "robustlab: rank %d of %d failed (status %d); stopped the other ranks\n", failed, n, failedStatus);
    }
  }
};

}  // namespace

int launchLocalRanks(int n, const std::vector<std::string>& argv) {
  const int port = freeLocalPort();
  Supervisor job(n);
  liveRanks = &job.ranks;
  struct sigaction sa {}, oldInt{}, oldTerm{};
  sa.sa_handler = forward;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &oldInt);
  ::sigaction(SIGTERM, &sa, &oldTerm);
  std::fflush(nullptr);
  for (int r = 0; r < n; ++r) job.ranks[r] = startRank(r, n, port, argv, &job.errFds[r]);
  while (job.left > 0) job.poll();
  drainErrors(job.errFds, job.errText, 0);
  liveRanks = nullptr;
  ::sigaction(SIGINT, &oldInt, nullptr);
  ::sigaction(SIGTERM, &oldTerm, nullptr);
  for (const int fd : job.errFds)
    if (fd >= 0) ::close(fd);
  if (job.failed < 0) return 0;
  if (forwardedSignal) return 128 + forwardedSignal;
  job.report();
  return job.failedStatus;
}

}  // namespace robustlab
