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
  /// "gloo" (the only one in a CPU build; "auto" picks it).
  static std::shared_ptr<Communicator> connect(const RankInfo& info, std::chrono::milliseconds timeout, const std::string& backend = "auto");
  ~Communicator();

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
  /// Overwrites each tensor with rank `root`'s (in flat buckets, as allReduceSum).
  void broadcast(const std::vector<torch::Tensor>& tensors, int root = 0);
  void barrier();
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
  friend struct CollectiveTimer;
};

/// The process's group when it runs as one of several ranks (set once by the command line), else null.
std::shared_ptr<Communicator> worldCommunicator();
void setWorldCommunicator(std::shared_ptr<Communicator> comm);

}  // namespace robustlab
