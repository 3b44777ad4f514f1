#pragma once
// robustlab's own launcher for data-parallel ranks on this machine (`--nproc N`), torchrun's way: N
// copies of the command, told their place by torchrun's environment variables, supervised as one job.
#include <string>
#include <vector>

namespace robustlab {

/// The exit status of a rank that stopped because a collective with its peers failed (another rank
/// died or hung): the launcher names the rank that caused it instead.
inline constexpr int kPeerLostExit = 3;

/// Set in every rank the launcher starts (ROBUSTLAB_LAUNCHED=1): a rank then leaves the report of a
/// peer's failure to the launcher.
bool startedByLauncher();

/// Runs `argv` (the executable first) as `n` ranks with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
/// MASTER_ADDR=127.0.0.1 and a free MASTER_PORT in their environment, and waits for all of them. When
/// one fails (a status other than 0, or a signal), the others are stopped (SIGTERM, SIGKILL 10 s later)
/// and one line on stderr names it, unless the rank reported its own error (status 1 or 2). SIGINT and
/// SIGTERM to the launcher reach every rank. Returns 0 when every rank succeeded, else the failed rank's
/// status (128 + signal for a signal).
int launchLocalRanks(int n, const std::vector<std::string>& argv);

/// A TCP port on 127.0.0.1 that no one listens on now (the kernel's pick, released for rank 0's store).
int freeLocalPort();

/// Removes "--nproc N" / "--nproc=N" from argv[from..argc) and returns N (0 when absent). A value that is
/// not a whole number in [1, 1024] throws std::invalid_argument naming --nproc.
int takeNprocFlag(int& argc, char** argv, int from = 1);

}  // namespace robustlab
