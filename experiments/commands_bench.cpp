#include "experiments/cli_common.h"
#include "experiments/commands.h"

#include "attacks/pgd.h"
#include "data/sources.h"
#include "data/tasks.h"
#include "framework/runtime.h"
#include "framework/trainer.h"
#include "framework/progress.h"

#include <sys/resource.h>

#include <chrono>
#include <cstdio>

namespace robustlab {
namespace {

double peakRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

double seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int cmdBench(int argc, char** argv) {
  cxxopts::Options opts("robustlab bench", "Measure training and PGD throughput of the default small CNN on Fashion-MNIST; prints a table");
  opts.add_options()
      ("train-images", "training images per epoch", cxxopts::value<int64_t>()->default_value("60000"))
      ("epochs", "training epochs timed", cxxopts::value<int64_t>()->default_value("1"))
      ("attack-images", "test images attacked by PGD-20", cxxopts::value<int64_t>()->default_value("1000"))
      ("batch-size", "training batch size", cxxopts::value<int64_t>()->default_value("128"))
      ("attack-batch", "PGD batch size", cxxopts::value<int64_t>()->default_value("1000"))
      ("threads", "comma-separated thread counts to measure", cxxopts::value<std::string>()->default_value("1,2"))
      ("device", "auto | cpu | cuda", cxxopts::value<std::string>()->default_value("cpu"))
      ("h,help", "show this help");
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  Progress::setQuiet(true);
  const torch::Device device = resolveDevice(args["device"].as<std::string>());
  DataSourceSpec src;
  const Dataset trainSet = loadSplit(src, "train").head(args["train-images"].as<int64_t>());
  const Dataset testSet = loadSplit(src, "test").head(args["attack-images"].as<int64_t>());
  std::printf("%-8s %8s %14s %12s %20s %22s %14s\n", "device", "threads", "train img/s", "epoch s", "PGD-20 img-steps/s",
              "PGD-20 early-stop i-s/s", "peak RSS MiB");
  for (const auto& t : splitList(args["threads"].as<std::string>())) {
    const int threads = configureThreads(std::stoi(t));
    seedEverything(0);
    ModelSpec spec = defaultSmallCnn();
    Classifier model(spec);
    CrossEntropyObjective objective;
    TrainOptions opt;
    opt.epochs = args["epochs"].as<int64_t>();
    opt.batchSize = args["batch-size"].as<int64_t>();
    auto t0 = std::chrono::steady_clock::now();
    train(*model, objective, trainSet, Dataset{}, opt, device);
    const double trainS = seconds(t0);
    AttackOptions ao;
    ao.eps = 0.1;
    ao.steps = 20;
    ao.earlyStop = false;  // time every step of every example, as the reference loop does
    Pgd pgd(ao);
    const int64_t bs = args["attack-batch"].as<int64_t>();
    t0 = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < testSet.size(); b += bs) {
      const int64_t e = std::min(testSet.size(), b + bs);
      pgd.perturb(*model, testSet.images.slice(0, b, e).to(device), testSet.labels.slice(0, b, e).to(device));
    }
    const double pgdS = seconds(t0);
    // The evaluation default: examples already fooled stop stepping (same robust accuracy). Counted
    // as if every example took every step, so the figure compares with the column before.
    ao.earlyStop = true;
    Pgd early(ao);
    t0 = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < testSet.size(); b += bs) {
      const int64_t e = std::min(testSet.size(), b + bs);
      early.perturb(*model, testSet.images.slice(0, b, e).to(device), testSet.labels.slice(0, b, e).to(device));
    }
    const double earlyS = seconds(t0);
    std::printf("%-8s %8d %14.0f %12.2f %20.0f %22.0f %14.0f\n", device.str().c_str(), threads,
                static_cast<double>(trainSet.size() * opt.epochs) / trainS, trainS / static_cast<double>(opt.epochs),
                static_cast<double>(testSet.size() * ao.steps) / pgdS, static_cast<double>(testSet.size() * ao.steps) / earlyS,
                peakRssMiB());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace robustlab
