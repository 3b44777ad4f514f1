#pragma once
// Data-parallel ranks as threads of the test process, each with its own c10d Gloo group, met through a
// real TCPStore on a free local port.
#include "fixtures.h"

#include "framework/distributed/communicator.h"
#include "framework/distributed/launcher.h"
#include "framework/training/registry.h"
#include "framework/training/trainer.h"

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace robustlab::test {

/// Runs fn(comm) on `n` ranks, one thread each, met at a fresh local port; rethrows the first error.
inline void onRanks(int n, const std::function<void(Communicator&)>& fn) {
  const int port = freeLocalPort();
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        RankInfo info;
        info.rank = r;
        info.worldSize = n;
        info.masterPort = port;
        auto comm = Communicator::connect(info, std::chrono::seconds(60));
        fn(*comm);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// `c` as the shared pointer TrainOptions::comm takes, without owning it.
inline std::shared_ptr<Communicator> borrowed(Communicator& c) { return std::shared_ptr<Communicator>(&c, [](Communicator*) {}); }

/// Each rank's weights and buffers, and its history, after trainTwoRanks.
struct TwoRanks {
  std::vector<std::vector<torch::Tensor>> weights{2};
  std::vector<TrainHistory> histories{2};
};

/// Two ranks train the small CNN with BatchNorm for 2 epochs of batch 64 on `data` (no augmentation,
/// seed 11) with objective or pre-training mode `mode` (adversaries: eps 0.1, 3 steps).
inline TwoRanks trainTwoRanks(const std::string& mode, const Dataset& data, bool syncBatchNorm = false) {
  TwoRanks out;
  // Models and objectives made here, one after the other: LibTorch's global generator initialises them.
  std::vector<Classifier> models;
  std::vector<std::unique_ptr<TrainingObjective>> objectives;
  torch::manual_seed(7);
  const bool pretext = mode == "rotation" || mode == "masked" || mode == "simclr" || mode == "adv-contrastive";
  for (int r = 0; r < 2; ++r) {
    models.emplace_back(smallCnn(10, /*batchNorm=*/true));
    ObjectiveParams p;
    p.adversary.eps = 0.1;
    p.adversary.steps = 3;
    objectives.push_back(pretext ? makePretrainObjective(mode, "standard", p, *models[r]) : makeObjective(mode, p, *models[r]));
  }
  onRanks(2, [&](Communicator& c) {
    TrainOptions o;
    o.epochs = 2;
    o.batchSize = 64;
    o.augment = "none";
    o.seed = 11;
    o.comm = borrowed(c);
    o.syncBatchNorm = syncBatchNorm;
    out.histories[c.rank()] = train(*models[c.rank()], *objectives[c.rank()], data, Dataset{}, o, torch::kCPU);
    out.weights[c.rank()] = snapshot(*models[c.rank()]);
  });
  return out;
}

}  // namespace robustlab::test
