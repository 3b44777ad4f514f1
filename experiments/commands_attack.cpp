#include "experiments/cli_common.h"
#include "experiments/commands.h"
#include "experiments/pipeline.h"
#include "experiments/results_io.h"

#include "data/h5io.h"
#include "data/tasks.h"
#include "framework/checkpoint.h"

#include <cstdio>

namespace robustlab {

int cmdAttack(int argc, char** argv) {
  cxxopts::Options opts("robustlab attack", "Evaluate a saved model under attack on real test data; prints a table and writes HDF5");
  opts.add_options()
      ("m,checkpoint", "model checkpoint (.h5) to attack", cxxopts::value<std::string>())
      ("a,attack", "comma-separated attacks: fgsm, pgd, apgd-ce", cxxopts::value<std::string>()->default_value("fgsm,pgd"))
      ("norm", "linf | l2", cxxopts::value<std::string>()->default_value("linf"))
      ("eps", "comma-separated eps grid, increasing", cxxopts::value<std::string>()->default_value("0,0.05,0.1,0.2"))
      ("steps", "iterations of pgd / apgd-ce", cxxopts::value<int64_t>()->default_value("20"))
      ("step-size", "pgd absolute step size (0: rel-step-size * eps)", cxxopts::value<double>()->default_value("0"))
      ("rel-step-size", "pgd step relative to eps (0: 2.5 / steps)", cxxopts::value<double>()->default_value("0"))
      ("restarts", "random restarts (worst case per example)", cxxopts::value<int64_t>()->default_value("1"))
      ("no-random-start", "start pgd at the clean input")
      ("no-early-stop", "keep stepping examples already fooled (same accuracy, for timing)")
      ("targeted", "none | random | least-likely", cxxopts::value<std::string>()->default_value("none"))
      ("limit", "test examples to evaluate (0: all)", cxxopts::value<int64_t>()->default_value("1000"))
      ("batch-size", "examples per attack batch", cxxopts::value<int64_t>()->default_value("500"))
      ("data-dir", "override the data directory stored with the checkpoint", cxxopts::value<std::string>()->default_value(""))
      ("no-sanity", "skip the gradient-masking sanity checks")
      ("seed", "attack seed", cxxopts::value<int64_t>()->default_value("0"))
      ("device", "auto | cpu | cuda", cxxopts::value<std::string>()->default_value("auto"))
      ("threads", "intra-op CPU threads (0: measured default)", cxxopts::value<int64_t>()->default_value("0"))
      ("precision", "fp32 | bf16 | auto", cxxopts::value<std::string>()->default_value("fp32"))
      ("o,out", "results file (default results/attack.h5)", cxxopts::value<std::string>()->default_value("results/attack.h5"))
      ("q,quiet", "no progress output")
      ("h,help", "show this help");
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  if (!args.count("checkpoint")) throw std::invalid_argument("attack: --checkpoint is required");
  const std::string ckpt = args["checkpoint"].as<std::string>();

  // The task (data source and classes) comes from the checkpoint's own config.
  const std::string stored = readCheckpointConfig(ckpt);
  Config c = stored.empty() ? loadConfig("") : parseConfig(stored, ckpt + " (stored config)");
  c.device = args["device"].as<std::string>();
  c.threads = args["threads"].as<int64_t>();
  c.seed = static_cast<uint64_t>(args["seed"].as<int64_t>());
  if (!args["data-dir"].as<std::string>().empty()) c.data.source.dir = args["data-dir"].as<std::string>();
  const torch::Device device = setUpRuntime(c);
  Classifier model = loadClassifier(ckpt);
  model->to(device);
  std::vector<int64_t> classes;
  {
    H5File f(ckpt, H5File::Mode::kRead);
    if (f.has("/task/classes")) {
      auto t = f.readTensor("/task/classes");
      classes.assign(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
    }
  }
  Dataset test = selectClasses(loadSplit(c.data.source, "test"), classes);
  test = sampleSubset(test, args["limit"].as<int64_t>(), c.seed + 19);
  if (test.numClasses != model->spec().numClasses)
    throw std::runtime_error(ckpt + ": model has " + std::to_string(model->spec().numClasses) + " classes but its task has " +
                             std::to_string(test.numClasses));

  EvalOptions e;
  AttackOptions o;
  o.steps = args["steps"].as<int64_t>();
  o.stepSize = args["step-size"].as<double>();
  o.relStepSize = args["rel-step-size"].as<double>();
  o.restarts = args["restarts"].as<int64_t>();
  o.randomStart = !args.count("no-random-start");
  o.earlyStop = !args.count("no-early-stop");
  o.targeting = parseTargeting(args["targeted"].as<std::string>());
  o.seed = c.seed;
  for (const auto& name : splitList(args["attack"].as<std::string>())) e.attacks.push_back({name, o});
  for (const auto& v : splitList(args["eps"].as<std::string>())) {
    try {
      e.epsGrid.push_back(std::stod(v));
    } catch (const std::exception&) {
      throw std::invalid_argument("--eps: '" + v + "' is not a number");
    }
  }
  e.norm = parseNorm(args["norm"].as<std::string>());
  e.batchSize = args["batch-size"].as<int64_t>();
  e.sanityChecks = !args.count("no-sanity");
  e.precision = parsePrecision(args["precision"].as<std::string>());
  c.precision = precisionName(e.precision);
  e.validate();

  useEvalThreads(c);
  const EvalResult r = evaluate(*model, test, e, device);
  printEvalTable(r);
  const std::string out = args["out"].as<std::string>();
  writeH5Atomically(out, [&](H5File& f) {
    writeResultsHeader(f, c.toToml(), commandLine(argc, argv));
    f.setAttr("/", "checkpoint", ckpt);
    writeEvaluation(f, "/eval/model", r);
  });
  std::printf("wrote %s\n", out.c_str());
  return 0;
}

}  // namespace robustlab
