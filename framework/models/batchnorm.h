#pragma once
// BatchNorm layers that can normalise with the statistics of a whole data-parallel batch (PyTorch's
// SyncBatchNorm). Every BatchNorm layer robustlab builds is one of these; alone (no BatchStatisticsSum
// set, the default) each is LibTorch's own BatchNorm1d/2d, the same computation bit for bit, with the
// same parameter and buffer names, so checkpoints and exported weights do not change.
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <ostream>

#include <torch/version.h>

// LibTorch 1.13 defines these in its library without exporting them, and a subclass's vtable names
// them: defined in batchnorm.cpp. LibTorch 2.x defines them in its header.
#if TORCH_VERSION_MAJOR < 2
#define ROBUSTLAB_BATCHNORM_PRINT_DEFINED_HERE 1
namespace torch::nn {
template <>
void BatchNormImplBase<1, BatchNorm1dImpl>::pretty_print(std::ostream& stream) const;
template <>
void BatchNormImplBase<2, BatchNorm2dImpl>::pretty_print(std::ostream& stream) const;
}  // namespace torch::nn
#endif

namespace robustlab {

/// Sums a tensor over the ranks of a data-parallel step, differentiably: every rank calls it in the same
/// order with a tensor of the same shape; the gradient of the sum goes back to every rank's input. Set
/// on the model's BatchNorm layers by the trainer (framework/training) when `sync_batchnorm` is on.
class BatchStatisticsSum {
 public:
  virtual ~BatchStatisticsSum() = default;
  virtual int rank() const = 0;
  virtual int ranks() const = 0;
  /// `t` summed over the ranks; its gradient, summed over the ranks, flows back into `t`.
  virtual torch::Tensor sum(const torch::Tensor& t) = 0;
};

/// Training-mode batch normalisation with statistics over every rank's rows: each rank's per-channel
/// count, mean and (biased) variance are summed into one table (each rank's row, zeros elsewhere), then
/// combined by Chan et al.'s pairwise formula in fp64 alike on every rank; the running statistics take the
/// whole batch's mean and unbiased variance, as one process given the whole batch would.
torch::Tensor normaliseAcrossRanks(const torch::Tensor& input, const torch::nn::BatchNormOptions& options, const torch::Tensor& weight,
                                   const torch::Tensor& bias, torch::Tensor& runningMean, torch::Tensor& runningVar,
                                   torch::Tensor& batchesTracked, BatchStatisticsSum& sum);

template <typename Base>
class SyncableBatchNorm : public Base {
 public:
  using Base::Base;
  torch::Tensor forward(const torch::Tensor& input) {
    // Eval mode with running statistics normalises each row alone: nothing to share.
    if (!sync_ || sync_->ranks() < 2 || !(this->is_training() || !this->options.track_running_stats())) return Base::forward(input);
    this->_check_input_dim(input);
    return normaliseAcrossRanks(input, this->options, this->weight, this->bias, this->running_mean, this->running_var,
                                this->num_batches_tracked, *sync_);
  }
  void setSync(std::shared_ptr<BatchStatisticsSum> sync) { sync_ = std::move(sync); }

 private:
  std::shared_ptr<BatchStatisticsSum> sync_;
};

using SyncableBatchNorm1dImpl = SyncableBatchNorm<torch::nn::BatchNorm1dImpl>;
using SyncableBatchNorm2dImpl = SyncableBatchNorm<torch::nn::BatchNorm2dImpl>;
TORCH_MODULE(SyncableBatchNorm1d);
TORCH_MODULE(SyncableBatchNorm2d);

/// Sets (or, with null, clears) `sync` on every syncable BatchNorm layer of `m`; returns how many there
/// are. A TorchScript model's layers are inside its script: none.
size_t setBatchNormSync(torch::nn::Module& m, const std::shared_ptr<BatchStatisticsSum>& sync);

}  // namespace robustlab
