// Data-parallel training on c10d: ranks read from the launchers' environments, the communicator's
// collectives, and the trainer's semantics (one process's step on the same global batch, the same
// weights on every rank, reruns bit for bit, SimCLR's negatives from the whole batch). Ranks here are
// threads of this process, each with its own Gloo process group, met through a real TCPStore.
#include "fixtures.h"
#include "ranks.h"
#include "tolerance.h"

#include "framework/distributed/communicator.h"
#include "framework/distributed/launcher.h"
#include "framework/runtime/runtime.h"
#include "framework/training/contrastive.h"
#include "framework/training/registry.h"
#include "framework/training/trainer.h"

#include <torch/autograd.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <exception>
#include <sched.h>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

using namespace robustlab;

namespace {

void copyWeights(ClassifierImpl& to, ClassifierImpl& from) {
  torch::NoGradGuard noGrad;
  auto a = to.parameters(), b = from.parameters();
  for (size_t i = 0; i < a.size(); ++i) a[i].copy_(b[i]);
  auto c = to.buffers(), d = from.buffers();
  for (size_t i = 0; i < c.size(); ++i) c[i].copy_(d[i]);
}

/// For every parameter of the small CNN at its current weights on batch (x, y): the sum of the
/// magnitudes of the products its mean-loss gradient adds up (S of Higham's bound), and how many
/// roundings any one of them passes through (n of gamma_n): the layer's batch x positions reduction
/// plus the reductions of the layers above it that made its output gradient.
std::map<std::string, std::pair<torch::Tensor, int64_t>> gradientMagnitudes(ClassifierImpl& model, const torch::Tensor& x,
                                                                           const torch::Tensor& y) {
  REQUIRE(!model.normalises());
  std::vector<std::pair<std::string, torch::nn::Module*>> layers;
  std::vector<torch::Tensor> inputs, outputs;
  auto h = x;
  int64_t i = 0;
  auto keep = [&](const std::string& name, torch::nn::Module* m, const torch::Tensor& in, torch::Tensor out) {
    out.retain_grad();
    layers.emplace_back(name, m);
    inputs.push_back(in.detach());
    outputs.push_back(out);
    return out;
  };
  for (auto& m : *model.backbone()) {
    const std::string name = "backbone." + std::to_string(i++);
    auto* conv = m.ptr()->as<torch::nn::Conv2d>();
    auto* linear = m.ptr()->as<torch::nn::Linear>();
    h = conv || linear ? keep(name, m.ptr().get(), h, m.forward(h)) : m.forward(h);
  }
  h = keep("head", model.head().ptr().get(), h, model.head()->forward(h));
  torch::nn::functional::cross_entropy(h, y).backward();
  std::map<std::string, std::pair<torch::Tensor, int64_t>> out;
  int64_t above = 0;  // reduction lengths of the layers above, accumulated from the head down
  for (int64_t k = static_cast<int64_t>(layers.size()) - 1; k >= 0; --k) {
    auto& [name, m] = layers[k];
    // The layer is linear in its weights: d/dW sum(layer(|a|) * |delta|) is the sum over the batch and
    // positions of |a| |delta| products, exactly the terms the weight gradient adds up (bias: |delta|).
    const auto delta = outputs[k].grad().abs();
    auto* conv = m->as<torch::nn::Conv2d>();
    auto* linear = m->as<torch::nn::Linear>();
    const auto z = conv ? conv->forward(inputs[k].abs()) : linear->forward(inputs[k].abs());
    const auto w = conv ? conv->weight : linear->weight;
    const auto b = conv ? conv->bias : linear->bias;
    const auto g = torch::autograd::grad({(z * delta).sum()}, {w, b});
    const int64_t positions = z.numel() / (z.size(0) * z.size(1));
    const int64_t n = x.size(0) * positions + above;
    out[name + ".weight"] = {g[0], n};
    out[name + ".bias"] = {g[1], n};
    above += w.numel() / w.size(0);
  }
  model.zero_grad();
  return out;
}

}  // namespace

TEST_CASE("Ranks come from torchrun's variables, else from an srun step's, else one process", "[distributed]") {
  auto table = [](std::map<std::string, std::string> vars) {
    return [vars = std::move(vars)](const char* name) -> const char* {
      const auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  };
  const RankInfo alone = rankInfoFromEnvironment(table({}));
  CHECK_FALSE(alone.distributed());
  const RankInfo t = rankInfoFromEnvironment(table({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                                                    {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29400"}}));
  CHECK(t.launcher == "torchrun");
  CHECK((t.rank == 3 && t.worldSize == 4 && t.localRank == 1 && t.localWorldSize == 2 && t.masterAddr == "node7" && t.masterPort == 29400));
  const RankInfo s = rankInfoFromEnvironment(table({{"SLURM_STEP_NUM_TASKS", "4"}, {"SLURM_PROCID", "2"}, {"SLURM_LOCALID", "0"},
                                                    {"SLURM_STEP_NODELIST", "gpu[07-08],cpu1"}, {"SLURM_STEP_TASKS_PER_NODE", "2(x2)"},
                                                    {"SLURM_JOB_ID", "1234"}, {"SLURM_STEP_ID", "0"}}));
  CHECK(s.launcher == "slurm");
  CHECK((s.rank == 2 && s.worldSize == 4 && s.localWorldSize == 2 && s.masterAddr == "gpu07"));
  CHECK((s.masterPort >= 20000 && s.masterPort < 40000));
  // A one-task step (and the batch script's own environment) is one process.
  CHECK_FALSE(rankInfoFromEnvironment(table({{"SLURM_STEP_NUM_TASKS", "1"}, {"SLURM_PROCID", "0"}})).distributed());
  CHECK(firstSlurmHost("node1") == "node1");
  CHECK(firstSlurmHost("n[003-005,9]x,m2") == "n003x");
  CHECK_THROWS_WITH(rankInfoFromEnvironment(table({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}})),
                    Catch::Contains("RANK='2'") && Catch::Contains("[0, 1]"));
  CHECK_THROWS_WITH(rankInfoFromEnvironment(table({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "29500"}})), Catch::Contains("MASTER_ADDR"));
  // The ranks' own settings: defaults, values, and a malformed one named.
  const DistSettings unset = distSettingsFromEnvironment(table({}));
  CHECK((unset.backend == "auto" && unset.timeoutSeconds == 300 && unset.pollMicros == -1));
  const DistSettings set = distSettingsFromEnvironment(
      table({{"ROBUSTLAB_DIST_BACKEND", "gloo"}, {"ROBUSTLAB_DIST_TIMEOUT", "5"}, {"ROBUSTLAB_DIST_POLL_US", "0"}}));
  CHECK((set.backend == "gloo" && set.timeoutSeconds == 5 && set.pollMicros == 0));
  CHECK_THROWS_WITH(distSettingsFromEnvironment(table({{"ROBUSTLAB_DIST_TIMEOUT", "0"}})),
                    Catch::Contains("ROBUSTLAB_DIST_TIMEOUT='0'") && Catch::Contains(">= 1"));
  CHECK_THROWS_WITH(distSettingsFromEnvironment(table({{"ROBUSTLAB_DIST_POLL_US", "soon"}})),
                    Catch::Contains("ROBUSTLAB_DIST_POLL_US='soon'") && Catch::Contains(">= 0"));
}

TEST_CASE("A MASTER_ADDR that no resolver knows is one line at once, not a wait until the timeout", "[distributed]") {
  CHECK(unresolvableHost("127.0.0.1").empty());
  CHECK(unresolvableHost("localhost").empty());
  // .invalid is reserved never to resolve (RFC 6761).
  const std::string why = unresolvableHost("no-such-host.invalid");
  if (why.empty()) WARN("this resolver does not answer for no-such-host.invalid (no DNS?): the fast refusal is not tested here");
  if (why.empty()) return;
  RankInfo info;
  info.rank = 1;
  info.worldSize = 2;
  info.masterAddr = "no-such-host.invalid";
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(Communicator::connect(info, std::chrono::seconds(60)),
                    Catch::Contains("rank 1 of 2: MASTER_ADDR 'no-such-host.invalid'") && Catch::Contains("cannot be resolved here (" + why + ")"));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30));  // not the 60 s timeout
}

TEST_CASE("--nproc is taken out of the command line; a bad count is one error naming it", "[distributed]") {
  std::vector<std::string> words{"robustlab", "train", "--nproc", "2", "-q", "--nproc=3"};
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  int argc = static_cast<int>(argv.size());
  CHECK(takeNprocFlag(argc, argv.data(), 2) == 3);
  REQUIRE(argc == 3);
  CHECK(std::string(argv[2]) == "-q");
  std::string bad = "--nproc=two";
  char* one[] = {words[0].data(), words[1].data(), bad.data()};
  int n = 3;
  CHECK_THROWS_WITH(takeNprocFlag(n, one, 2), Catch::Contains("--nproc: 'two'"));
}

TEST_CASE("Collectives over two ranks: bucketed sums, uneven gathers, broadcasts, a config check naming the rank", "[distributed]") {
  test::onRanks(2, [](Communicator& c) {
    const float r = static_cast<float>(c.rank());
    // Three tensors, one past the bucket size, so a sum takes several buckets.
    std::vector<torch::Tensor> t{torch::full({3}, r + 1), torch::full({Communicator::kBucketBytes / 4 + 5}, 2 * r), torch::full({2, 2}, r)};
    c.allReduceSum(t);
    CHECK(torch::equal(t[0], torch::full({3}, 3.0f)));
    CHECK(torch::equal(t[1], torch::full({Communicator::kBucketBytes / 4 + 5}, 2.0f)));
    CHECK(torch::equal(t[2], torch::full({2, 2}, 1.0f)));
    std::vector<int64_t> rows;
    const auto g = c.allGather(torch::full({c.rank() + 1, 2}, r), &rows);  // 1 row from rank 0, 2 from rank 1
    CHECK(rows == std::vector<int64_t>{1, 2});
    CHECK(torch::equal(g, torch::tensor({0.f, 0.f, 1.f, 1.f, 1.f, 1.f}).view({3, 2})));
    auto b = torch::full({4}, r + 5);
    c.broadcast({b}, 0);
    CHECK(torch::equal(b, torch::full({4}, 5.0f)));
    CHECK_NOTHROW(c.checkSame("config", "a = 1"));
    CHECK_THROWS_WITH(c.checkSame("config", c.rank() == 0 ? "a = 1" : "a = 2"), Catch::Contains("rank 1's config differs from rank 0's"));
  });
}

TEST_CASE("A collective is polled only while every rank's threads have a CPU, and ends alike polled, slept on or late",
          "[distributed]") {
  using std::chrono::microseconds;
  CHECK(defaultPollLimit(2, 1, 2) == Communicator::kPollLimit);  // --nproc 2 x 1 thread on 2 CPUs
  CHECK(defaultPollLimit(1, 2, 2) == Communicator::kPollLimit);
  CHECK(defaultPollLimit(2, 2, 2) == microseconds(0));  // oversubscribed: sleep at once
  CHECK(defaultPollLimit(4, 1, 2) == microseconds(0));
  CHECK(defaultPollLimit(2, 1, 1) == microseconds(0));  // two ranks on one CPU
  // Ranks share this host's CPUs unless a launcher bound each to its own (srun): then a rank counts alone.
  RankInfo two;
  two.worldSize = two.localWorldSize = 2;
  if (std::thread::hardware_concurrency() >= 2) {
    std::thread([&] {
      CHECK(ranksSharingCpus(two, usableCores()) == 2);
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(sched_getcpu(), &one);
      REQUIRE(sched_setaffinity(0, sizeof one, &one) == 0);  // this thread only
      CHECK(usableCores() == 1);
      CHECK(ranksSharingCpus(two, usableCores()) == 1);
    }).join();
  }
  // The same sums whether a rank polls, sleeps at once, or polls past its limit because the other
  // rank comes 100 ms late (then sleeps until it does).
  for (const auto poll : {microseconds(0), microseconds(1000), microseconds(500000)}) {
    test::onRanks(2, [&](Communicator& c) {
      c.setPollLimit(poll);
      CHECK(c.pollLimit() == poll);
      if (c.rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::vector<torch::Tensor> t{torch::full({5}, static_cast<double>(c.rank()) + 0.25, torch::kFloat64)};
      c.allReduceSum(t);
      CHECK(torch::equal(t[0], torch::full({5}, 1.5, torch::kFloat64)));
      CHECK(c.sum(std::vector<int64_t>{c.rank() + 1}) == std::vector<int64_t>{3});
      c.barrier();
    });
  }
}

TEST_CASE("Two ranks take one process's optimiser step on the same global batch, step by step, within the fp32 summation bound",
          "[distributed]") {
  // The small CNN has no BatchNorm and no dropout: a rank's rows are independent of the others', so the
  // two ranks' summed gradients and one process's are the same sums of the same products, added in
  // another order. Two fp32 sums of the same n terms differ by at most 2 gamma_n S, S the sum of the
  // terms' magnitudes (Higham, 2nd ed., §3.1; tests/tolerance.h); an SGD step moves a weight by lr
  // times the gradient, then rounds it once more: at most one unit in the last place of the weight,
  // 2^-23 |w|, apart.
  const int64_t b = 64;
  const double lr = 0.05;
  Classifier model(test::smallCnn());
  const Dataset& data = test::fashionTrain();
  TrainOptions opt;
  opt.epochs = 1;
  opt.batchSize = b;
  opt.optim.lr = lr;
  opt.optim.schedule = "constant";
  opt.augment = "none";
  for (int64_t step = 0; step < 4; ++step) {
    const Dataset batch = data.select(torch::arange(step * b, (step + 1) * b, torch::kInt64));
    const auto start = test::snapshot(*model);
    // S and n per parameter, at the step's starting weights, on the same examples (the order inside the
    // batch does not change S).
    const auto magnitudes = gradientMagnitudes(*model, batch.images, batch.labels);
    CrossEntropyObjective ce;
    Classifier one(test::smallCnn());
    copyWeights(*one, *model);
    train(*one, ce, batch, Dataset{}, opt, torch::kCPU);
    std::vector<Classifier> ranks{Classifier(test::smallCnn()), Classifier(test::smallCnn())};
    test::onRanks(2, [&](Communicator& c) {
      copyWeights(*ranks[c.rank()], *model);
      CrossEntropyObjective objective;
      TrainOptions o = opt;
      o.comm = test::borrowed(c);
      train(*ranks[c.rank()], objective, batch, Dataset{}, o, torch::kCPU);
    });
    REQUIRE(test::sameTensors(test::snapshot(*ranks[0]), test::snapshot(*ranks[1])));  // every rank the same weights, bit for bit
    double worstShare = 0;
    for (const auto& p : one->named_parameters()) {
      const auto& [s, n] = magnitudes.at(p.key());
      const auto w1 = p.value().detach().to(torch::kFloat64), w2 = ranks[0]->named_parameters()[p.key()].detach().to(torch::kFloat64);
      const auto bound = lr * 2 * test::gamma(n, test::kUnitFp32) * s.to(torch::kFloat64) + 2 * test::kUnitFp32 * torch::max(w1.abs(), w2.abs());
      const auto diff = (w1 - w2).abs();
      INFO("step " << step << ", " << p.key() << ": reduction length " << n);
      CHECK((diff <= bound).all().item<bool>());
      worstShare = std::max(worstShare, (diff / bound).max().item<double>());
    }
    CHECK_FALSE(test::sameTensors(test::snapshot(*one), start));  // the step moved the weights
    WARN("step " << step << ": largest difference " << worstShare << " of its bound");
    copyWeights(*model, *one);
  }
}

TEST_CASE("Two-rank training with one seed is the same bit for bit run to run, on every rank, for every objective and mode",
          "[distributed]") {
  // BatchNorm in the model: rank 0's statistics are copied to the others after each step, so the ranks
  // stay equal. Each objective and pre-training mode for 2 short epochs on 256 real images.
  const Dataset data = test::fashionTrain().head(256);
  for (const std::string mode : {"standard", "pgd", "trades", "rotation", "masked", "simclr", "adv-contrastive"}) {
    auto run = [&] {
      const auto [weights, histories] = test::trainTwoRanks(mode, data);
      INFO(mode);
      CHECK(test::sameTensors(weights[0], weights[1]));
      CHECK(histories[0][1].loss == histories[1][1].loss);  // the epoch's loss gathered from both ranks
      CHECK(std::isfinite(histories[0][1].loss));
      return std::make_pair(weights[0], histories[0][1].loss);
    };
    const auto first = run(), second = run();
    INFO(mode);
    CHECK(test::sameTensors(first.first, second.first));
    CHECK(first.second == second.second);
  }
}

TEST_CASE("SimCLR on two ranks uses the whole batch's negatives: one process's loss and gradients", "[distributed]") {
  torch::manual_seed(3);
  const int64_t n = 16, d = 8;
  const auto z1 = torch::randn({n, d}), z2 = torch::randn({n, d});
  auto a1 = z1.clone().requires_grad_(true), a2 = z2.clone().requires_grad_(true);
  int64_t allCorrect = 0;
  const auto whole = ntXentLoss(a1, a2, 0.5, &allCorrect);
  whole.backward();
  std::vector<torch::Tensor> losses(2), grads1(2), grads2(2);
  std::vector<int64_t> correct(2);
  test::onRanks(2, [&](Communicator& c) {
    const Shard shard{&c, c.rank() * n / 2, n / 2, n};
    auto m1 = z1.slice(0, shard.offset, shard.offset + n / 2).clone().requires_grad_(true);
    auto m2 = z2.slice(0, shard.offset, shard.offset + n / 2).clone().requires_grad_(true);
    losses[c.rank()] = ntXentLoss(withPeers(m1, shard), withPeers(m2, shard), 0.5, &correct[c.rank()], {shard.offset, shard.offset + n / 2});
    losses[c.rank()].backward();
    grads1[c.rank()] = m1.grad();
    grads2[c.rank()] = m2.grad();
  });
  // The same 2n x 2n similarities on every rank: the same loss bit for bit, and this rank's rows'
  // gradient is the whole loss's gradient at those rows (the same graph, restricted to them).
  CHECK(losses[0].item<float>() == whole.item<float>());
  CHECK(losses[1].item<float>() == whole.item<float>());
  CHECK(correct[0] + correct[1] == allCorrect);
  CHECK(torch::equal(torch::cat(grads1), a1.grad()));
  CHECK(torch::equal(torch::cat(grads2), a2.grad()));
}
