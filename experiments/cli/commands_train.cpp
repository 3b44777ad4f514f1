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

int trainLike(Stage stage, int argc, char** argv) {
  const std::string section = stageName(stage);
  const std::string what = stage == Stage::kTrain      ? "Train a classifier on the [train] task"
                           : stage == Stage::kPretrain ? "Pre-train a backbone on the [pretrain] task (supervised, adversarial, rotation or masked)"
                                                   : "Fine-tune a pre-trained backbone on the [finetune] task (full or linear probe)";
  cxxopts::Options opts("robustlab " + section, what);
  addConfigOptions(opts);
  opts.add_options()("o,out", "checkpoint to write (default results/<name>-<stage>.h5)", cxxopts::value<std::string>()->default_value(""));
  if (stage == Stage::kFinetune)
    opts.add_options()("checkpoint", "pre-trained checkpoint whose backbone starts fine-tuning (overrides finetune.checkpoint)",
                       cxxopts::value<std::string>());
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  Config c = resolveConfig(args);
  if (stage == Stage::kFinetune && args.count("checkpoint")) c.finetune.checkpoint = args["checkpoint"].as<std::string>();
  if (maybeDumpConfig(args, c)) return 0;
  const torch::Device device = setUpRuntime(c);
  std::string out = args["out"].as<std::string>();
  if (out.empty()) out = "results/" + c.name + "-" + section + ".h5";
  const std::string backbone = stage == Stage::kFinetune ? c.finetune.checkpoint : "";
  if (stage == Stage::kFinetune && backbone.empty())
    std::fprintf(stderr, "note: finetune.checkpoint is empty: training the fine-tuning task from scratch\n");
  if (!backbone.empty() && !std::filesystem::exists(backbone)) throw std::runtime_error(backbone + ": checkpoint not found");
  StageResult r = runStage(c, stage, backbone, section, device);
  printHistory(r);
  const StageConfig& s = stageOf(c, stage);
  const bool classifies = !(stage == Stage::kPretrain && s.mode != "supervised");
  if (classifies)
    std::printf("%s: %lld training images, validation accuracy %.2f%%, test accuracy %.2f%% (%lld test images)\n", section.c_str(),
                static_cast<long long>(r.data.train.size()), 100.0 * r.valAccuracy, 100.0 * r.testAccuracy,
                static_cast<long long>(r.data.test.size()));
  saveStage(out, r, c, s, stage);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace

int cmdTrain(int argc, char** argv) { return trainLike(Stage::kTrain, argc, argv); }
int cmdPretrain(int argc, char** argv) { return trainLike(Stage::kPretrain, argc, argv); }
int cmdFinetune(int argc, char** argv) { return trainLike(Stage::kFinetune, argc, argv); }

}  // namespace robustlab
