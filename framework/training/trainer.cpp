#include "framework/training/trainer.h"

#include "framework/training/augment.h"
#include "framework/training/rank_batchnorm.h"

#include "data/h5io.h"
#include "framework/distributed/communicator.h"
#include "framework/runtime/progress.h"
#include "framework/runtime/runtime.h"

#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/sgd.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <stdexcept>

namespace robustlab {
namespace {

constexpr double kPi = 3.14159265358979323846;

double scheduledLr(const OptimizerOptions& o, int64_t epoch, int64_t epochs, int64_t step, int64_t stepsPerEpoch) {
  if (o.schedule == "constant") return o.lr;
  if (o.schedule == "cosine") {
    const double t = static_cast<double>(epoch * stepsPerEpoch + step) / static_cast<double>(epochs * stepsPerEpoch);
    return o.lr * 0.5 * (1.0 + std::cos(kPi * t));
  }
  // step
  int64_t drops = 0;
  if (o.stepEpochs > 0) drops = epoch / o.stepEpochs;
  else drops = (epoch >= epochs / 2 ? 1 : 0) + (epoch >= (3 * epochs) / 4 ? 1 : 0);
  return o.lr * std::pow(o.gamma, static_cast<double>(drops));
}

std::unique_ptr<torch::optim::Optimizer> makeOptimizer(const OptimizerOptions& o, std::vector<torch::Tensor> params) {
  if (o.name == "sgd")
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weightDecay));
  return std::make_unique<torch::optim::Adam>(
      params, torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weightDecay));
}

/// Scores `objective` on `val` without updating anything.
std::pair<double, double> validate(ClassifierImpl& model, TrainingObjective& objective, const Dataset& val, torch::Device device,
                                   int64_t batchSize, uint64_t seed, Communicator* comm) {
  const bool wasTraining = model.is_training();
  model.eval();
  objective.setTraining(false);
  double lossSum = 0;
  int64_t correct = 0, count = 0, n = 0;
  auto gen = makeGenerator(seed ^ 0x9e3779b97f4a7c15ULL);
  // Data-parallel: each rank scores its contiguous share of the examples; the sums are gathered below.
  const auto [first, last] = rankShare(comm, val.size());
  for (int64_t b = first; b < last; b += batchSize) {
    const int64_t e = std::min(b + batchSize, last);
    auto x = val.images.slice(0, b, e).to(device);
    auto y = val.labels.slice(0, b, e).to(device);
    if (objective.classifies()) {
      torch::NoGradGuard noGrad;
      auto logits = model.forward(x);
      lossSum += torch::nn::functional::cross_entropy(logits, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)).item<double>();
      correct += logits.argmax(1).eq(y).sum().item<int64_t>();
      count += e - b;
    } else {
      torch::NoGradGuard noGrad;
      auto out = objective.batch(model, x, y, gen);
      lossSum += out.loss.item<double>() * static_cast<double>(e - b);
      correct += out.correct;
      count += out.count;
    }
    n += e - b;
  }
  model.train(wasTraining);
  objective.setTraining(wasTraining);
  if (comm) {  // one sum; counts are exact in double
    const auto all = comm->sum(std::vector<double>{lossSum, static_cast<double>(correct), static_cast<double>(count), static_cast<double>(n)});
    lossSum = all[0];
    correct = static_cast<int64_t>(all[1]);
    count = static_cast<int64_t>(all[2]);
    n = static_cast<int64_t>(all[3]);
  }
  return {n ? lossSum / n : NAN, count ? static_cast<double>(correct) / count : NAN};
}

}  // namespace

void OptimizerOptions::validate() const {
  if (name != "sgd" && name != "adam") throw std::invalid_argument("optimizer: unknown optimizer '" + name + "', expected sgd or adam");
  if (!(lr > 0)) throw std::invalid_argument("lr: must be > 0");
  if (!(momentum >= 0 && momentum < 1)) throw std::invalid_argument("momentum: must be in [0, 1)");
  if (nesterov && momentum == 0) throw std::invalid_argument("nesterov: needs momentum > 0");
  if (!(weightDecay >= 0)) throw std::invalid_argument("weight_decay: must be >= 0");
  if (schedule != "constant" && schedule != "cosine" && schedule != "step")
    throw std::invalid_argument("schedule: unknown schedule '" + schedule + "', expected constant, cosine or step");
  if (!(gamma > 0 && gamma <= 1)) throw std::invalid_argument("gamma: must be in (0, 1]");
  if (stepEpochs < 0) throw std::invalid_argument("step_epochs: must be >= 0");
  if (!(clipGradNorm >= 0)) throw std::invalid_argument("clip_grad_norm: must be >= 0");
}

void TrainOptions::validate() const {
  if (epochs < 0) throw std::invalid_argument("epochs: must be >= 0, got " + std::to_string(epochs));
  if (batchSize <= 0) throw std::invalid_argument("batch_size: must be > 0, got " + std::to_string(batchSize));
  optim.validate();
}

namespace {

/// One optimiser step's loss sum over this rank's rows, and its counts.
struct StepTally {
  double lossSum = 0;
  int64_t correct = 0, count = 0;
};

/// One step on rows `idx` of the training set (the whole batch; a data-parallel rank computes its
/// shard of it). `gen` draws the batch's augmentation, alike on every rank; `objectiveGen` the
/// objective's random numbers (a rank's own stream when data-parallel, else `gen` itself).
StepTally trainStep(ClassifierImpl& model, TrainingObjective& objective, const Dataset& trainSet, const torch::Tensor& idx,
                    const TrainOptions& opt, torch::Device device, const std::vector<torch::Tensor>& params, at::Generator& gen,
                    at::Generator& objectiveGen, RankBatchStatistics* sync) {
  Communicator* comm = severalRanks(opt.comm);
  const int64_t rows = idx.size(0);
  const auto [first, last] = rankShare(comm, rows);
  const Shard shard{comm, first, last - first, rows};
  auto x = augmentBatch(trainSet.images.index_select(0, idx), opt.augment, opt.cropPadding, gen);
  auto y = trainSet.labels.index_select(0, idx);
  if (comm) {
    x = x.slice(0, shard.offset, shard.offset + shard.rows);
    y = y.slice(0, shard.offset, shard.offset + shard.rows);
  }
  objective.setShard(shard);
  if (sync) sync->setLossShare(shard.lossShare(false));  // until the objective says whether its loss is global
  BatchOutput out;
  {
    PrecisionGuard precision(opt.precision);
    out = objective.batch(model, x.to(device), y.to(device), objectiveGen);
    if (sync) sync->setLossShare(shard.lossShare(out.globalLoss));
    // Backpropagated without autocast, as autograd's backward is meant to run, but under the
    // guard: where oneDNN is held below AVX-512 it keeps bf16 off oneDNN, which then cannot
    // compute it ("could not create a primitive descriptor iterator" from the backward otherwise).
    if (!out.gradientsDone) {
      AutocastOff noAutocast;
      out.loss.backward();
    }
  }
  shard.reduceGradients(params, out.globalLoss);
  return {out.loss.item<double>() * static_cast<double>(shard.rows), out.correct, out.count};
}

/// What training changes besides the parameters: BatchNorm's running statistics (a TorchScript
/// model's buffers, all of them: its layers are inside the script).
std::vector<torch::Tensor> trainedStatistics(ClassifierImpl& model) {
  if (model.spec().arch == "torchscript") return model.buffers();
  std::vector<torch::Tensor> out;
  for (const auto& bn : batchNormLayers(model))
    for (const auto& b : bn->buffers()) out.push_back(b);
  return out;
}

/// Epoch sums over all ranks (loss sum, correct, count).
StepTally gathered(const StepTally& mine, Communicator* comm) {
  if (!comm) return mine;
  const auto all = comm->sum(std::vector<double>{mine.lossSum, static_cast<double>(mine.correct), static_cast<double>(mine.count)});
  return {all[0], static_cast<int64_t>(all[1]), static_cast<int64_t>(all[2])};
}

}  // namespace

TrainHistory train(ClassifierImpl& model, TrainingObjective& objective, const Dataset& trainSet, const Dataset& val,
                   const TrainOptions& opt, torch::Device device) {
  opt.validate();
  if (trainSet.size() == 0) throw std::invalid_argument("training set is empty");
  Communicator* comm = severalRanks(opt.comm);
  model.to(device);
  objective.to(device);
  if (opt.headOnly) model.freezeBackbone(true);
  std::vector<torch::Tensor> params;
  for (auto& p : model.parameters())
    if (p.requires_grad()) params.push_back(p);
  for (auto& p : objective.extraParameters()) params.push_back(p);
  // Every rank starts from rank 0's weights and statistics (already equal when seeded alike).
  if (comm) {
    auto start = model.parameters();
    for (const auto& t : model.buffers()) start.push_back(t);
    for (const auto& t : objective.extraParameters()) start.push_back(t);
    comm->broadcast(start);
  }
  if (opt.syncBatchNorm && model.spec().arch == "torchscript")
    throw std::invalid_argument("sync_batchnorm: not available for a TorchScript model (its BatchNorm layers are inside the script)");
  const BatchNormSyncGuard synced(model, comm && opt.syncBatchNorm ? std::make_shared<RankBatchStatistics>(*comm) : nullptr);
  // Per-rank BatchNorm: rank 0's running statistics are copied to the others after each step. Synced,
  // every rank computes the same ones from the same sums.
  const std::vector<torch::Tensor> statistics = comm && !synced.get() ? trainedStatistics(model) : std::vector<torch::Tensor>{};
  auto optimizer = makeOptimizer(opt.optim, params);
  auto gen = makeGenerator(opt.seed);
  // A data-parallel rank's objective draws (random starts, views) from its own stream: the same
  // numbers on two ranks would correlate their shards' noise.
  auto rankGen = makeGenerator(opt.seed ^ (0x2545f4914f6cdd1dULL * static_cast<uint64_t>(comm ? comm->rank() + 1 : 0)));
  at::Generator& objectiveGen = comm ? rankGen : gen;
  const int64_t n = trainSet.size();
  const int64_t stepsPerEpoch = (n + opt.batchSize - 1) / opt.batchSize;
  TrainHistory history;
  Progress progress(opt.label, opt.epochs * n);
  for (int64_t epoch = 0; epoch < opt.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    const double comm0 = comm ? comm->collectiveSeconds() : 0;
    model.train();
    if (opt.headOnly) model.backbone()->eval();
    if (opt.freezeBatchNorm)
      for (auto& bn : batchNormLayers(model)) bn->eval();
    objective.setTraining(true);
    objective.startEpoch(epoch);
    auto perm = torch::randperm(n, gen, torch::kInt64);
    double lr = opt.optim.lr;
    StepTally sum;
    for (int64_t s = 0; s < stepsPerEpoch; ++s) {
      auto idx = perm.slice(0, s * opt.batchSize, std::min(n, (s + 1) * opt.batchSize));
      // A last batch with fewer examples than ranks would leave a rank without rows: skipped on every rank.
      if (comm && idx.size(0) < comm->size()) continue;
      lr = scheduledLr(opt.optim, epoch, opt.epochs, s, stepsPerEpoch);
      for (auto& g : optimizer->param_groups()) g.options().set_lr(lr);
      optimizer->zero_grad();
      const StepTally step = trainStep(model, objective, trainSet, idx, opt, device, params, gen, objectiveGen, synced.get());
      if (opt.optim.clipGradNorm > 0) torch::nn::utils::clip_grad_norm_(params, opt.optim.clipGradNorm);
      optimizer->step();
      objective.afterStep(model);
      if (comm) comm->broadcast(statistics);
      sum.lossSum += step.lossSum;
      sum.correct += step.correct;
      sum.count += step.count;
      char status[96];
      std::snprintf(status, sizeof status, "epoch %lld/%lld loss %.4f", static_cast<long long>(epoch + 1), static_cast<long long>(opt.epochs),
                    sum.lossSum / static_cast<double>(std::min(n, (s + 1) * opt.batchSize)) * (comm ? comm->size() : 1));
      progress.advance(idx.size(0), status);
    }
    const StepTally all = gathered(sum, comm);
    EpochRecord rec;
    rec.epoch = epoch + 1;
    rec.lr = lr;
    rec.loss = all.lossSum / static_cast<double>(n);
    rec.accuracy = all.count ? static_cast<double>(all.correct) / static_cast<double>(all.count) : NAN;
    objective.endEpoch(model, val.size() > 0 ? val : trainSet, rec);
    if (val.size() > 0) std::tie(rec.valLoss, rec.valAccuracy) = validate(model, objective, val, device, 1000, opt.seed + epoch, comm);
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (comm) rec.commSeconds = comm->collectiveSeconds() - comm0;
    history.push_back(rec);
  }
  progress.finish();
  objective.finish(model);
  if (opt.headOnly) model.freezeBackbone(false);
  model.eval();
  return history;
}

TrainHistory trainLpFt(ClassifierImpl& model, TrainingObjective& objective, const Dataset& trainSet, const Dataset& val,
                       const TrainOptions& options, const LpFtOptions& probe, torch::Device device) {
  if (probe.probeEpochs < 0) throw std::invalid_argument("probe_epochs: must be >= 0");
  if (!(probe.probeLr > 0)) throw std::invalid_argument("probe_lr: must be > 0");
  TrainOptions first = options;
  first.headOnly = true;
  first.epochs = probe.probeEpochs;
  first.optim.lr = probe.probeLr;
  first.label = options.label + " (probe)";
  TrainHistory history = train(model, objective, trainSet, val, first, device);
  TrainOptions second = options;
  second.headOnly = false;
  // Another stream of random numbers than the probe's: the same batches again would be a choice, not a default.
  second.seed = options.seed + 0x51ed;
  for (auto rec : train(model, objective, trainSet, val, second, device)) {
    rec.epoch += probe.probeEpochs;
    history.push_back(rec);
  }
  return history;
}

void writeHistory(H5File& f, const std::string& group, const TrainHistory& h) {
  auto column = [&](auto getter) {
    std::vector<double> v;
    for (const auto& r : h) v.push_back(getter(r));
    return torch::tensor(v, torch::kFloat64);
  };
  f.createGroup(group);
  f.writeTensor(group + "/epoch", column([](const EpochRecord& r) { return static_cast<double>(r.epoch); }));
  f.writeTensor(group + "/lr", column([](const EpochRecord& r) { return r.lr; }));
  f.writeTensor(group + "/loss", column([](const EpochRecord& r) { return r.loss; }));
  f.writeTensor(group + "/accuracy", column([](const EpochRecord& r) { return r.accuracy; }));
  f.writeTensor(group + "/val_loss", column([](const EpochRecord& r) { return r.valLoss; }));
  f.writeTensor(group + "/val_accuracy", column([](const EpochRecord& r) { return r.valAccuracy; }));
  f.writeTensor(group + "/seconds", column([](const EpochRecord& r) { return r.seconds; }));
  // Only histories trained as several ranks hold comm_seconds, only those with a check its columns, so
  // other results files keep their layout.
  if (std::any_of(h.begin(), h.end(), [](const EpochRecord& r) { return std::isfinite(r.commSeconds); }))
    f.writeTensor(group + "/comm_seconds", column([](const EpochRecord& r) { return r.commSeconds; }));
  if (std::none_of(h.begin(), h.end(), [](const EpochRecord& r) { return std::isfinite(r.pgdCheck); })) return;
  f.writeTensor(group + "/pgd_check", column([](const EpochRecord& r) { return r.pgdCheck; }));
  f.writeTensor(group + "/overfitting", column([](const EpochRecord& r) { return r.overfitting ? 1.0 : 0.0; }));
}

}  // namespace robustlab
