#pragma once
// Where this process stands among the ranks of one data-parallel job, read from the environment the
// ecosystem's launchers set: torchrun (and robustlab's own --nproc), else a Slurm step (srun).
#include <cstdlib>
#include <functional>
#include <string>

namespace robustlab {

struct RankInfo {
  int rank = 0;
  int worldSize = 1;
  int localRank = 0;
  int localWorldSize = 1;                ///< ranks on this host (they share its cores)
  std::string masterAddr = "127.0.0.1";  ///< where rank 0's TCPStore listens
  int masterPort = 29500;
  std::string launcher = "none";         ///< "torchrun" (RANK/WORLD_SIZE), "slurm" or "none"
  bool distributed() const { return worldSize > 1; }
};

/// Reads a variable; the default is getenv (tests pass a table).
using EnvLookup = std::function<const char*(const char*)>;

/// torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT when RANK or
/// WORLD_SIZE is set; else, inside an srun step of several tasks (SLURM_STEP_NUM_TASKS > 1), SLURM_PROCID,
/// SLURM_LOCALID, SLURM_STEP_TASKS_PER_NODE,
/// the step's first host (SLURM_STEP_NODELIST) and MASTER_PORT or a port derived from the job and step
/// ids; else one process. A malformed value throws std::invalid_argument naming the variable.
RankInfo rankInfoFromEnvironment(const EnvLookup& env = [](const char* name) { return std::getenv(name); });

/// The ranks' own settings from the environment; a malformed value throws std::invalid_argument naming
/// the variable.
struct DistSettings {
  std::string backend = "auto";  ///< ROBUSTLAB_DIST_BACKEND: auto | gloo | nccl (Communicator::checkBackend)
  int timeoutSeconds = 300;      ///< ROBUSTLAB_DIST_TIMEOUT: the meeting and every collective, >= 1
  int pollMicros = -1;           ///< ROBUSTLAB_DIST_POLL_US: polling a collective before sleeping, >= 0 (-1: by the load)
};
DistSettings distSettingsFromEnvironment(const EnvLookup& env = [](const char* name) { return std::getenv(name); });

/// The first host of a Slurm node list: "node[03-05,9],gpu1" -> "node03".
std::string firstSlurmHost(const std::string& nodeList);

/// Why `host` (MASTER_ADDR) cannot be resolved here, when the resolver says so for good ("Name or
/// service not known"); empty when it resolves, or when the failure may pass (a resolver not
/// answering yet), for the meeting's own retries to settle.
std::string unresolvableHost(const std::string& host);

}  // namespace robustlab
