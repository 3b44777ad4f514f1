#include "experiments/cli/cli_common.h"
#include "experiments/cli/commands.h"
#include "experiments/plan/pipeline.h"
#include "experiments/plan/plan.h"
#include "experiments/plan/results_io.h"
#include "experiments/plan/robustbench.h"

#include "attacks/registry.h"
#include "data/h5io.h"
#include "data/tasks.h"
#include "framework/models/checkpoint.h"

#include <cstdio>

namespace robustlab {
namespace {

void addAttackOptions(cxxopts::Options& opts) {
  opts.add_options()
      ("m,checkpoint", "model checkpoint (.h5) to attack", cxxopts::value<std::string>())
      ("model", "a TorchScript classifier (torch.jit.save output) to attack instead, on all classes of data.source (model.torchscript)", cxxopts::value<std::string>())
      ("input-shape", "with --model: its input C,H,W, checked against the data (model.input_shape; default the data's)", cxxopts::value<std::string>())
      ("input-range", "with --model: the value range its inputs live in, lo,hi (model.input_range; default 0,1)", cxxopts::value<std::string>())
      ("a,attack", "comma-separated attacks (attack.attacks): " + attackNameList(), cxxopts::value<std::string>())
      ("norm", "linf | l2 (attack.norm)", cxxopts::value<std::string>())
      ("eps", "comma-separated eps grid, increasing (attack.eps)", cxxopts::value<std::string>())
      ("steps", "iterations of pgd, apgd-*, fab (attack.steps; autoattack uses attack.autoattack_steps)", cxxopts::value<int64_t>())
      ("step-size", "pgd absolute step size, 0: rel-step-size * eps (attack.step_size)", cxxopts::value<double>())
      ("rel-step-size", "pgd step relative to eps, 0: 2.5 / steps (attack.rel_step_size)", cxxopts::value<double>())
      ("restarts", "random restarts, worst case per example (attack.restarts)", cxxopts::value<int64_t>())
      ("no-random-start", "start pgd at the clean input (attack.random_start = false)")
      ("no-early-stop", "keep stepping examples already fooled (attack.early_stop = false)")
      ("targeted", "none | random | least-likely (attack.targeted)", cxxopts::value<std::string>())
      ("limit", "test examples to evaluate, 0: all (data.test_limit)", cxxopts::value<int64_t>()->default_value("1000"))
      ("batch-size", "examples per attack batch (attack.batch_size)", cxxopts::value<int64_t>())
      ("data-dir", "override the data directory stored with the checkpoint (data.dir)", cxxopts::value<std::string>())
      ("save-examples", "store every adversarial example per attack and eps (attack.keep_examples = \"all\")")
      ("no-sanity", "skip the gradient-masking sanity checks (attack.sanity_checks = false)")
      ("precision", "fp32 | bf16 | auto (precision)", cxxopts::value<std::string>())
      ("json", "also write a RobustBench-style JSON entry of the model's evaluation to this file", cxxopts::value<std::string>())
      ("o,out", "results file", cxxopts::value<std::string>()->default_value("results/attack.h5"));
}

/// The attack flags as --set overrides, so they and `--set attack.*` take the same path.
std::vector<std::string> attackOverrides(const cxxopts::ParseResult& args) {
  std::vector<std::string> sets;
  auto list = [](const std::vector<std::string>& items, bool quote) {
    std::string s = "[";
    for (size_t i = 0; i < items.size(); ++i) s += (i ? ", " : "") + (quote ? tomlQuoted(items[i]) : items[i]);
    return s + "]";
  };
  // A comma-separated flag of numbers as a TOML array, each number at full precision.
  auto numbers = [&](const std::string& flag) {
    std::vector<std::string> v;
    char buf[32];
    for (const auto& item : splitList(args[flag].as<std::string>(), "--" + flag)) {
      std::snprintf(buf, sizeof buf, "%.17g", parseNumber(item, "--" + flag));
      v.push_back(buf);
    }
    return list(v, false);
  };
  if (args.count("attack")) sets.push_back("attack.attacks=" + list(splitList(args["attack"].as<std::string>(), "--attack"), true));
  if (args.count("norm")) sets.push_back("attack.norm=" + tomlQuoted(args["norm"].as<std::string>()));
  if (args.count("eps")) sets.push_back("attack.eps=" + numbers("eps"));
  if (args.count("steps")) sets.push_back("attack.steps=" + std::to_string(args["steps"].as<int64_t>()));
  if (args.count("step-size")) sets.push_back("attack.step_size=" + std::to_string(args["step-size"].as<double>()));
  if (args.count("rel-step-size")) sets.push_back("attack.rel_step_size=" + std::to_string(args["rel-step-size"].as<double>()));
  if (args.count("restarts")) sets.push_back("attack.restarts=" + std::to_string(args["restarts"].as<int64_t>()));
  if (args.count("no-random-start")) sets.push_back("attack.random_start=false");
  if (args.count("no-early-stop")) sets.push_back("attack.early_stop=false");
  if (args.count("targeted")) sets.push_back("attack.targeted=" + tomlQuoted(args["targeted"].as<std::string>()));
  if (args.count("batch-size")) sets.push_back("attack.batch_size=" + std::to_string(args["batch-size"].as<int64_t>()));
  if (args.count("no-sanity")) sets.push_back("attack.sanity_checks=false");
  if (args.count("save-examples")) sets.push_back("attack.keep_examples=\"all\"");
  if (args.count("precision")) sets.push_back("precision=" + tomlQuoted(args["precision"].as<std::string>()));
  if (args.count("data-dir")) sets.push_back("data.dir=" + tomlQuoted(args["data-dir"].as<std::string>()));
  if (args.count("model")) {
    sets.push_back("model.arch=\"torchscript\"");
    sets.push_back("model.torchscript=" + tomlQuoted(args["model"].as<std::string>()));
    if (args.count("input-shape")) sets.push_back("model.input_shape=" + numbers("input-shape"));
    if (args.count("input-range")) sets.push_back("model.input_range=" + numbers("input-range"));
  } else if (args.count("input-shape") || args.count("input-range")) {
    throw std::invalid_argument("attack: --input-shape and --input-range describe a --model (TorchScript) file");
  }
  sets.push_back("data.test_limit=" + std::to_string(args["limit"].as<int64_t>()));
  return sets;
}

/// The checkpoint's own test split: its classes, relabelled as in training, `data.test_limit` of them.
Dataset checkpointTestSet(const std::string& ckpt, const Config& c, const ClassifierImpl& model) {
  std::vector<int64_t> classes;
  {
    H5File f(ckpt, H5File::Mode::kRead);
    if (f.has("/task/classes")) {
      auto t = f.readTensor("/task/classes");
      classes.assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
    }
  }
  Dataset test = selectClasses(loadSplit(c.data.source, "test"), classes);
  test = sampleSubset(test, c.data.testLimit, c.seed + 19);
  if (test.numClasses != model.spec().numClasses)
    throw std::runtime_error(ckpt + ": model has " + std::to_string(model.spec().numClasses) + " classes but its task has " +
                             std::to_string(test.numClasses));
  return test;
}

/// Evaluates a model and writes the results file: the part shared by checkpoints and TorchScript files.
void evaluateAndWrite(const cxxopts::ParseResult& args, int argc, char** argv, const Config& c, ClassifierImpl& model,
                      const Dataset& test, torch::Device device, const std::string& source, const std::string& sourceAttr) {
  const EvalOptions e = evalOptionsFrom(c);
  useEvalThreads(c);
  const EvalResult r = evaluate(model, test, e, device);
  printEvalTable(r);
  const std::string out = args["out"].as<std::string>();
  writeH5Atomically(out, [&](H5File& f) {
    writeResultsHeader(f, c.toToml(), commandLine(argc, argv));
    f.setAttr("/", sourceAttr, source);
    if (model.spec().arch == "torchscript") f.setAttr("/", "torchscript_sha256", model.spec().torchscriptSha256);
    writeEvaluation(f, "/eval/model", r);
  });
  std::printf("wrote %s\n", out.c_str());
  if (args.count("json")) {
    const std::string json = args["json"].as<std::string>();
    writeRobustBenchJson(json, {{evalNumbers(r), ModelEntry{source, c.data.source.source, entryArchitecture(model.spec()), stableHash(c.toToml())}}});
    std::printf("wrote %s\n", json.c_str());
  }
}

/// `attack --model file.pt`: a TorchScript classifier on every class of data.source's test split.
int attackTorchScript(const cxxopts::ParseResult& args, int argc, char** argv) {
  Config c = resolveConfig(args, ConfigBase{}, attackOverrides(args));
  if (maybeDumpConfig(args, c)) return 0;
  const torch::Device device = setUpRuntime(c);
  const Dataset test = sampleSubset(loadSplit(c.data.source, "test"), c.data.testLimit, c.seed + 19);
  Classifier model(specFor(c, test));
  model->to(device);
  evaluateAndWrite(args, argc, argv, c, *model, test, device, c.model.torchscript, "torchscript");
  return 0;
}

}  // namespace

int cmdAttack(int argc, char** argv) {
  cxxopts::Options opts("robustlab attack",
                        "Evaluate a saved model under attack on real test data; prints a table and writes HDF5. The settings are the "
                        "checkpoint's stored config, then --config's [attack] and other sections, then --set, then the flags below.");
  addConfigOptions(opts);
  addAttackOptions(opts);
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  if (args.count("checkpoint") == args.count("model")) throw std::invalid_argument("attack: give --checkpoint or --model (one of them)");
  if (args.count("model")) return attackTorchScript(args, argc, argv);
  const std::string ckpt = args["checkpoint"].as<std::string>();

  // The task (data source and classes) comes from the checkpoint's own config.
  const std::string stored = readCheckpointConfig(ckpt);
  const auto extra = attackOverrides(args);
  Config c = resolveConfig(args, stored.empty() ? ConfigBase{} : ConfigBase{stored, ckpt + " (stored config)"}, extra);
  if (maybeDumpConfig(args, c)) return 0;
  const torch::Device device = setUpRuntime(c);
  Classifier model = loadClassifier(ckpt);
  model->to(device);
  const Dataset test = checkpointTestSet(ckpt, c, *model);
  evaluateAndWrite(args, argc, argv, c, *model, test, device, ckpt, "checkpoint");
  return 0;
}

}  // namespace robustlab
