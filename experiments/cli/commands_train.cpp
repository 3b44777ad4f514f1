#include "experiments/cli/cli_common.h"
#include "experiments/cli/commands.h"
#include "experiments/plan/pipeline.h"
#include "framework/distributed/communicator.h"

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
  opts.add_options()("nproc", "run as N data-parallel ranks on this machine (torchrun's --nproc-per-node; README: scaling out)",
                     cxxopts::value<int>());
  opts.add_options()("o,out", "checkpoint to write (default results/<name>-<stage>.h5)", cxxopts::value<std::string>()->default_value(""));
  if (stage == Stage::kFinetune)
    opts.add_options()("checkpoint", "pre-trained checkpoint whose backbone starts fine-tuning (overrides finetune.checkpoint)",
                       cxxopts::value<std::string>());
  opts.add_options()("from-script", "a TorchScript model (model.arch = \"torchscript\") starts from the file's own weights instead of "
                                     "a fresh initialisation (what a stage without a pre-trained backbone starts from)");
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  Config c = resolveConfig(args);
  if (stage == Stage::kFinetune && args.count("checkpoint")) c.finetune.checkpoint = args["checkpoint"].as<std::string>();
  if (maybeDumpConfig(args, c)) return 0;
  const torch::Device device = setUpRuntime(c);
  std::string out = args["out"].as<std::string>();
  if (out.empty()) out = "results/" + c.name + "-" + section + ".h5";
  const std::string backbone = stage == Stage::kFinetune ? c.finetune.checkpoint : "";
  const bool fromScript = args.count("from-script") > 0;
  if (fromScript && c.model.arch != "torchscript")
    throw std::invalid_argument("--from-script: model.arch is '" + c.model.arch + "', expected \"torchscript\" (a model from PyTorch)");
  if (fromScript && !backbone.empty()) throw std::invalid_argument("--from-script: give it or a pre-trained checkpoint, not both");
  if (!backbone.empty() && !std::filesystem::exists(backbone)) throw std::runtime_error(backbone + ": checkpoint not found");
  if (backbone.empty() && !fromScript) checkFreshStart(c);
  if (fromScript) {
    std::fprintf(stderr, "note: %s starts from the TorchScript file's own weights (%s)\n", section.c_str(), c.model.torchscript.c_str());
  } else if (backbone.empty() && (stage == Stage::kFinetune || c.model.arch == "torchscript")) {
    const std::string how = c.model.arch != "torchscript" ? ""
                            : c.model.torchscriptInit.empty()
                                ? ": a fresh initialisation of model.torchscript by PyTorch's reset_parameters() rules, not the file's own weights (--from-script starts from those)"
                                : ": a fresh initialisation of model.torchscript from model.torchscript_init's weights (--from-script starts from the file's own)";
    std::fprintf(stderr, "note: %straining the %s task from scratch%s\n", stage == Stage::kFinetune ? "finetune.checkpoint is empty: " : "", section.c_str(), how.c_str());
  }
  StageResult r = runStage(c, stage, backbone, section, device, fromScript);
  printHistory(r);
  const StageConfig& s = stageOf(c, stage);
  const bool classifies = !(stage == Stage::kPretrain && s.mode != "supervised");
  if (classifies)
    std::printf("%s: %lld training images, validation accuracy %.2f%%, test accuracy %.2f%% (%lld test images)\n", section.c_str(),
                static_cast<long long>(r.data.train.size()), 100.0 * r.valAccuracy, 100.0 * r.testAccuracy,
                static_cast<long long>(r.data.test.size()));
  // Data-parallel: every rank holds the same weights; rank 0 writes them (atomically, as always).
  const auto comm = worldCommunicator();
  if (comm && comm->rank() != 0) return 0;
  saveStage(out, r, c, s, stage);
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace

int cmdTrain(int argc, char** argv) { return trainLike(Stage::kTrain, argc, argv); }
int cmdPretrain(int argc, char** argv) { return trainLike(Stage::kPretrain, argc, argv); }
int cmdFinetune(int argc, char** argv) { return trainLike(Stage::kFinetune, argc, argv); }

}  // namespace robustlab
