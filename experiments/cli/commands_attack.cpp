#include "experiments/cli/cli_common.h"
#include "experiments/cli/commands.h"
#include "experiments/plan/pipeline.h"
#include "experiments/plan/plan.h"
#include "experiments/plan/results_io.h"
#include "experiments/plan/robustbench.h"

#include "attacks/registry.h"
#include "data/atomic_write.h"
#include "framework/distributed/communicator.h"
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
      ("mean", "with --model: the input mean the model expects subtracted (normalisation outside the script), one number or one per channel: 0.4914,0.4822,0.4465 (model.mean; default 0)", cxxopts::value<std::string>())
      ("std", "with --model: the input standard deviation the model expects divided by, one number or one per channel (model.std; default 1)", cxxopts::value<std::string>())
      ("a,attack", "comma-separated attacks (attack.attacks): " + attackNameList(), cxxopts::value<std::string>())
      ("norm", "linf | l2 | l1 (attack.norm; l1: the apgd attacks and autoattack)", cxxopts::value<std::string>())
      ("eps", "comma-separated eps grid, increasing, numbers or fractions: 0,2/255,8/255 (attack.eps)", cxxopts::value<std::string>())
      ("steps", "iterations of pgd, apgd-*, fab (attack.steps; autoattack uses attack.autoattack_steps)", cxxopts::value<int64_t>())
      ("step-size", "pgd absolute step size (2/255 or 0.0078), 0: rel-step-size * eps (attack.step_size)", cxxopts::value<std::string>())
      ("rel-step-size", "pgd step relative to eps, 0: 2.5 / steps (attack.rel_step_size)", cxxopts::value<std::string>())
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
  // Each flag is the --set of its key; an error about its value names the flag as it was given.
  auto add = [&](const std::string& flag, const std::string& given, const std::string& keyValue) {
    sets.push_back(overrideFrom("--" + flag + (given.empty() ? "" : " " + given), keyValue));
  };
  auto text = [&](const std::string& flag) { return args[flag].as<std::string>(); };
  auto integer = [&](const std::string& flag) { return std::to_string(args[flag].as<int64_t>()); };
  auto number = [&](const std::string& flag) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", parseNumber(text(flag), "--" + flag));
    return std::string(buf);
  };
  if (args.count("attack")) add("attack", text("attack"), "attack.attacks=" + list(splitList(text("attack"), "--attack"), true));
  if (args.count("norm")) add("norm", text("norm"), "attack.norm=" + tomlQuoted(text("norm")));
  if (args.count("eps")) add("eps", text("eps"), "attack.eps=" + numbers("eps"));
  if (args.count("steps")) add("steps", integer("steps"), "attack.steps=" + integer("steps"));
  if (args.count("step-size")) add("step-size", text("step-size"), "attack.step_size=" + number("step-size"));
  if (args.count("rel-step-size")) add("rel-step-size", text("rel-step-size"), "attack.rel_step_size=" + number("rel-step-size"));
  if (args.count("restarts")) add("restarts", integer("restarts"), "attack.restarts=" + integer("restarts"));
  if (args.count("no-random-start")) add("no-random-start", "", "attack.random_start=false");
  if (args.count("no-early-stop")) add("no-early-stop", "", "attack.early_stop=false");
  if (args.count("targeted")) add("targeted", text("targeted"), "attack.targeted=" + tomlQuoted(text("targeted")));
  if (args.count("batch-size")) add("batch-size", integer("batch-size"), "attack.batch_size=" + integer("batch-size"));
  if (args.count("no-sanity")) add("no-sanity", "", "attack.sanity_checks=false");
  if (args.count("save-examples")) add("save-examples", "", "attack.keep_examples=\"all\"");
  if (args.count("precision")) add("precision", text("precision"), "precision=" + tomlQuoted(text("precision")));
  if (args.count("data-dir")) add("data-dir", text("data-dir"), "data.dir=" + tomlQuoted(text("data-dir")));
  if (args.count("model")) {
    add("model", text("model"), "model.arch=\"torchscript\"");
    add("model", text("model"), "model.torchscript=" + tomlQuoted(text("model")));
    if (args.count("input-shape")) add("input-shape", text("input-shape"), "model.input_shape=" + numbers("input-shape"));
    if (args.count("input-range")) add("input-range", text("input-range"), "model.input_range=" + numbers("input-range"));
    // One number for every channel, or one per channel: 0.4914,0.4822,0.4465
    auto oneOrList = [&](const std::string& flag) { return splitList(text(flag), "--" + flag).size() == 1 ? number(flag) : numbers(flag); };
    if (args.count("mean")) add("mean", text("mean"), "model.mean=" + oneOrList("mean"));
    if (args.count("std")) add("std", text("std"), "model.std=" + oneOrList("std"));
  } else if (args.count("input-shape") || args.count("input-range") || args.count("mean") || args.count("std")) {
    throw std::invalid_argument("attack: --input-shape, --input-range, --mean and --std describe a --model (TorchScript) file");
  }
  add("limit", integer("limit"), "data.test_limit=" + integer("limit"));
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
  if (e.comm && e.comm->rank() != 0) {
    // A data-parallel rank other than 0 attacks its share of the examples; rank 0 writes.
    useEvalThreads(c);
    evaluate(model, test, e, device);
    return;
  }
  // Every output is checked before the work and moved into place together after it: all or none.
  OutputSet outputs;
  const std::string out = args["out"].as<std::string>(), json = args.count("json") ? args["json"].as<std::string>() : "";
  outputs.declare(out, "-o");
  if (!json.empty()) outputs.declare(json, "--json");
  useEvalThreads(c);
  const EvalResult r = evaluate(model, test, e, device);
  printEvalTable(r);
  // A model fed inputs it does not expect scores about chance, silently: say so.
  const double chance = 1.0 / static_cast<double>(model.spec().numClasses);
  const bool nearChance = r.cleanAccuracy <= 1.5 * chance;
  if (nearChance)
    std::fprintf(stderr, "warning: clean accuracy %.1f%% is near chance (%.1f%% for %lld classes): check the input range and normalisation the model expects (--input-range, --mean, --std; model.input_range, model.mean, model.std)\n",
                 100.0 * r.cleanAccuracy, 100.0 * chance, static_cast<long long>(model.spec().numClasses));
  outputs.stage(out, h5Bytes(out, [&](H5File& f) {
    writeResultsHeader(f, c.toToml(), commandLine(argc, argv));
    f.setAttr("/", sourceAttr, source);
    if (model.spec().arch == "torchscript") f.setAttr("/", "torchscript_sha256", model.spec().torchscriptSha256);
    f.setAttr("/", "preprocessing", entryPreprocessing(model.spec()));
    if (nearChance) f.setAttr("/", "warning", std::string("clean accuracy near chance: check the input range and normalisation"));
    writeEvaluation(f, "/eval/model", r);
    // Which images of the data source's test split were evaluated, in order (python/robustlab_io.py reads them).
    if (test.sourceIndex.defined()) f.writeTensor("/test_indices", test.sourceIndex.contiguous());
  }));
  if (!json.empty())
    outputs.stage(json, robustBenchJsonText({{evalNumbers(r), ModelEntry{source, c.data.source.source, entryArchitecture(model.spec()),
                                                                          stableHash(c.toToml()), entryPreprocessing(model.spec())}}}));
  outputs.commit();
  std::printf("wrote %s\n", out.c_str());
  if (!json.empty()) std::printf("wrote %s\n", json.c_str());
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
  opts.add_options()("nproc", "run as N data-parallel ranks on this machine, each attacking its share of the examples (README: scaling out)",
                     cxxopts::value<int>());
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
