#include "framework/training/rank_batchnorm.h"

#include "framework/distributed/communicator.h"

#include <torch/autograd.h>

#include <cstdint>

namespace robustlab {
namespace {

/// The sum over the ranks as an autograd function: forward sums the values, backward the gradients
/// (each rank's loss depends on every rank's input through the sum).
struct RankSum : torch::autograd::Function<RankSum> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& t, RankBatchStatistics* owner) {
    ctx->saved_data["owner"] = reinterpret_cast<int64_t>(owner);
    auto out = t.detach().contiguous().clone();
    owner->communicator().allReduceSum({out});
    return out;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::tensor_list grads) {
    auto* owner = reinterpret_cast<RankBatchStatistics*>(ctx->saved_data["owner"].toInt());
    const double share = owner->lossShare();
    auto g = grads[0].contiguous().clone();
    if (share != 1) g.mul_(share);
    owner->communicator().allReduceSum({g});
    if (share != 1) g.div_(share);
    return {g, torch::Tensor()};
  }
};

}  // namespace

int RankBatchStatistics::rank() const { return comm_.rank(); }
int RankBatchStatistics::ranks() const { return comm_.size(); }
torch::Tensor RankBatchStatistics::sum(const torch::Tensor& t) { return RankSum::apply(t, this); }

BatchNormSyncGuard::BatchNormSyncGuard(torch::nn::Module& model, std::shared_ptr<RankBatchStatistics> sync)
    : model_(model), sync_(std::move(sync)) {
  if (sync_) setBatchNormSync(model_, sync_);
}

BatchNormSyncGuard::~BatchNormSyncGuard() {
  if (sync_) setBatchNormSync(model_, nullptr);
}

}  // namespace robustlab
