#pragma once
// The ranks of one data-parallel job exchanging tensors: a c10d process group (Gloo on CPU) met
// through c10d's TCPStore on rank 0's host. Every call is collective: every rank makes it, in the
// same order, with tensors of the same shapes (allGather: the same trailing shape).
#include "framework/distributed/rank_info.h"

#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace robustlab {

/// A collective failed: a peer died, hung past the timeout, or answered something else.
struct PeerFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Communicator {
 public:
  /// Meets the other ranks of `info` (rank 0 hosts the store) within `timeout`, which also bounds every
  /// later collective: a rank that dies or hangs makes the others throw PeerFailure within it. `backend`:
  /// "gloo" (every tensor; the only one in a CPU build), "nccl" (CUDA tensors through NCCL, one GPU per
  /// rank, device LOCAL_RANK; CPU tensors through Gloo; needs a build with ROBUSTLAB_NCCL) or "auto"
  /// (NCCL where built and every rank on the host has a GPU of its own, else Gloo).
  static std::shared_ptr<Communicator> connect(const RankInfo& info, std::chrono::milliseconds timeout, const std::string& backend = "auto");
  ~Communicator();
  /// Throws std::invalid_argument (one line naming ROBUSTLAB_DIST_BACKEND) when `backend` is unknown or
  /// cannot be had here for `ranksOnHost` ranks on this host; connect() checks it too.
  static void checkBackend(const std::string& backend, int ranksOnHost);

  int rank() const { return info_.rank; }
  int size() const { return info_.worldSize; }
  const RankInfo& info() const { return info_; }

  /// Sums each tensor over the ranks, in place. The tensors travel in flat buckets of at most
  /// kBucketBytes (one collective per bucket instead of one per tensor); Gloo's ring sums them in an
  /// order fixed by the number of ranks, so a rerun with as many ranks sums alike, bit for bit.
  void allReduceSum(const std::vector<torch::Tensor>& tensors);
  static constexpr int64_t kBucketBytes = 25 << 20;  ///< PyTorch DDP's default bucket size
  /// Every rank's `t` (rows may differ in number, trailing shape and dtype may not), concatenated
  /// along dim 0 in rank order; `rowsPerRank` (may be null) receives each rank's row count.
  torch::Tensor allGather(const torch::Tensor& t, std::vector<int64_t>* rowsPerRank = nullptr);
  /// Each value summed over the ranks (counts and sums of an epoch, an evaluation): in double, or in
  /// int64 for counts that must stay exact.
  template <typename T>
  std::vector<T> sum(const std::vector<T>& values) {
    using Wide = std::conditional_t<std::is_integral<T>::value, int64_t, double>;
    // The dtype given: torch::tensor of doubles is float32 otherwise (the default dtype).
    auto t = torch::tensor(std::vector<Wide>(values.begin(), values.end()), torch::TensorOptions().dtype(c10::CppTypeToScalarType<Wide>::value));
    allReduceSum({t});
    const Wide* p = t.template data_ptr<Wide>();
    return std::vector<T>(p, p + t.numel());
  }
  /// Overwrites each tensor with rank `root`'s (in flat buckets, as allReduceSum).
  void broadcast(const std::vector<torch::Tensor>& tensors, int root = 0);
  void barrier();
  /// How long a rank polls a collective, yielding its CPU, before it sleeps on it. Waking a sleeping
  /// process took longer on a 2-vCPU VM than the small CNN's whole gradient sum (BENCHMARKS.md,
  /// "waiting for a collective"). Polling pays only while each compute thread of this host's ranks has a
  /// CPU of its own, so the default (kPollAuto) polls up to kPollLimit when ranksSharingCpus x
  /// at::get_num_threads() <= the CPUs this process may run on, and sleeps at once when they share CPUs,
  /// as Open MPI does when oversubscribed. Zero: always sleep; positive: poll that long whatever the load.
  void setPollLimit(std::chrono::microseconds limit) { pollLimit_ = limit; }
  static constexpr std::chrono::microseconds kPollAuto{-1};
  static constexpr std::chrono::microseconds kPollLimit{20000};
  /// The poll limit for the next collective (kPollAuto resolved against the present thread count).
  std::chrono::microseconds pollLimit() const;
  /// Seconds this rank has spent in collectives so far (waiting for slower ranks included).
  double collectiveSeconds() const { return collectiveSeconds_; }
  /// Throws std::invalid_argument naming the first rank whose `value` differs from rank 0's (`what`
  /// names it in the message: "config").
  void checkSame(const std::string& what, const std::string& value);

 private:
  Communicator() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  RankInfo info_;
  double collectiveSeconds_ = 0;
  std::chrono::microseconds pollLimit_ = kPollAuto;
  friend struct CollectiveTimer;
};

/// Communicator::pollLimit's default rule: kPollLimit while `localRanks` x `threadsPerRank` compute
/// threads fit in `cpus`, else zero (sleep at once).
std::chrono::microseconds defaultPollLimit(int localRanks, int threadsPerRank, int cpus);

/// How many of this host's ranks share the `cpus` this process may run on (usableCores()): all of them
/// (localWorldSize), unless a launcher bound each rank to CPUs of its own (srun's binding: the process
/// may run on fewer CPUs than the machine has), then 1.
int ranksSharingCpus(const RankInfo& info, int cpus);

/// `comm` when it joins several ranks, else null (no group, or a group of one): the one test of
/// "this work is data-parallel".
Communicator* severalRanks(const std::shared_ptr<Communicator>& comm);

/// Rows [first, last) of `n` that this rank takes when they are split into contiguous shares in rank
/// order (shares differ by at most one row); [0, n) without several ranks.
std::pair<int64_t, int64_t> rankShare(const Communicator* comm, int64_t n);

/// The process's group when it runs as one of several ranks (set once by the command line), else null.
std::shared_ptr<Communicator> worldCommunicator();
void setWorldCommunicator(std::shared_ptr<Communicator> comm);

}  // namespace robustlab
