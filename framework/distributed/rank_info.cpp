#include "framework/distributed/rank_info.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <stdexcept>

namespace robustlab {
namespace {

int intVar(const EnvLookup& env, const char* name, int lo, int hi) {
  const char* v = env(name);
  const std::string text = v ? v : "";
  size_t used = 0;
  long value = 0;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || value < lo || value > hi)
    throw std::invalid_argument("environment variable " + std::string(name) + "='" + text + "': expected a whole number " +
                                (hi == std::numeric_limits<int>::max() ? ">= " + std::to_string(lo)
                                                                       : "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]"));
  return static_cast<int>(value);
}

bool isSet(const EnvLookup& env, const char* name) {
  const char* v = env(name);
  return v && *v;
}

}  // namespace

DistSettings distSettingsFromEnvironment(const EnvLookup& env) {
  DistSettings d;
  constexpr int kAny = std::numeric_limits<int>::max();
  if (isSet(env, "ROBUSTLAB_DIST_BACKEND")) d.backend = env("ROBUSTLAB_DIST_BACKEND");
  if (isSet(env, "ROBUSTLAB_DIST_TIMEOUT")) d.timeoutSeconds = intVar(env, "ROBUSTLAB_DIST_TIMEOUT", 1, kAny);
  if (isSet(env, "ROBUSTLAB_DIST_POLL_US")) d.pollMicros = intVar(env, "ROBUSTLAB_DIST_POLL_US", 0, kAny);
  return d;
}

std::string firstSlurmHost(const std::string& nodeList) {
  // The first item is everything before the first comma outside brackets.
  size_t end = 0;
  int depth = 0;
  for (; end < nodeList.size(); ++end) {
    if (nodeList[end] == '[') ++depth;
    else if (nodeList[end] == ']') --depth;
    else if (nodeList[end] == ',' && depth == 0) break;
  }
  const std::string item = nodeList.substr(0, end);
  const size_t open = item.find('[');
  if (open == std::string::npos) return item;
  // "prefix[03-05,9]suffix": the range's first number, its zero padding kept.
  const size_t close = item.find(']', open);
  const std::string inside = item.substr(open + 1, close == std::string::npos ? std::string::npos : close - open - 1);
  const std::string first = inside.substr(0, inside.find_first_of(",-"));
  return item.substr(0, open) + first + (close == std::string::npos ? "" : item.substr(close + 1));
}

RankInfo rankInfoFromEnvironment(const EnvLookup& env) {
  RankInfo r;
  if (isSet(env, "RANK") || isSet(env, "WORLD_SIZE")) {
    r.launcher = "torchrun";
    r.worldSize = intVar(env, "WORLD_SIZE", 1, 1 << 20);
    r.rank = intVar(env, "RANK", 0, r.worldSize - 1);
    r.localRank = isSet(env, "LOCAL_RANK") ? intVar(env, "LOCAL_RANK", 0, r.worldSize - 1) : r.rank;
    r.localWorldSize = isSet(env, "LOCAL_WORLD_SIZE") ? intVar(env, "LOCAL_WORLD_SIZE", 1, r.worldSize) : 1;
    if (r.worldSize > 1) {
      if (!isSet(env, "MASTER_ADDR")) throw std::invalid_argument("environment variable MASTER_ADDR is not set: torchrun sets it; another launcher must set it to rank 0's host");
      r.masterAddr = env("MASTER_ADDR");
      r.masterPort = intVar(env, "MASTER_PORT", 1, 65535);
    }
    return r;
  }
  if (isSet(env, "SLURM_STEP_NUM_TASKS") && intVar(env, "SLURM_STEP_NUM_TASKS", 1, 1 << 20) > 1) {
    r.launcher = "slurm";
    r.worldSize = intVar(env, "SLURM_STEP_NUM_TASKS", 1, 1 << 20);
    r.rank = intVar(env, "SLURM_PROCID", 0, r.worldSize - 1);
    r.localRank = isSet(env, "SLURM_LOCALID") ? intVar(env, "SLURM_LOCALID", 0, r.worldSize - 1) : 0;
    // "2(x3),1": this node's count is not named, the first node's is the common case (and rank 0's).
    if (isSet(env, "SLURM_STEP_TASKS_PER_NODE")) r.localWorldSize = std::max(1, std::atoi(env("SLURM_STEP_TASKS_PER_NODE")));
    if (isSet(env, "MASTER_ADDR")) r.masterAddr = env("MASTER_ADDR");
    else if (isSet(env, "SLURM_STEP_NODELIST")) r.masterAddr = firstSlurmHost(env("SLURM_STEP_NODELIST"));
    else throw std::invalid_argument("environment variable SLURM_STEP_NODELIST is not set: run the ranks with srun, or set MASTER_ADDR");
    if (isSet(env, "MASTER_PORT")) {
      r.masterPort = intVar(env, "MASTER_PORT", 1, 65535);
    } else {
      // One port per job step, so steps of one job (and jobs on one node) do not meet at one store.
      const auto id = [&](const char* name) { return isSet(env, name) ? std::strtoull(env(name), nullptr, 10) : 0ULL; };
      r.masterPort = 20000 + static_cast<int>((id("SLURM_JOB_ID") * 31 + id("SLURM_STEP_ID")) % 20000);
    }
  }
  return r;
}

std::string unresolvableHost(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (found) ::freeaddrinfo(found);
  const bool forGood = rc == EAI_NONAME
#ifdef EAI_NODATA
                       || rc == EAI_NODATA
#endif
      ;
  return forGood ? ::gai_strerror(rc) : "";
}

}  // namespace robustlab
