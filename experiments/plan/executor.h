#pragma once
// Executors: how units of work (an experiment's units, a sweep's points) are run outside this
// process. Local processes are started with fork + execv on an argument vector (no shell, so no
// quoting: a path holding ' or $ is passed as it is); a Slurm job array is a script whose commands
// are quoted by shellQuote, submitted with sbatch started the same way.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace robustlab {

/// The robustlab executable running now (/proc/self/exe), for starting workers.
std::string selfExecutable();

/// Runs argv[0] (looked up in PATH when it has no '/') with argv, waits and returns its exit code
/// (128 + signal when killed). Its stdout goes to *out when given, else to ours; stderr to *err when
/// given, else to ours. Throws when it cannot be started.
int runCommand(const std::vector<std::string>& argv, std::string* out = nullptr, std::string* err = nullptr);

/// One child process of a local executor.
struct ProcessTask {
  std::string label;              ///< for progress lines
  std::vector<std::string> argv;  ///< argv[0] is the executable's path
  std::string logPath;            ///< stdout and stderr
};

/// Runs `tasks` as child processes, `jobs` at a time, and prints one progress line (with ETA) per
/// finished task: "done", or what `describe(index)` (when given) says of a task that succeeded. A task
/// succeeded when it exited 0 and `ok(index)` (when given) says so. Returns the number that failed.
/// SIGINT or SIGTERM to this process is passed on to the children, which are waited for, so none is
/// left running. Progress lines are not printed when Progress::quiet().
struct RunProcessesOptions {
  std::function<bool(size_t)> ok;                ///< whether a task that exited 0 did its work
  std::function<std::string(size_t)> describe;   ///< what the progress line says of a task that succeeded
  /// Stop at the first failure: start no more tasks, stop the running ones (SIGTERM), and put the last
  /// line of the failed task's log in *firstFailure and its index in *firstFailed (when given).
  bool stopOnFailure = false;
  std::string* firstFailure = nullptr;
  size_t* firstFailed = nullptr;
};
int runProcesses(const std::vector<ProcessTask>& tasks, int jobs, const RunProcessesOptions& o = {});

/// The last non-empty line of a log file that starts with `prefix` ("" when there is none).
std::string lastLogLine(const std::string& path, const std::string& prefix = "");

/// `s` as one word for bash, in single quotes ('\'' for a quote inside).
std::string shellQuote(const std::string& s);

/// The command words that start a command as one srun step of `ntasks` tasks of `cpusPerTask` CPUs each
/// (data-parallel ranks). The CPUs are given again: srun since Slurm 22.05 does not take the job's.
std::vector<std::string> srunStep(int ntasks, int cpusPerTask);

struct SlurmOptions {
  std::string partition, time = "01:00:00", mem;
  int cpus = 1;
  int gpus = 0;
  std::vector<std::string> extraLines;  ///< extra "#SBATCH ..." lines, verbatim
};

/// A Slurm job array: task `index` runs its argv; every task of `dependency` (a job id, may be
/// empty) must have ended OK first. A one-task array is how a single job is submitted.
struct SlurmArray {
  std::string jobName, scriptPath, logDir, workDir;
  std::vector<std::pair<int64_t, std::vector<std::string>>> tasks;
  std::vector<std::pair<std::string, std::string>> env;  ///< exported before each task runs
  std::string dependency;                                ///< afterok on this job id ("" = none)
  int ntasks = 1;  ///< > 1: each task runs as that many Slurm tasks of one srun step (data-parallel ranks)
  /// With ntasks > 1: the job only reserves the tasks, and each task's command starts its own srun
  /// steps (a sweep point whose pre-training units are steps of `ntasks` tasks).
  bool allocationOnly = false;
};

/// Writes the array's script and submits it with sbatch; returns the job id. Throws with sbatch's
/// first line of output when it fails.
std::string submitSlurmArray(const SlurmArray& a, const SlurmOptions& o);

/// Array tasks Slurm still knows about, for the given job ids: index -> state (RUNNING, PENDING, ...).
std::vector<std::pair<int64_t, std::string>> slurmTaskStates(const std::vector<std::string>& jobIds);

}  // namespace robustlab
