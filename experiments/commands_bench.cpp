#include "experiments/cli_common.h"
#include "experiments/commands.h"

#include "attacks/adversarial_training.h"
#include "attacks/fgsm.h"
#include "attacks/pgd.h"
#include "data/h5io.h"
#include "data/sources.h"
#include "framework/progress.h"
#include "framework/runtime.h"
#include "framework/trainer.h"

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <functional>

namespace robustlab {
namespace {

double peakRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

double timeIt(const std::function<void()>& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Row {
  std::string precision;
  int threads;
  double train, advTrain, pgd, pgdEarly, fgsm, rss;
};

}  // namespace

int cmdBench(int argc, char** argv) {
  cxxopts::Options opts("robustlab bench",
                        "Measure the default small CNN on Fashion-MNIST: clean and PGD-10 adversarial training, PGD-20 and FGSM "
                        "evaluation, peak memory; prints a table and writes HDF5");
  opts.add_options()
      ("train-images", "training images per clean epoch", cxxopts::value<int64_t>()->default_value("60000"))
      ("adv-train-images", "training images for PGD-10 adversarial training", cxxopts::value<int64_t>()->default_value("6000"))
      ("attack-images", "test images attacked", cxxopts::value<int64_t>()->default_value("1000"))
      ("batch-size", "training batch size", cxxopts::value<int64_t>()->default_value("128"))
      ("attack-batch", "attack batch size", cxxopts::value<int64_t>()->default_value("1000"))
      ("threads", "comma-separated thread counts to measure", cxxopts::value<std::string>()->default_value("1,2"))
      ("precision", "comma-separated precisions to measure (fp32, bf16)", cxxopts::value<std::string>()->default_value("fp32,bf16"))
      ("device", "auto | cpu | cuda", cxxopts::value<std::string>()->default_value("cpu"))
      ("o,out", "HDF5 file for the table (empty: none)", cxxopts::value<std::string>()->default_value("results/bench.h5"))
      ("h,help", "show this help");
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  Progress::setQuiet(true);
  const torch::Device device = resolveDevice(args["device"].as<std::string>());
  DataSourceSpec src;
  const Dataset trainSet = loadSplit(src, "train").head(args["train-images"].as<int64_t>());
  const Dataset advSet = trainSet.head(args["adv-train-images"].as<int64_t>());
  const Dataset testSet = loadSplit(src, "test").head(args["attack-images"].as<int64_t>());
  const int64_t bs = args["attack-batch"].as<int64_t>();
  std::printf("%-6s %-6s %8s %12s %14s %16s %20s %12s %10s\n", "device", "prec", "threads", "train img/s", "PGD-10 AT img/s",
              "PGD-20 img-st/s", "PGD-20 early-stop", "FGSM img/s", "RSS MiB");
  std::vector<Row> rows;
  for (const auto& p : splitList(args["precision"].as<std::string>())) {
    const Precision precision = parsePrecision(p);
    for (const auto& t : splitList(args["threads"].as<std::string>())) {
      Row row;
      row.precision = precisionName(precision);
      row.threads = configureThreads(std::stoi(t));
      seedEverything(0);
      Classifier model(defaultSmallCnn());
      CrossEntropyObjective ce;
      TrainOptions opt;
      opt.epochs = 1;
      opt.batchSize = args["batch-size"].as<int64_t>();
      opt.precision = precision;
      row.train = static_cast<double>(trainSet.size()) / timeIt([&] { train(*model, ce, trainSet, Dataset{}, opt, device); });
      {
        seedEverything(0);
        Classifier advModel(defaultSmallCnn());
        AttackOptions ao;
        ao.eps = 0.1;
        ao.steps = 10;
        PgdTrainingObjective pgdAt(ao);
        row.advTrain = static_cast<double>(advSet.size()) / timeIt([&] { train(*advModel, pgdAt, advSet, Dataset{}, opt, device); });
      }
      PrecisionGuard guard(precision);
      auto attackAll = [&](Attack& attack) {
        return timeIt([&] {
          for (int64_t b = 0; b < testSet.size(); b += bs) {
            const int64_t e = std::min(testSet.size(), b + bs);
            attack.perturb(*model, testSet.images.slice(0, b, e).to(device), testSet.labels.slice(0, b, e).to(device));
          }
        });
      };
      AttackOptions ao;
      ao.eps = 0.1;
      ao.steps = 20;
      ao.earlyStop = false;  // every step of every example, as the reference loop does
      Pgd pgd(ao);
      row.pgd = static_cast<double>(testSet.size() * 20) / attackAll(pgd);
      ao.earlyStop = true;  // the evaluation default; counted as if every example took every step
      Pgd early(ao);
      row.pgdEarly = static_cast<double>(testSet.size() * 20) / attackAll(early);
      Fgsm fgsm(ao);
      row.fgsm = static_cast<double>(testSet.size()) / attackAll(fgsm);
      row.rss = peakRssMiB();
      std::printf("%-6s %-6s %8d %12.0f %14.0f %16.0f %20.0f %12.0f %10.0f\n", device.str().c_str(), row.precision.c_str(), row.threads,
                  row.train, row.advTrain, row.pgd, row.pgdEarly, row.fgsm, row.rss);
      std::fflush(stdout);
      rows.push_back(row);
    }
  }
  const std::string out = args["out"].as<std::string>();
  if (!out.empty()) {
    writeH5Atomically(out, [&](H5File& f) {
      f.setAttr("/", "format", std::string("robustlab-bench-1"));
      f.setAttr("/", "device", device.str());
      f.setAttr("/", "command", commandLine(argc, argv));
      std::vector<std::string> precisions;
      std::vector<int64_t> threads;
      auto col = [&](double Row::*m) {
        std::vector<double> v;
        for (const auto& r : rows) v.push_back(r.*m);
        return torch::tensor(v, torch::kFloat64);
      };
      for (const auto& r : rows) {
        precisions.push_back(r.precision);
        threads.push_back(r.threads);
      }
      f.writeStrings("/precision", precisions);
      f.writeTensor("/threads", torch::tensor(threads, torch::kInt64));
      f.writeTensor("/train_images_per_s", col(&Row::train));
      f.writeTensor("/pgd10_adv_train_images_per_s", col(&Row::advTrain));
      f.writeTensor("/pgd20_image_steps_per_s", col(&Row::pgd));
      f.writeTensor("/pgd20_early_stop_image_steps_per_s", col(&Row::pgdEarly));
      f.writeTensor("/fgsm_images_per_s", col(&Row::fgsm));
      f.writeTensor("/peak_rss_mib", col(&Row::rss));
    });
    std::printf("wrote %s\n", out.c_str());
  }
  return 0;
}

}  // namespace robustlab
