#pragma once
// sync_batchnorm: the model's BatchNorm layers normalise with the whole data-parallel batch's
// statistics (PyTorch's SyncBatchNorm), summed over the ranks by c10d collectives that autograd
// differentiates: the backward pass sums the statistics' gradients over the ranks in turn.
#include "framework/models/batchnorm.h"

#include <memory>

namespace robustlab {

class Communicator;

class RankBatchStatistics : public BatchStatisticsSum {
 public:
  explicit RankBatchStatistics(Communicator& comm) : comm_(comm) {}
  int rank() const override;
  int ranks() const override;
  torch::Tensor sum(const torch::Tensor& t) override;
  /// The share of the batch's loss this rank's loss stands for (Shard::lossShare): the backward sums
  /// the ranks' gradients of the statistics each scaled by its share, then divides by this rank's,
  /// since the trainer scales this rank's whole gradient by it.
  void setLossShare(double share) { share_ = share; }
  double lossShare() const { return share_; }
  Communicator& communicator() { return comm_; }

 private:
  Communicator& comm_;
  double share_ = 1;
};

/// Sets `sync` on the model's BatchNorm layers for the guard's lifetime (a training call).
class BatchNormSyncGuard {
 public:
  BatchNormSyncGuard(torch::nn::Module& model, std::shared_ptr<RankBatchStatistics> sync);
  ~BatchNormSyncGuard();
  BatchNormSyncGuard(const BatchNormSyncGuard&) = delete;
  BatchNormSyncGuard& operator=(const BatchNormSyncGuard&) = delete;
  /// Null when the guard syncs nothing (one process, or the option off).
  RankBatchStatistics* get() const { return sync_.get(); }

 private:
  torch::nn::Module& model_;
  std::shared_ptr<RankBatchStatistics> sync_;
};

}  // namespace robustlab
