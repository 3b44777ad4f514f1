#include "experiments/plan/results_io.h"

#include "framework/runtime/cpu_info.h"

#include <torch/version.h>

#include <chrono>
#include <ctime>
#include <map>

namespace robustlab {

void writeResultsHeader(H5File& f, const std::string& configToml, const std::string& command) {
  f.setAttr("/", "format", std::string(kResultsFormat));
  f.setAttr("/", "robustlab_version", std::string(kVersion));
  f.setAttr("/", "config", configToml);
  f.setAttr("/", "command", command);
  f.setAttr("/", "libtorch_version", std::string(TORCH_VERSION));
  writeMachineFacts(f, "/");
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  f.setAttr("/", "created", std::string(buf));
}

namespace {

/// One attack's runs (one per eps) under group g: per-eps columns, the suite's stages, the per-example
/// robustness and predictions, the kept examples. n: the evaluated examples.
void writeAttackRuns(H5File& f, const std::string& g, const std::vector<const AttackRun*>& runs, double n) {
  auto col = [&](auto get) {
    std::vector<double> v;
    for (const auto* run : runs) v.push_back(get(*run));
    return torch::tensor(v, torch::kFloat64);
  };
  f.writeTensor(g + "/eps", col([](const AttackRun& a) { return a.eps; }));
  f.writeTensor(g + "/robust_accuracy", col([](const AttackRun& a) { return a.robustAccuracy; }));
  f.writeTensor(g + "/success_rate", col([](const AttackRun& a) { return a.successRate; }));
  f.writeTensor(g + "/mean_norm", col([](const AttackRun& a) { return a.meanNorm; }));
  f.writeTensor(g + "/max_norm", col([](const AttackRun& a) { return a.maxNorm; }));
  f.writeTensor(g + "/mean_linf", col([](const AttackRun& a) { return a.meanLinf; }));
  f.writeTensor(g + "/mean_l2", col([](const AttackRun& a) { return a.meanL2; }));
  f.writeTensor(g + "/zero_grad_fraction", col([](const AttackRun& a) { return a.zeroGradFraction; }));
  f.writeTensor(g + "/gradient_evaluations", col([](const AttackRun& a) { return static_cast<double>(a.gradientEvaluations); }));
  f.writeTensor(g + "/queries", col([](const AttackRun& a) { return static_cast<double>(a.queries); }));
  f.writeTensor(g + "/seconds", col([](const AttackRun& a) { return a.seconds; }));
  if (!runs.front()->stageNames.empty()) {
    // A suite: robust accuracy after the clean pass and after each member, E x S.
    const auto& stages = runs.front()->stageNames;
    auto acc = torch::zeros({static_cast<int64_t>(runs.size()), static_cast<int64_t>(stages.size())}, torch::kFloat64);
    for (size_t e = 0; e < runs.size(); ++e)
      for (size_t i = 0; i < stages.size() && i < runs[e]->stageRobust.size(); ++i)
        acc[static_cast<int64_t>(e)][static_cast<int64_t>(i)] = static_cast<double>(runs[e]->stageRobust[i]) / n;
    f.writeStrings(g + "/stage_names", stages);
    f.writeTensor(g + "/stage_robust_accuracy", acc);
  }
  std::vector<torch::Tensor> robust, pred, examples;
  for (const auto* run : runs) {
    robust.push_back(run->robust);
    pred.push_back(run->advPred);
    if (run->examples.defined()) examples.push_back(run->examples);
  }
  f.writeTensor(g + "/robust", torch::stack(robust, 1));
  f.writeTensor(g + "/adv_pred", torch::stack(pred, 1));
  // E x K x C x H x W; chunked and compressed (keep_examples = "all" stores every example).
  if (examples.size() == runs.size()) f.writeTensor(g + "/examples", torch::stack(examples, 0).to(torch::kFloat32), /*compress=*/true);
}

void writeSanityChecks(H5File& f, const std::string& group, const EvalResult& r) {
  std::vector<std::string> names, details;
  std::vector<int64_t> passed;
  for (const auto& c : r.checks) {
    names.push_back(c.name);
    details.push_back(c.detail);
    passed.push_back(c.passed ? 1 : 0);
  }
  f.writeStrings(group + "/sanity/names", names);
  f.writeStrings(group + "/sanity/details", details);
  f.writeTensor(group + "/sanity/passed", torch::tensor(passed, torch::kInt64).to(torch::kUInt8));
}

}  // namespace

void writeEvaluation(H5File& f, const std::string& group, const EvalResult& r) {
  f.createGroup(group);
  f.setAttr(group, "clean_accuracy", r.cleanAccuracy);
  f.setAttr(group, "norm", normName(r.norm));
  f.setAttr(group, "precision", precisionName(r.precision));
  f.setAttr(group, "n_examples", static_cast<int64_t>(r.labels.size(0)));
  f.setAttr(group, "robust_accuracy_denominator", std::string("all evaluated examples (clean mistakes count as not robust)"));
  f.setAttr(group, "success_rate_denominator", std::string("clean-correct examples"));
  f.writeTensor(group + "/labels", r.labels);
  f.writeTensor(group + "/clean_pred", r.cleanPred);
  f.writeTensor(group + "/eps", torch::tensor(r.epsGrid, torch::kFloat64));
  f.writeTensor(group + "/worst_accuracy", torch::tensor(r.worstAccuracy, torch::kFloat64));
  f.writeTensor(group + "/raw_worst_accuracy", torch::tensor(r.rawWorstAccuracy, torch::kFloat64));
  f.writeTensor(group + "/worst_robust", r.worstRobust);
  f.writeTensor(group + "/example_inputs", r.exampleInputs.to(torch::kFloat32));

  std::map<std::string, std::vector<const AttackRun*>> byAttack;
  std::vector<std::string> order;
  for (const auto& run : r.runs) {
    if (!byAttack.count(run.attack)) order.push_back(run.attack);
    byAttack[run.attack].push_back(&run);
  }
  for (const auto& name : order) writeAttackRuns(f, group + "/attacks/" + name, byAttack[name], static_cast<double>(r.labels.size(0)));
  writeSanityChecks(f, group, r);
  f.setAttr(group, "failed_sanity_checks", r.failedChecks());
}

StoredEval readEvaluation(const std::string& path, const std::string& group) {
  H5File f(path, H5File::Mode::kRead);
  StoredEval s;
  s.cleanAccuracy = f.attrDouble(group, "clean_accuracy");
  s.eps = f.readTensor(group + "/eps");
  s.worstAccuracy = f.readTensor(group + "/worst_accuracy");
  if (f.has(group + "/attacks")) s.attacks = f.children(group + "/attacks");
  return s;
}

}  // namespace robustlab
