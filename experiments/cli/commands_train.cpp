#include "experiments/cli/cli_common.h"
#include "experiments/cli/commands.h"
#include "experiments/plan/pipeline.h"

#include <cstdio>
#include <filesystem>

namespace robustlab {
namespace {

void printHistory(const StageResult& r) {
  std::printf("%6s %10s %10s %10s %10s %9s\n", "epoch", "lr", "loss", "acc%", "val_acc%", "seconds");
  for (const auto& e : r.history)
    std::printf("%6lld %10.5f %10.4f %10.2f %10.2f %9.2f\n", static_cast<long long>(e.epoch), e.lr, e.loss, 100.0 * e.accuracy,
                100.0 * e.valAccuracy, e.seconds);
}

int trainLike(const std::string& section, int argc, char** argv) {
  const std::string what = section == "train"      ? "Train a classifier on the [train] task"
                           : section == "pretrain" ? "Pre-train a backbone on the [pretrain] task (supervised, adversarial, rotation or masked)"
                                                   : "Fine-tune a pre-trained backbone on the [finetune] task (full or linear probe)";
  cxxopts::Options opts("robustlab " + section, what);
  addConfigOptions(opts);
  opts.add_options()("o,out", "checkpoint to write (default results/<name>-<stage>.h5)", cxxopts::value<std::string>()->default_value(""));
  if (section == "finetune")
    opts.add_options()("checkpoint", "pre-trained checkpoint whose backbone starts fine-tuning (overrides finetune.checkpoint)",
                       cxxopts::value<std::string>());
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  Config c = resolveConfig(args);
  if (section == "finetune" && args.count("checkpoint")) c.finetune.checkpoint = args["checkpoint"].as<std::string>();
  if (maybeDumpConfig(args, c)) return 0;
  const torch::Device device = setUpRuntime(c);
  std::string out = args["out"].as<std::string>();
  if (out.empty()) out = "results/" + c.name + "-" + section + ".h5";
  const std::string backbone = section == "finetune" ? c.finetune.checkpoint : "";
  if (section == "finetune" && backbone.empty())
    std::fprintf(stderr, "note: finetune.checkpoint is empty: training the fine-tuning task from scratch\n");
  if (!backbone.empty() && !std::filesystem::exists(backbone)) throw std::runtime_error(backbone + ": checkpoint not found");
  StageResult r = runStage(c, section, backbone, section, device);
  printHistory(r);
  const StageConfig& s = stageOf(c, section);
  const bool classifies = !(section == "pretrain" && s.mode != "supervised");
  if (classifies)
    std::printf("%s: %lld training images, validation accuracy %.2f%%, test accuracy %.2f%% (%lld test images)\n", section.c_str(),
                static_cast<long long>(r.data.train.size()), 100.0 * r.valAccuracy, 100.0 * r.testAccuracy,
                static_cast<long long>(r.data.test.size()));
  saveStage(out, r, c, s, section);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace

int cmdTrain(int argc, char** argv) { return trainLike("train", argc, argv); }
int cmdPretrain(int argc, char** argv) { return trainLike("pretrain", argc, argv); }
int cmdFinetune(int argc, char** argv) { return trainLike("finetune", argc, argv); }

}  // namespace robustlab
