#include "experiments/plan/sweep.h"

#include "data/atomic_write.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

namespace robustlab {
namespace fs = std::filesystem;
namespace {

std::vector<std::string> readLines(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

}  // namespace

std::string submitSweepSlurm(const Sweep& s, const SlurmOptions& o, const std::string& binary, int ntasksPerUnit) {
  SlurmArray a;
  a.jobName = "robustlab-" + s.name;
  a.scriptPath = s.dir + "/sweep.sbatch";
  a.logDir = s.dir + "/logs";
  a.workDir = fs::current_path().string();
  // Data-parallel pre-training: the point's job reserves the tasks; its run starts each pre-training
  // unit as an srun step of them (run --backend local --ntasks-per-unit), the other units one by one.
  a.ntasks = ntasksPerUnit;
  a.allocationOnly = true;
  for (const auto& p : s.points) {
    if (pointDone(p)) continue;
    std::vector<std::string> argv{fs::absolute(binary).string(), "run", fs::absolute(p.configPath).string(), "-q", "--threads", std::to_string(o.cpus)};
    if (ntasksPerUnit > 1) argv.insert(argv.end(), {"--backend", "local", "--jobs", "1", "--ntasks-per-unit", std::to_string(ntasksPerUnit)});
    if (o.gpus > 0) argv.insert(argv.end(), {"--device", "cuda"});
    a.tasks.emplace_back(p.index, argv);
  }
  if (a.tasks.empty()) return "";
  const std::string job = submitSlurmArray(a, o);
  // The sweep's record of its job ids, one per line: rewritten whole, never half-appended.
  std::string jobs;
  for (const auto& line : readLines(s.dir + "/slurm-jobs.txt")) jobs += line + "\n";
  writeTextAtomically(s.dir + "/slurm-jobs.txt", jobs + job + "\n");
  return job;
}

std::string sweepStatus(const Sweep& s) {
  // Array tasks Slurm still knows about: index -> state.
  std::map<int64_t, std::string> slurmState;
  const auto jobs = readLines(s.dir + "/slurm-jobs.txt");
  for (const auto& [index, state] : slurmTaskStates(jobs)) slurmState[index] = state;
  std::ostringstream os;
  std::map<std::string, int> counts;
  for (const auto& p : s.points) {
    std::string state;
    if (pointDone(p)) state = "done";
    else if (slurmState.count(p.index)) state = slurmState[p.index] == "RUNNING" ? "running" : "pending";
    else {
      bool ran = fs::exists(p.logPath);
      for (const auto& j : jobs) ran |= fs::exists(s.dir + "/logs/slurm-" + j + "_" + std::to_string(p.index) + ".log");
      state = ran ? "failed" : "not started";
    }
    ++counts[state];
    os << p.index << "\t" << state << "\t" << describe(p.params) << "\n";
  }
  std::ostringstream head;
  head << "sweep '" << s.name << "' (" << s.dir << "): " << s.points.size() << " points";
  for (const auto& [state, n] : counts) head << ", " << n << " " << state;
  return head.str() + "\n" + os.str();
}

}  // namespace robustlab
