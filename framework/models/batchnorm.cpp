#include "framework/models/batchnorm.h"

#include <torch/nn/module.h>

#include <vector>

#ifdef ROBUSTLAB_BATCHNORM_PRINT_DEFINED_HERE
namespace torch::nn {
namespace {

template <size_t D>
void printBatchNorm(std::ostream& stream, const BatchNormOptions& o) {
  stream << std::boolalpha << "torch::nn::BatchNorm" << D << "d(" << o.num_features() << ", eps=" << o.eps() << ", momentum=";
  if (o.momentum()) stream << *o.momentum();
  else stream << "None";
  stream << ", affine=" << o.affine() << ", track_running_stats=" << o.track_running_stats() << ")";
}

}  // namespace

// LibTorch's own text (torch/csrc/api/src/nn/modules/batchnorm.cpp).
template <>
void BatchNormImplBase<1, BatchNorm1dImpl>::pretty_print(std::ostream& stream) const {
  printBatchNorm<1>(stream, options);
}
template <>
void BatchNormImplBase<2, BatchNorm2dImpl>::pretty_print(std::ostream& stream) const {
  printBatchNorm<2>(stream, options);
}

}  // namespace torch::nn
#endif

namespace robustlab {

torch::Tensor normaliseAcrossRanks(const torch::Tensor& input, const torch::nn::BatchNormOptions& options, const torch::Tensor& weight,
                                   const torch::Tensor& bias, torch::Tensor& runningMean, torch::Tensor& runningVar,
                                   torch::Tensor& batchesTracked, BatchStatisticsSum& sum) {
  // Statistics in fp32 at least (bf16 activations too: LibTorch's batch norm also accumulates in fp32).
  const auto work = input.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  const auto x = input.to(work);
  const int64_t channels = x.size(1);
  std::vector<int64_t> dims{0}, shape(static_cast<size_t>(x.dim()), 1);
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  shape[1] = channels;
  const double count = static_cast<double>(x.numel() / channels);
  // This rank's count, mean and biased variance (two passes), one row of a table of ranks x (1 + 2C).
  const auto mean = x.mean(dims);
  const auto var = (x - mean.view(shape)).square().mean(dims);
  const auto row = torch::cat({torch::full({1}, count, x.options().dtype(torch::kFloat64)), mean.to(torch::kFloat64), var.to(torch::kFloat64)});
  const int r = sum.rank(), n = sum.ranks();
  const auto zeros = [&](int64_t rows) { return torch::zeros({rows, row.size(0)}, row.options()); };
  const auto table = sum.sum(torch::cat({zeros(r), row.unsqueeze(0), zeros(n - r - 1)}));
  // The whole batch's statistics from the ranks' (Chan, Golub and LeVeque 1979): the same table and the
  // same operations on every rank, so the same bits.
  const auto counts = table.select(1, 0).unsqueeze(1);
  const auto means = table.slice(1, 1, 1 + channels), vars = table.slice(1, 1 + channels);
  const auto total = counts.sum();
  const auto globalMean = (counts * means).sum(0) / total;
  const auto globalVar = (counts * (vars + (means - globalMean).square())).sum(0) / total;
  auto y = (x - globalMean.to(work).view(shape)) * torch::rsqrt(globalVar.to(work) + options.eps()).view(shape);
  if (options.affine()) y = y * weight.to(work).view(shape) + bias.to(work).view(shape);
  if (options.track_running_stats() && runningMean.defined()) {
    torch::NoGradGuard noGrad;
    double factor = options.momentum() ? *options.momentum() : 0.0;
    if (batchesTracked.defined()) {
      batchesTracked += 1;
      if (!options.momentum()) factor = 1.0 / batchesTracked.item<double>();
    }
    const double all = total.item<double>();
    const auto unbiased = globalVar.detach() * (all / (all > 1 ? all - 1 : 1));
    runningMean.mul_(1 - factor).add_(globalMean.detach().to(runningMean.scalar_type()), factor);
    runningVar.mul_(1 - factor).add_(unbiased.to(runningVar.scalar_type()), factor);
  }
  return y.to(input.scalar_type());
}

size_t setBatchNormSync(torch::nn::Module& m, const std::shared_ptr<BatchStatisticsSum>& sync) {
  size_t n = 0;
  for (const auto& sub : m.modules(/*include_self=*/true)) {
    if (auto* bn = sub->as<SyncableBatchNorm2dImpl>()) bn->setSync(sync), ++n;
    else if (auto* bn1 = sub->as<SyncableBatchNorm1dImpl>()) bn1->setSync(sync), ++n;
  }
  return n;
}

}  // namespace robustlab
