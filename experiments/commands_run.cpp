#include "experiments/cli_common.h"
#include "experiments/commands.h"
#include "experiments/pipeline.h"
#include "experiments/results_io.h"

#include "data/h5io.h"
#include "framework/checkpoint.h"

#include <boost/math/distributions/binomial.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>

namespace robustlab {
namespace {

/// Exact two-sided McNemar test on the discordant pairs (b robust only under A, c only under B).
double mcnemarP(int64_t b, int64_t c) {
  const int64_t n = b + c;
  if (n == 0) return 1.0;
  boost::math::binomial_distribution<double> dist(static_cast<double>(n), 0.5);
  const double tail = boost::math::cdf(dist, static_cast<double>(std::min(b, c)));
  return std::min(1.0, 2.0 * tail);
}

std::string stem(const std::string& output) {
  std::filesystem::path p(output);
  return (p.parent_path() / p.stem()).string();
}

}  // namespace

int cmdRun(int argc, char** argv) {
  cxxopts::Options opts("robustlab run",
                        "Run an experiment: pre-train, fine-tune, train the same task from scratch, attack both, compare; "
                        "results go to one HDF5 file");
  addConfigOptions(opts);
  opts.add_options()("o,out", "results file (overrides config 'output')", cxxopts::value<std::string>()->default_value(""));
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  Config c = resolveConfig(args);
  if (!args["out"].as<std::string>().empty()) c.output = args["out"].as<std::string>();
  if (maybeDumpConfig(args, c)) return 0;
  const torch::Device device = setUpRuntime(c);
  const std::string base = stem(c.output);
  std::printf("experiment '%s' on %s, seed %llu, results -> %s\n", c.name.c_str(), device.str().c_str(),
              static_cast<unsigned long long>(c.seed), c.output.c_str());

  StageResult pre = runStage(c, "pretrain", "", "pretrain", device);
  const std::string preCkpt = base + ".pretrain.h5";
  saveStage(preCkpt, pre, c, "pretrain");
  std::printf("pretrain (%s, %s): %lld images, test accuracy %.2f%% -> %s\n", c.pretrain.mode.c_str(), c.pretrain.objective.c_str(),
              static_cast<long long>(pre.data.train.size()), 100.0 * pre.testAccuracy, preCkpt.c_str());

  StageResult fine = runStage(c, "finetune", preCkpt, "finetune", device);
  saveStage(base + ".finetune.h5", fine, c, "finetune");
  std::printf("finetune (%s) from pre-trained backbone: %lld images, test accuracy %.2f%%\n", c.finetune.finetune.c_str(),
              static_cast<long long>(fine.data.train.size()), 100.0 * fine.testAccuracy);
  StageResult scratch;
  if (c.compareScratch) {
    scratch = runStage(c, "finetune", "", "scratch", device);
    saveStage(base + ".scratch.h5", scratch, c, "finetune");
    std::printf("from scratch: %lld images, test accuracy %.2f%%\n", static_cast<long long>(scratch.data.train.size()),
                100.0 * scratch.testAccuracy);
  }

  const EvalOptions e = evalOptionsFrom(c);
  useEvalThreads(c);
  std::printf("\n== pre-trained then fine-tuned ==\n");
  const EvalResult rf = evaluate(*fine.model, fine.data.test, e, device);
  printEvalTable(rf);
  EvalResult rs;
  if (c.compareScratch) {
    std::printf("\n== from scratch ==\n");
    rs = evaluate(*scratch.model, scratch.data.test, e, device);
    printEvalTable(rs);
  }

  writeH5Atomically(c.output, [&](H5File& f) {
    writeResultsHeader(f, c.toToml(), commandLine(argc, argv));
    writeHistory(f, "/train/pretrain", pre.history);
    writeHistory(f, "/train/finetune", fine.history);
    writeEvaluation(f, "/eval/pretrained", rf);
    if (c.compareScratch) {
      writeHistory(f, "/train/scratch", scratch.history);
      writeEvaluation(f, "/eval/scratch", rs);
      std::vector<double> diff, pvals;
      std::vector<int64_t> onlyPre, onlyScratch;
      for (size_t i = 0; i < rf.epsGrid.size(); ++i) {
        const auto a = rf.worstRobust.select(1, static_cast<int64_t>(i)), b = rs.worstRobust.select(1, static_cast<int64_t>(i));
        onlyPre.push_back((a & ~b).sum().item<int64_t>());
        onlyScratch.push_back((b & ~a).sum().item<int64_t>());
        diff.push_back(rf.worstAccuracy[i] - rs.worstAccuracy[i]);
        pvals.push_back(mcnemarP(onlyPre.back(), onlyScratch.back()));
      }
      f.writeTensor("/comparison/eps", torch::tensor(rf.epsGrid, torch::kFloat64));
      f.writeTensor("/comparison/accuracy_difference", torch::tensor(diff, torch::kFloat64));
      f.writeTensor("/comparison/robust_only_pretrained", torch::tensor(onlyPre, torch::kInt64));
      f.writeTensor("/comparison/robust_only_scratch", torch::tensor(onlyScratch, torch::kInt64));
      f.writeTensor("/comparison/mcnemar_p", torch::tensor(pvals, torch::kFloat64));
      std::printf("\n== pre-trained vs from scratch (worst case over attacks, same %lld test images) ==\n",
                  static_cast<long long>(rf.labels.size(0)));
      std::printf("%8s %12s %12s %10s %14s\n", "eps", "pretrained%", "scratch%", "diff", "McNemar p");
      for (size_t i = 0; i < rf.epsGrid.size(); ++i)
        std::printf("%8.4g %12.2f %12.2f %+10.2f %14.3g\n", rf.epsGrid[i], 100.0 * rf.worstAccuracy[i], 100.0 * rs.worstAccuracy[i],
                    100.0 * diff[i], pvals[i]);
    }
  });
  std::printf("wrote %s\n", c.output.c_str());
  return 0;
}

}  // namespace robustlab
