#include "experiments/plan/executor.h"

#include "framework/runtime/progress.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cctype>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "data/atomic_write.h"

namespace robustlab {
namespace fs = std::filesystem;
namespace {

std::vector<char*> cArgs(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const auto& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

/// In the child: dies with its parent (a killed leader leaves no orphan computing on), stdout/stderr
/// to `fd` (when >= 0), then exec. Never returns.
[[noreturn]] void execChild(const std::vector<std::string>& argv, int outFd, int errFd, pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != parent) std::_Exit(1);  // the parent died before prctl took effect
  if (outFd >= 0) ::dup2(outFd, 1);
  if (errFd >= 0) ::dup2(errFd, 2);
  auto args = cArgs(argv);
  if (argv.front().find('/') == std::string::npos) ::execvp(args[0], args.data());
  else ::execv(args[0], args.data());
  std::fprintf(stderr, "cannot start %s: %s\n", argv.front().c_str(), std::strerror(errno));
  std::_Exit(127);
}

std::string readAll(int fd) {
  std::string s;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) s.append(buf, static_cast<size_t>(n));
  return s;
}

int exitCode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0); }

volatile sig_atomic_t gStop = 0;
void onStop(int) { gStop = 1; }

}  // namespace

std::string selfExecutable() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot locate the robustlab executable (/proc/self/exe)");
  return std::string(buf, static_cast<size_t>(n));
}

int runCommand(const std::vector<std::string>& argv, std::string* out, std::string* err) {
  if (argv.empty()) throw std::invalid_argument("runCommand: empty argument vector");
  int outPipe[2] = {-1, -1}, errPipe[2] = {-1, -1};
  if ((out && ::pipe(outPipe) != 0) || (err && ::pipe(errPipe) != 0)) throw std::runtime_error("cannot create a pipe");
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("cannot start " + argv.front());
  if (pid == 0) {
    if (out) ::close(outPipe[0]);
    if (err) ::close(errPipe[0]);
    execChild(argv, out ? outPipe[1] : -1, err ? errPipe[1] : -1, parent);
  }
  if (out) ::close(outPipe[1]);
  if (err) ::close(errPipe[1]);
  // Small outputs (sbatch, squeue): read stdout to the end, then stderr.
  if (out) *out = readAll(outPipe[0]), ::close(outPipe[0]);
  if (err) *err = readAll(errPipe[0]), ::close(errPipe[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return exitCode(status);
}

std::string lastLogLine(const std::string& path, const std::string& prefix) {
  std::ifstream log(path);
  std::string line, last;
  while (std::getline(log, line))
    if (!line.empty() && line.rfind(prefix, 0) == 0) last = line;
  return last;
}

int runProcesses(const std::vector<ProcessTask>& tasks, int jobs, const RunProcessesOptions& o) {
  struct sigaction sa {}, oldInt{}, oldTerm{};
  sa.sa_handler = onStop;
  ::sigaction(SIGINT, &sa, &oldInt);
  ::sigaction(SIGTERM, &sa, &oldTerm);
  gStop = 0;
  std::map<pid_t, size_t> running;
  size_t next = 0, finished = 0;
  int failed = 0;
  const auto t0 = std::chrono::steady_clock::now();
  bool stopping = false;  // a task failed and o.stopOnFailure
  while ((next < tasks.size() && !gStop && !stopping) || !running.empty()) {
    while (!gStop && !stopping && next < tasks.size() && static_cast<int>(running.size()) < jobs) {
      const ProcessTask& t = tasks[next];
      const int fd = ::open(t.logPath.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
      const pid_t parent = ::getpid();
      const pid_t pid = ::fork();
      if (pid == 0) execChild(t.argv, fd, fd, parent);
      if (fd >= 0) ::close(fd);
      if (pid < 0) throw std::runtime_error("cannot start a process for " + t.label);
      running[pid] = next++;
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno != EINTR) break;
      if (gStop)  // pass the stop on, then keep waiting for the children to go
        for (const auto& [child, _] : running) ::kill(child, SIGTERM);
      continue;
    }
    const size_t i = running[pid];
    running.erase(pid);
    ++finished;
    const bool good = exitCode(status) == 0 && (!o.ok || o.ok(i));
    if (stopping) continue;  // stopped by us after the first failure: that one is what is reported
    failed += good ? 0 : 1;
    const std::string last = good ? "" : lastLogLine(tasks[i].logPath);  // its last words: the error line
    if (!good && o.stopOnFailure) {
      stopping = true;
      if (o.firstFailure) *o.firstFailure = last.empty() ? "exited with code " + std::to_string(exitCode(status)) : last;
      if (o.firstFailed) *o.firstFailed = i;
      for (const auto& [child, _] : running) ::kill(child, SIGTERM);
    }
    if (Progress::quiet()) continue;
    const double elapsed = secondsSince(t0);
    const double eta = elapsed / static_cast<double>(finished) * static_cast<double>(tasks.size() - finished);
    std::string how = "FAILED, see " + tasks[i].logPath + (last.empty() ? "" : ": " + last);
    if (good) how = o.describe ? o.describe(i) : "done";
    std::fprintf(stderr, "[%zu/%zu] %s: %s, elapsed %s ETA %s\n", finished, tasks.size(), tasks[i].label.c_str(), how.c_str(),
                 formatDuration(elapsed).c_str(), formatDuration(eta).c_str());
  }
  ::sigaction(SIGINT, &oldInt, nullptr);
  ::sigaction(SIGTERM, &oldTerm, nullptr);
  if (gStop) throw std::runtime_error("stopped by a signal; finished work is kept, run the same command again to go on");
  return failed;
}

std::string shellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

namespace {

std::string sbatchHeader(const SlurmArray& a, const SlurmOptions& o) {
  std::ostringstream out;
  // #SBATCH lines are read by sbatch, not bash: a job name or path with spaces or quotes would not
  // survive, so only safe characters go there.
  auto safe = [](std::string s) {
    for (char& c : s)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/' || c == '%' || c == ':')) c = '_';
    return s;
  };
  out << "#!/bin/bash\n#SBATCH --job-name=" << safe(a.jobName) << "\n#SBATCH --array=";
  for (size_t i = 0; i < a.tasks.size(); ++i) out << (i ? "," : "") << a.tasks[i].first;
  if (a.ntasks > 1) out << "\n#SBATCH --ntasks=" << a.ntasks;
  out << "\n#SBATCH --cpus-per-task=" << o.cpus << "\n#SBATCH --time=" << safe(o.time) << "\n";
  if (!o.partition.empty()) out << "#SBATCH --partition=" << safe(o.partition) << "\n";
  if (!o.mem.empty()) out << "#SBATCH --mem=" << safe(o.mem) << "\n";
  if (o.gpus > 0) out << "#SBATCH --gres=gpu:" << o.gpus << "\n";
  for (const auto& line : o.extraLines) out << (line.rfind("#SBATCH", 0) == 0 ? line : "#SBATCH " + line) << "\n";
  return out.str();
}

}  // namespace

std::vector<std::string> srunStep(int ntasks, int cpusPerTask) {
  return {"srun", "--ntasks=" + std::to_string(ntasks), "--cpus-per-task=" + std::to_string(cpusPerTask)};
}

std::string submitSlurmArray(const SlurmArray& a, const SlurmOptions& o) {
  if (a.tasks.empty()) throw std::invalid_argument("submitSlurmArray: no tasks");
  std::ostringstream script;
  script << sbatchHeader(a, o) << "set -euo pipefail\ncd " << shellQuote(a.workDir) << "\n";
  for (const auto& [k, v] : a.env) script << "export " << k << "=" << shellQuote(v) << "\n";
  script << "case \"$SLURM_ARRAY_TASK_ID\" in\n";
  for (const auto& [index, argv] : a.tasks) {
    script << "  " << index << ") exec";
    if (a.ntasks > 1 && !a.allocationOnly)
      for (const auto& word : srunStep(a.ntasks, o.cpus)) script << " " << word;  // plain words: no quoting needed
    for (const auto& arg : argv) script << " " << shellQuote(arg);
    script << " ;;\n";
  }
  script << "  *) echo \"unknown array task $SLURM_ARRAY_TASK_ID\" >&2; exit 2 ;;\nesac\n";
  writeTextAtomically(a.scriptPath, script.str());
  std::vector<std::string> argv{"sbatch", "--parsable", "--output=" + (fs::absolute(a.logDir) / "slurm-%A_%a.log").string()};
  if (!a.dependency.empty()) argv.push_back("--dependency=afterok:" + a.dependency);
  argv.push_back(a.scriptPath);
  std::string out, err;
  const int rc = runCommand(argv, &out, &err);
  auto firstLine = [](const std::string& s) { return s.substr(0, s.find('\n')); };
  if (rc != 0) throw std::runtime_error("sbatch failed: " + (err.empty() ? out.empty() ? std::string("no output") : firstLine(out) : firstLine(err)));
  const std::string line = firstLine(out);
  return line.substr(0, line.find(';'));
}

std::vector<std::pair<int64_t, std::string>> slurmTaskStates(const std::vector<std::string>& jobIds) {
  std::vector<std::pair<int64_t, std::string>> states;
  if (jobIds.empty()) return states;
  std::string ids;
  for (const auto& j : jobIds) ids += (ids.empty() ? "" : ",") + j;
  std::string out, err;
  if (runCommand({"squeue", "-h", "-r", "-j", ids, "-o", "%i %T"}, &out, &err) != 0) return states;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    const auto us = line.find('_'), sp = line.find(' ');
    if (us != std::string::npos && sp != std::string::npos && us < sp) {
      try {
        states.emplace_back(std::stoll(line.substr(us + 1, sp - us - 1)), line.substr(sp + 1));
      } catch (const std::exception&) {
      }
    }
  }
  return states;
}

}  // namespace robustlab
