// sync_batchnorm: BatchNorm over the whole data-parallel batch. Alone, robustlab's BatchNorm layers are
// LibTorch's bit for bit; on two ranks they normalise, backpropagate and keep running statistics as one
// process's BatchNorm given the whole batch; the trainer's option keeps the ranks' weights and
// statistics equal bit for bit without copying them, run to run.
#include "fixtures.h"
#include "ranks.h"
#include "tiny_experiment.h"
#include "tolerance.h"

#include "experiments/plan/plan.h"
#include "framework/config/config.h"

#include "framework/models/batchnorm.h"
#include "framework/training/rank_batchnorm.h"
#include "framework/training/registry.h"
#include "framework/training/trainer.h"

#include <torch/autograd.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace robustlab;

namespace {

constexpr double kUnitFp64 = 0x1p-53;

/// The conditioning of a BatchNorm's statistics on `x` (N x C x ...): the two-pass variance of values
/// that sit up to max|x - mean| from a mean of magnitude |mean| loses relatively (|mean| + max|x -
/// mean|)^2 / var times the summation error (Higham §1.9); the largest over the channels, plus one.
double conditioning(const torch::Tensor& x) {
  const auto flat = x.transpose(0, 1).reshape({x.size(1), -1}).to(torch::kFloat64);
  const auto mean = flat.mean(1, true), var = flat.var(1, /*unbiased=*/false, true);
  return 1 + ((mean.abs() + (flat - mean).abs().amax(1, true)).square() / var).max().item<double>();
}

/// |a - b| <= bound * max|reference|, elementwise, with `what` in the failure's report.
void checkWithin(const torch::Tensor& a, const torch::Tensor& b, double bound, const std::string& what) {
  const auto diff = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
  const double limit = bound * b.abs().max().item<double>();
  INFO(what << ": largest difference " << diff << ", bound " << limit);
  CHECK(diff <= limit);
}

}  // namespace

TEST_CASE("BatchNorm layers alone are LibTorch's own: the same outputs, gradients and running statistics bit for bit",
          "[distributed]") {
  torch::manual_seed(2);
  const auto x = torch::randn({8, 4, 5, 5}) * 2 + 1;
  SyncableBatchNorm2d mine(4);
  torch::nn::BatchNorm2d theirs(4);
  for (auto* bn : {&mine->weight, &theirs->weight}) bn->data().copy_(torch::linspace(0.5, 2, 4));
  for (int step = 0; step < 3; ++step) {
    auto a = x.add(step).requires_grad_(true), b = x.add(step).requires_grad_(true);
    const auto ya = mine->forward(a), yb = theirs->forward(b);
    CHECK(torch::equal(ya, yb));
    (ya * x).sum().backward();
    (yb * x).sum().backward();
    CHECK(torch::equal(a.grad(), b.grad()));
  }
  CHECK(torch::equal(mine->weight.grad(), theirs->weight.grad()));
  CHECK(torch::equal(mine->running_mean, theirs->running_mean));
  CHECK(torch::equal(mine->running_var, theirs->running_var));
  CHECK(torch::equal(mine->num_batches_tracked, theirs->num_batches_tracked));
  Classifier cnn(test::smallCnn(10, /*batchNorm=*/true));
  CHECK(setBatchNormSync(*cnn, nullptr) == 2);  // every BatchNorm layer robustlab builds can be synced
}

TEST_CASE("sync_batchnorm on two uneven shards: one process's BatchNorm on the whole batch, forward and backward, within the fp64 "
          "summation bound",
          "[distributed]") {
  // In fp64 both sides compute the same function of the same numbers; they differ only in the order of
  // their sums. Per channel, the longest chain of roundings any result passes through: the mean (n H W
  // terms), the squared deviations (n H W more), the ranks' table (2 terms), and in the backward the
  // sums of dy and dy x_hat over the batch (2 n H W), plus fewer than 32 elementwise operations: m =
  // 4 n H W + 34. Each side is within gamma_m times the result's magnitude, times the statistics'
  // conditioning, of the exact result (first order; Higham, 2nd ed., §3.1 and §1.9); so the two are
  // within twice that of each other.
  torch::manual_seed(5);
  const int64_t n = 13, channels = 3, side = 5;  // 13 rows: shards of 7 and 6, loss shares 7/13 and 6/13
  const auto x = torch::randn({n, channels, side, side}, torch::kFloat64) * 3 + 2;
  const auto probe = torch::randn({n, channels, side, side}, torch::kFloat64);
  const auto weight = torch::linspace(0.5, 2, channels, torch::kFloat64), bias = torch::linspace(-1, 1, channels, torch::kFloat64);
  auto layer = [&] {
    SyncableBatchNorm2d bn(channels);
    bn->to(torch::kFloat64);
    bn->weight.data().copy_(weight);
    bn->bias.data().copy_(bias);
    return bn;
  };
  // The trainer's loss: the mean over the rows of sum(y * probe).
  auto whole = layer();
  auto xr = x.clone().requires_grad_(true);
  const auto yr = whole->forward(xr);
  ((yr * probe).sum() / n).backward();
  std::vector<torch::Tensor> ys(2), xGrads(2), wGrads(2), bGrads(2), means(2), vars(2), alone(2);
  test::onRanks(2, [&](Communicator& comm) {
    const int r = comm.rank();
    const auto [a, b] = rankShare(&comm, n);
    auto bn = layer();
    auto sync = std::make_shared<RankBatchStatistics>(comm);
    REQUIRE(setBatchNormSync(*bn, sync) == 1);
    const double share = static_cast<double>(b - a) / n;
    sync->setLossShare(share);
    auto xs = x.slice(0, a, b).clone().requires_grad_(true);
    const auto y = bn->forward(xs);
    ((y * probe.slice(0, a, b)).sum() / (b - a)).backward();
    // What the trainer does next: each rank's gradient scaled by its share, the ranks' summed.
    ys[r] = y.detach();
    xGrads[r] = xs.grad() * share;
    wGrads[r] = bn->weight.grad() * share;
    bGrads[r] = bn->bias.grad() * share;
    means[r] = bn->running_mean.clone();
    vars[r] = bn->running_var.clone();
    alone[r] = layer()->forward(x.slice(0, a, b));  // per-rank BatchNorm, for contrast
  });
  const double bound = 2 * test::gamma(4 * n * side * side + 34, kUnitFp64) * conditioning(x);
  checkWithin(torch::cat(ys), yr, bound, "output");
  checkWithin(torch::cat(xGrads), xr.grad(), bound, "input gradient");
  checkWithin(wGrads[0] + wGrads[1], whole->weight.grad(), bound, "weight gradient");
  checkWithin(bGrads[0] + bGrads[1], whole->bias.grad(), bound, "bias gradient");
  checkWithin(means[0], whole->running_mean, bound, "running mean");
  checkWithin(vars[0], whole->running_var, bound, "running variance");
  CHECK(torch::equal(means[0], means[1]));  // every rank the same statistics, bit for bit
  CHECK(torch::equal(vars[0], vars[1]));
  // Each rank's own statistics normalise differently: far outside the bound.
  CHECK((torch::cat(alone) - yr).abs().max().item<double>() > 1e6 * bound * yr.abs().max().item<double>());
}

TEST_CASE("Two-rank training with sync_batchnorm: the same weights and statistics on every rank, bit for bit, run to run",
          "[distributed]") {
  const Dataset data = test::fashionTrain().head(192);
  for (const std::string mode : {"standard", "pgd", "simclr"}) {
    auto run = [&](bool sync) {
      const auto weights = test::trainTwoRanks(mode, data, sync).weights;
      INFO(mode);
      // Synced, the ranks' running statistics are equal without rank 0's being copied.
      CHECK(test::sameTensors(weights[0], weights[1]));
      return weights[0];
    };
    const auto first = run(true), second = run(true), perRank = run(false);
    INFO(mode);
    CHECK(test::sameTensors(first, second));
    CHECK_FALSE(test::sameTensors(first, perRank));  // the option changes what is computed
  }
}

TEST_CASE("sync_batchnorm in the trainer: two ranks take one process's SGD steps on uneven shards, within the fp64 summation bound",
          "[distributed]") {
  // A fully connected network with BatchNorm1d, in fp64, two steps of 25 examples (shards of 13 and
  // 12). Each weight moves by lr times its gradient; the two gradients differ by the sums' order only.
  // The longest chain of roundings: the first layer's 784-term products, the BatchNorm's statistics
  // (2 x 25) and backward sums (2 x 25), the head's 32 terms and the batch sum of a weight's gradient
  // (25), plus fewer than 64 elementwise operations; gamma_m times the statistics' conditioning, times
  // the largest step, twice (two sides), plus a rounding of each weight per step.
  ModelSpec spec = test::smallCnn();
  LayerSpec fc{"fc"};
  fc.units = 32;
  spec.layers = {LayerSpec{"flatten"}, fc, LayerSpec{"bn"}, LayerSpec{"relu"}};
  Dataset data = test::fashionTrain().head(50);
  data.images = data.images.to(torch::kFloat64);
  TrainOptions opt;
  opt.epochs = 1;
  opt.batchSize = 25;
  opt.optim.lr = 0.1;
  opt.optim.momentum = 0;
  opt.optim.schedule = "constant";
  opt.augment = "none";
  opt.seed = 3;
  torch::manual_seed(4);
  std::vector<Classifier> models{Classifier(spec), Classifier(spec), Classifier(spec)};
  for (auto& m : models) m->to(torch::kFloat64);
  for (size_t i = 1; i < models.size(); ++i) {
    torch::NoGradGuard noGrad;
    const auto from = test::snapshot(*models[0]);
    auto to = models[i]->parameters();
    for (const auto& b : models[i]->buffers()) to.push_back(b);
    for (size_t k = 0; k < to.size(); ++k) to[k].copy_(from[k]);
  }
  const auto start = test::snapshot(*models[0]);
  REQUIRE_FALSE(models[0]->normalises());
  auto* linear = models[0]->backbone()->ptr(1)->as<torch::nn::LinearImpl>();
  const auto hidden = linear->forward(data.images.flatten(1)).detach();  // the BatchNorm's inputs at the start
  CrossEntropyObjective ce;
  train(*models[0], ce, data, Dataset{}, opt, torch::kCPU);
  test::onRanks(2, [&](Communicator& c) {
    CrossEntropyObjective objective;
    TrainOptions o = opt;
    o.comm = test::borrowed(c);
    o.syncBatchNorm = true;
    train(*models[1 + c.rank()], objective, data, Dataset{}, o, torch::kCPU);
  });
  const auto one = test::snapshot(*models[0]), rank0 = test::snapshot(*models[1]), rank1 = test::snapshot(*models[2]);
  CHECK(test::sameTensors(rank0, rank1));
  const double relative = 2 * test::gamma(784 + 4 * 25 + 32 + 25 + 64, kUnitFp64) * conditioning(hidden);
  // The first layer's bias (tensor 1) has an exact gradient of zero (BatchNorm takes any shift of its
  // input out): both sides hold rounding noise there, a vanishing step, compared with the weights'.
  const double weightsMoved = (one[0] - start[0]).abs().max().item<double>();
  CHECK((one[1] - start[1]).abs().max().item<double>() < 1e-3 * weightsMoved);
  CHECK((rank0[1] - start[1]).abs().max().item<double>() < 1e-3 * weightsMoved);
  for (size_t k = 0; k < one.size(); ++k) {
    if (k == 1) continue;
    const double moved = (one[k] - start[k]).abs().max().item<double>();
    const double limit = relative * moved + 2 * kUnitFp64 * one[k].abs().max().item<double>();
    const double diff = (one[k] - rank0[k]).abs().max().item<double>();
    INFO("tensor " << k << ": moved " << moved << ", largest difference " << diff << ", bound " << limit);
    CHECK(diff <= limit);
  }
}

TEST_CASE("sync_batchnorm joins a unit's key only when set: the pre-training's and the arms after it, or the arms' alone",
          "[distributed]") {
  auto plan = [](const std::string& pretrain, const std::string& finetune) {
    std::string text = test::kTinyConfig;
    text.replace(text.find("[pretrain]\n"), 11, "[pretrain]\n" + pretrain);
    text.replace(text.find("[finetune]\n"), 11, "[finetune]\n" + finetune);
    Config c = parseConfig(text, "<tiny>");
    c.output = test::tempDir("sync-keys") + "/a.h5";
    return makePlan(c, torch::kCPU);
  };
  const Plan plain = plan("", ""), off = plan("sync_batchnorm = false\n", "sync_batchnorm = false\n");
  const Plan pre = plan("sync_batchnorm = true\n", ""), fine = plan("", "sync_batchnorm = true\n");
  REQUIRE(plain.units.size() == pre.units.size());
  for (size_t i = 0; i < plain.units.size(); ++i) {
    const Unit& u = plain.units[i];
    INFO(u.name);
    CHECK(u.hash == off.units[i].hash);
    const bool afterPretraining = u.kind == Unit::Kind::kPretrain || u.pretrain >= 0;
    CHECK((u.hash != pre.units[i].hash) == afterPretraining);
    CHECK((u.hash != fine.units[i].hash) == (u.kind == Unit::Kind::kArm));
  }
}
