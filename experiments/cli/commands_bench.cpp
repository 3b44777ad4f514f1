#include "experiments/cli/cli_common.h"
#include "experiments/cli/commands.h"

#include "framework/training/adversarial_training.h"
#include "attacks/fgsm.h"
#include "attacks/pgd.h"
#include "data/h5io.h"
#include "data/sources.h"
#include "framework/models/conv.h"
#include "framework/models/kernels/conv_kernels.h"
#include "framework/models/kernels/direct_conv.h"
#include "framework/runtime/chunks.h"
#include "framework/runtime/cpu_info.h"
#include "framework/runtime/progress.h"
#include "framework/runtime/runtime.h"
#include "framework/distributed/communicator.h"
#include "framework/models/model.h"
#include "framework/training/trainer.h"

#include <ATen/ops/relu.h>
#include <torch/autograd.h>
#include <torch/nn/functional/conv.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>

namespace robustlab {
namespace {

double peakRssMiB() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

/// Seconds that fn's work took, finished work on a CUDA device (queued kernels waited for at both ends).
double timeIt(const std::function<void()>& fn, torch::Device device = torch::kCPU) {
  synchronizeDevice(device);
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  synchronizeDevice(device);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Row {
  std::string precision;
  int threads, workers;
  double train, advTrain, pgd, pgdEarly, fgsm, rss;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// The median of each throughput over repeated runs (run-to-run noise here is 10-30%).
Row medianRow(const std::vector<Row>& runs) {
  Row out = runs.front();
  for (double Row::*m : {&Row::train, &Row::advTrain, &Row::pgd, &Row::pgdEarly, &Row::fgsm}) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.*m);
    out.*m = median(std::move(v));
  }
  out.rss = runs.back().rss;
  return out;
}

/// "T" when every batch runs on T intra-op threads, "TxW" when the attack steps' batches are split
/// into W single-threaded chunks (framework/runtime/chunks.h) and everything else runs on T threads.
std::string threadsLabel(const Row& r) {
  return r.workers == r.threads ? std::to_string(r.threads) : std::to_string(r.threads) + "x" + std::to_string(r.workers);
}

/// "T" or "TxW" (see threadsLabel) into {T, W}; throws naming --threads and what is expected.
std::pair<int, int> parseThreadsToken(const std::string& t) {
  const auto x = t.find('x');
  try {
    size_t used = 0;
    const int threads = std::stoi(t.substr(0, x), &used);
    if (used != (x == std::string::npos ? t.size() : x)) throw std::invalid_argument(t);
    int workers = threads;
    if (x != std::string::npos) {
      workers = std::stoi(t.substr(x + 1), &used);
      if (used != t.size() - x - 1) throw std::invalid_argument(t);
    }
    if (threads < 1 || workers < 1) throw std::invalid_argument(t);
    return {threads, workers};
  } catch (const std::logic_error&) {
    throw std::invalid_argument("--threads: '" + t + "' is not a thread count (T, or TxW: T threads and W batch workers, both >= 1)");
  }
}

void printRow(const std::string& label, const Row& r) {
  std::printf("%-6s %-6s %8s %12.0f %14.0f %16.0f %20.0f %12.0f %10.0f\n", label.c_str(), r.precision.c_str(), threadsLabel(r).c_str(),
              r.train, r.advTrain, r.pgd, r.pgdEarly, r.fgsm, r.rss);
  std::fflush(stdout);
}

/// What one run of the bench measures, on one thread count and precision.
struct BenchSetup {
  const Dataset& trainSet;
  const Dataset& advSet;
  const Dataset& testSet;
  int64_t batchSize, attackBatch;
  torch::Device device;
};

Row measureOnce(const BenchSetup& setup, Precision precision, std::pair<int, int> threadsAndWorkers) {
  const Dataset& testSet = setup.testSet;
  const torch::Device device = setup.device;
  Row row;
  row.precision = precisionName(precision);
  row.threads = configureThreads(threadsAndWorkers.first, threadsAndWorkers.second);
  row.workers = batchWorkers();
  seedEverything(0);
  Classifier model(defaultSmallCnn());
  CrossEntropyObjective ce;
  TrainOptions opt;
  opt.epochs = 1;
  opt.batchSize = setup.batchSize;
  opt.precision = precision;
  row.train = static_cast<double>(setup.trainSet.size()) / timeIt([&] { train(*model, ce, setup.trainSet, Dataset{}, opt, device); }, device);
  {
    seedEverything(0);
    Classifier advModel(defaultSmallCnn());
    AttackOptions ao;
    ao.eps = 0.1;
    ao.steps = 10;
    PgdTrainingObjective pgdAt(ao);
    row.advTrain =
        static_cast<double>(setup.advSet.size()) / timeIt([&] { train(*advModel, pgdAt, setup.advSet, Dataset{}, opt, device); }, device);
  }
  PrecisionGuard guard(precision);
  const auto images = testSet.images.to(device), labels = testSet.labels.to(device);  // resident, as in the reference
  auto attackAll = [&](Attack& attack) {
    return timeIt(
        [&] {
          for (int64_t b = 0; b < testSet.size(); b += setup.attackBatch) {
            const int64_t e = std::min(testSet.size(), b + setup.attackBatch);
            attack.perturb(*model, images.slice(0, b, e), labels.slice(0, b, e));
          }
        },
        device);
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
  return row;
}

/// One of the default model's convolutions as an attack step runs it, weights frozen: its forward pass
/// and its input gradient, LibTorch's convolution against robustlab's layer (framework/models/conv.h:
/// the first, 1 -> 16 channels, takes the single-channel kernels on the kernel path in use, else
/// LibTorch's im2col input gradient; the second, 16 -> 32 channels on the first one's ReLU output,
/// takes the multi-channel fp32 kernels on the avx2 path, else LibTorch's), milliseconds per call,
/// median of `repeats` timings of 10 calls.
void benchConv(bool second, const Dataset& testSet, const std::vector<std::string>& precisions, const std::vector<std::string>& threadList,
               int repeats) {
  namespace F = torch::nn::functional;
  Conv first(torch::nn::Conv2dOptions(1, 16, 4).stride(2).padding(1));
  Conv conv(second ? torch::nn::Conv2dOptions(16, 32, 4).stride(2).padding(1) : torch::nn::Conv2dOptions(1, 16, 4).stride(2).padding(1));
  for (auto& p : conv->parameters()) p.requires_grad_(false);  // as in an attack
  const auto layerInput = [&](const torch::Tensor& images) {
    torch::NoGradGuard noGrad;
    return second ? at::relu(first->forward(images)).contiguous() : images;
  };
  std::printf("%s convolution; robustlab's kernel path: %s%s\n", second ? "second (16 -> 32)" : "first (1 -> 16)", kernelPathName(kernelPath()).c_str(),
              second && kernelPath() == KernelPath::kAvx2 && !directConvKernelsOn() ? " (multi-channel kernels off: ROBUSTLAB_DIRECT_CONV=0)"
                                                                                      : "");
  std::printf("%-6s %8s %6s %12s %12s %8s %12s %12s %8s\n", "prec", "threads", "batch", "fwd LibTorch", "fwd ours", "speed-up",
              "grad LibTorch", "grad ours", "speed-up");
  auto msPer = [&](const std::function<void()>& fn) {
    fn();  // warm-up
    std::vector<double> ms;
    for (int r = 0; r < repeats; ++r)
      ms.push_back(1e3 / 10 * timeIt([&] {
                     for (int i = 0; i < 10; ++i) fn();
                   }));
    return median(std::move(ms));
  };
  for (const auto& p : precisions) {
    const Precision precision = parsePrecision(p);
    for (const auto& t : threadList) {
      const int threads = configureThreads(parseThreadsToken(t).first, 1);
      PrecisionGuard guard(precision);
      for (const int64_t batch : {int64_t{128}, testSet.size()}) {
        const auto x = layerInput(testSet.images.slice(0, 0, batch).clone());
        const auto xg = x.clone().requires_grad_(true);
        auto ref = [&] { return F::conv2d(xg, conv->weight, F::Conv2dFuncOptions().bias(conv->bias).stride(2).padding(1)); };
        const auto yRef = ref(), yOurs = conv->forward(xg);
        const auto go = torch::ones_like(yRef);
        torch::NoGradGuard noGrad;
        const double fwdRef = msPer([&] { ref(); }), fwdOurs = msPer([&] { conv->forward(x); });
        torch::AutoGradMode grad(true);
        const double gradRef = msPer([&] { torch::autograd::grad({yRef}, {xg}, {go}, /*retain_graph=*/true); });
        const double gradOurs = msPer([&] { torch::autograd::grad({yOurs}, {xg}, {go}, /*retain_graph=*/true); });
        std::printf("%-6s %8d %6lld %12.3f %12.3f %7.1fx %12.3f %12.3f %7.1fx\n", precisionName(precision).c_str(), threads,
                    static_cast<long long>(batch), fwdRef, fwdOurs, fwdRef / fwdOurs, gradRef, gradOurs, gradRef / gradOurs);
      }
    }
  }
}

void writeBenchTable(const std::string& out, const std::vector<Row>& rows, torch::Device device, const std::string& command) {
  writeH5Atomically(out, [&](H5File& f) {
    f.setAttr("/", "format", std::string("robustlab-bench-1"));
    f.setAttr("/", "device", device.str());
    writeMachineFacts(f, "/");
    f.setAttr("/", "command", command);
    std::vector<std::string> precisions;
    std::vector<int64_t> threads, workers;
    auto col = [&](double Row::*m) {
      std::vector<double> v;
      for (const auto& r : rows) v.push_back(r.*m);
      return torch::tensor(v, torch::kFloat64);
    };
    for (const auto& r : rows) {
      precisions.push_back(r.precision);
      threads.push_back(r.threads);
      workers.push_back(r.workers);
    }
    f.writeStrings("/precision", precisions);
    f.writeTensor("/threads", torch::tensor(threads, torch::kInt64));
    f.writeTensor("/batch_workers", torch::tensor(workers, torch::kInt64));
    f.writeTensor("/train_images_per_s", col(&Row::train));
    f.writeTensor("/pgd10_adv_train_images_per_s", col(&Row::advTrain));
    f.writeTensor("/pgd20_image_steps_per_s", col(&Row::pgd));
    f.writeTensor("/pgd20_early_stop_image_steps_per_s", col(&Row::pgdEarly));
    f.writeTensor("/fgsm_images_per_s", col(&Row::fgsm));
    f.writeTensor("/peak_rss_mib", col(&Row::rss));
  });
}

/// `bench --allreduce`, as one of several data-parallel ranks: the time of one gradient sum
/// (Communicator::allReduceSum, bucketed as in training) for the parameter sets of the small CNN,
/// PreAct ResNet-18 and WRN-28-10; rank 0 prints the medians.
void benchAllReduce(int repeats) {
  const auto comm = worldCommunicator();
  if (!comm) throw std::invalid_argument("--allreduce: needs data-parallel ranks, e.g. robustlab bench --allreduce --nproc 2");
  ModelSpec cnn = defaultSmallCnn(), resnet, wrn;
  resnet.arch = "resnet";
  resnet.resnetWidth = 64;
  resnet.resnetBlocks = {2, 2, 2, 2};
  wrn.arch = "wrn";
  for (ModelSpec* m : {&resnet, &wrn}) {
    m->inChannels = 3;
    m->height = m->width = 32;
  }
  if (comm->rank() == 0) std::printf("%-18s %12s %10s %12s %12s %10s\n", "gradients of", "parameters", "MiB", "median ms", "min ms", "GB/s");
  for (const auto& [name, spec] : {std::pair<std::string, ModelSpec>{"small CNN", cnn}, {"PreAct ResNet-18", resnet}, {"WRN-28-10", wrn}}) {
    Classifier model(spec);
    std::vector<torch::Tensor> grads;
    int64_t count = 0;
    for (const auto& p : model->parameters()) {
      grads.push_back(torch::ones_like(p));
      count += p.numel();
    }
    std::vector<double> ms;
    for (int rep = 0; rep < repeats + 2; ++rep) {  // two warm-up sums first
      comm->barrier();
      const auto t0 = std::chrono::steady_clock::now();
      comm->allReduceSum(grads);
      if (rep >= 2) ms.push_back(1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const double mib = static_cast<double>(count) * 4 / (1 << 20), median = ms[ms.size() / 2];
    if (comm->rank() == 0)
      std::printf("%-18s %12lld %10.2f %12.3f %12.3f %10.2f\n", name.c_str(), static_cast<long long>(count), mib, median, ms.front(),
                  static_cast<double>(count) * 4 / (median * 1e6));
  }
}

void addBenchOptions(cxxopts::Options& opts) {
  opts.add_options()
      ("train-images", "training images per clean epoch", cxxopts::value<int64_t>()->default_value("60000"))
      ("adv-train-images", "training images for PGD-10 adversarial training", cxxopts::value<int64_t>()->default_value("6000"))
      ("attack-images", "test images attacked", cxxopts::value<int64_t>()->default_value("1000"))
      ("batch-size", "training batch size", cxxopts::value<int64_t>()->default_value("128"))
      ("attack-batch", "attack batch size", cxxopts::value<int64_t>()->default_value("1000"))
      ("threads", "comma-separated thread counts to measure: T (T threads), or TxW (T threads, the attack steps' batches split "
                  "into W single-threaded chunks)", cxxopts::value<std::string>()->default_value("1,2,1x2"))
      ("precision", "comma-separated precisions to measure (fp32, bf16)", cxxopts::value<std::string>()->default_value("fp32,bf16"))
      ("repeats", "runs of each measurement; the table shows the median", cxxopts::value<int>()->default_value("3"))
      ("v,verbose", "also print every run, not only the medians")
      ("first-conv", "instead: time the first convolution's forward pass and input gradient, LibTorch's kernels against robustlab's")
      ("second-conv", "instead: the same for the second convolution (16 -> 32 channels)")
      ("allreduce", "instead: with --nproc N, time one gradient sum over the N ranks for the small CNN, PreAct ResNet-18 and WRN-28-10")
      ("nproc", "run as N data-parallel ranks on this machine (with --allreduce)", cxxopts::value<int>())
      ("device", "auto | cpu | cuda", cxxopts::value<std::string>()->default_value("cpu"))
      ("kernels", "robustlab's kernel path: auto, avx512-bf16, avx512, avx2, libtorch (default: ROBUSTLAB_KERNELS, else auto)",
       cxxopts::value<std::string>())
      ("o,out", "HDF5 file for the table (empty: none)", cxxopts::value<std::string>()->default_value("results/bench.h5"))
      ("h,help", "show this help");
}

}  // namespace

int cmdBench(int argc, char** argv) {
  cxxopts::Options opts("robustlab bench",
                        "Measure the default small CNN on Fashion-MNIST: clean and PGD-10 adversarial training, PGD-20 and FGSM "
                        "evaluation, peak memory; prints a table and writes HDF5");
  addBenchOptions(opts);
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  Progress::setQuiet(true);
  if (args.count("nproc") && !args.count("allreduce")) throw std::invalid_argument("--nproc: bench measures data-parallel ranks with --allreduce only");
  const torch::Device device = resolveDevice(args["device"].as<std::string>());
  if (args.count("kernels")) setKernelPath(parseKernelPath(args["kernels"].as<std::string>()));
  std::printf("machine: %s\n", machineSummary().c_str());
  DataSourceSpec src;
  const Dataset trainSet = loadSplit(src, "train").head(args["train-images"].as<int64_t>());
  const Dataset advSet = trainSet.head(args["adv-train-images"].as<int64_t>());
  const Dataset testSet = loadSplit(src, "test").head(args["attack-images"].as<int64_t>());
  const int repeats = args["repeats"].as<int>();
  if (repeats < 1) throw std::invalid_argument("--repeats: must be >= 1");
  if (args.count("allreduce")) {
    benchAllReduce(repeats);
    return 0;
  }
  if (args.count("first-conv") || args.count("second-conv")) {
    benchConv(args.count("second-conv") > 0, testSet, splitList(args["precision"].as<std::string>()), splitList(args["threads"].as<std::string>()), repeats);
    return 0;
  }
  const BenchSetup setup{trainSet, advSet, testSet, args["batch-size"].as<int64_t>(), args["attack-batch"].as<int64_t>(), device};
  std::printf("%-6s %-6s %8s %12s %14s %16s %20s %12s %10s\n", "device", "prec", "threads", "train img/s", "PGD-10 AT img/s",
              "PGD-20 img-st/s", "PGD-20 early-stop", "FGSM img/s", "RSS MiB");
  std::vector<Row> rows;
  for (const auto& p : splitList(args["precision"].as<std::string>())) {
    const Precision precision = parsePrecision(p);
    for (const auto& t : splitList(args["threads"].as<std::string>())) {
      const auto threadsAndWorkers = parseThreadsToken(t);
      std::vector<Row> runs;
      for (int rep = 0; rep < repeats; ++rep) {
        runs.push_back(measureOnce(setup, precision, threadsAndWorkers));
        if (args.count("verbose")) printRow("run", runs.back());
      }
      const Row row = medianRow(runs);
      printRow(device.str(), row);
      rows.push_back(row);
    }
  }
  const std::string out = args["out"].as<std::string>();
  if (!out.empty()) {
    writeBenchTable(out, rows, device, commandLine(argc, argv));
    std::printf("wrote %s\n", out.c_str());
  }
  return 0;
}

}  // namespace robustlab
