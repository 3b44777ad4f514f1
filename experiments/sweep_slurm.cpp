#include "experiments/sweep.h"

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

std::string submitSweepSlurm(const Sweep& s, const SlurmOptions& o, const std::string& binary) {
  std::vector<const SweepPoint*> todo;
  for (const auto& p : s.points)
    if (!pointDone(p)) todo.push_back(&p);
  if (todo.empty()) return "";
  const std::string script = s.dir + "/sweep.sbatch";
  const std::string dirAbs = fs::absolute(s.dir).string();
  std::ofstream out(script);
  out << "#!/bin/bash\n#SBATCH --job-name=robustlab-" << s.name << "\n#SBATCH --array=";
  for (size_t i = 0; i < todo.size(); ++i) out << (i ? "," : "") << todo[i]->index;
  out << "\n#SBATCH --output=" << dirAbs << "/logs/slurm-%A_%a.log\n#SBATCH --cpus-per-task=" << o.cpus << "\n#SBATCH --time=" << o.time << "\n";
  if (!o.partition.empty()) out << "#SBATCH --partition=" << o.partition << "\n";
  if (!o.mem.empty()) out << "#SBATCH --mem=" << o.mem << "\n";
  if (o.gpus > 0) out << "#SBATCH --gres=gpu:" << o.gpus << "\n";
  for (const auto& line : o.extraLines) out << (line.rfind("#SBATCH", 0) == 0 ? line : "#SBATCH " + line) << "\n";
  out << "set -euo pipefail\ncd " << fs::current_path().string() << "\ndeclare -A configs\n";
  for (const auto& p : s.points) out << "configs[" << p.index << "]=" << fs::absolute(p.configPath).string() << "\n";
  out << "exec " << fs::absolute(binary).string() << " run \"${configs[$SLURM_ARRAY_TASK_ID]}\" -q --threads " << o.cpus
      << (o.gpus > 0 ? " --device cuda" : "") << "\n";
  out.close();
  const std::string idFile = s.dir + "/sbatch.out";
  const std::string cmd = "sbatch --parsable " + script + " >" + idFile + " 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    const auto lines = readLines(idFile);
    throw std::runtime_error("sbatch failed: " + (lines.empty() ? std::string("no output") : lines.front()));
  }
  const auto lines = readLines(idFile);
  const std::string job = lines.empty() ? "" : lines.front().substr(0, lines.front().find(';'));
  std::ofstream(s.dir + "/slurm-jobs.txt", std::ios::app) << job << "\n";
  return job;
}

std::string sweepStatus(const Sweep& s) {
  // Array tasks Slurm still knows about: "JOB_INDEX STATE".
  std::map<int64_t, std::string> slurmState;
  const auto jobs = readLines(s.dir + "/slurm-jobs.txt");
  if (!jobs.empty()) {
    std::string ids;
    for (const auto& j : jobs) ids += (ids.empty() ? "" : ",") + j;
    const std::string out = s.dir + "/squeue.out";
    if (std::system(("squeue -h -r -j " + ids + " -o '%i %T' >" + out + " 2>/dev/null").c_str()) == 0) {
      for (const auto& line : readLines(out)) {
        const auto us = line.find('_'), sp = line.find(' ');
        if (us != std::string::npos && sp != std::string::npos && us < sp)
          slurmState[std::stoll(line.substr(us + 1, sp - us - 1))] = line.substr(sp + 1);
      }
    }
  }
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
