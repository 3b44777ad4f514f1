#include "attacks/evaluation/evaluation.h"

#include "framework/distributed/communicator.h"

#include "attacks/registry.h"
#include "attacks/evaluation/sanity.h"
#include "framework/runtime/progress.h"
#include "framework/models/predict.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <stdexcept>

namespace robustlab {

void EvalOptions::validate() const {
  if (attacks.empty()) throw std::invalid_argument("attacks: at least one attack is needed");
  if (epsGrid.empty()) throw std::invalid_argument("eps: at least one eps is needed");
  for (size_t i = 0; i < epsGrid.size(); ++i) {
    if (!(epsGrid[i] >= 0)) throw std::invalid_argument("eps: values must be >= 0");
    if (i > 0 && !(epsGrid[i] > epsGrid[i - 1])) throw std::invalid_argument("eps: values must be strictly increasing");
  }
  if (batchSize <= 0) throw std::invalid_argument("batch_size: must be > 0");
  for (const auto& a : attacks) {
    AttackOptions o = a.options;
    o.norm = norm;
    makeAttack(a.name, o);  // validates the name and the options
  }
}

int64_t EvalResult::failedChecks() const {
  int64_t n = 0;
  for (const auto& c : checks) n += c.passed ? 0 : 1;
  return n;
}

const AttackRun* EvalResult::find(const std::string& attack, double eps) const {
  for (const auto& r : runs)
    if (r.attack == attack && r.eps == eps) return &r;
  return nullptr;
}

namespace {

/// A model whose outputs are NaN or Inf (diverged training, a corrupt checkpoint) has no accuracy:
/// argmax of NaN logits is an arbitrary class, so the evaluation refuses to report a number.
void checkFiniteOutputs(ClassifierImpl& model, const Dataset& data, torch::Device device, int64_t batchSize) {
  torch::NoGradGuard noGrad;
  EvalModeGuard eval(model);
  const auto logits = model.forward(data.images.slice(0, 0, std::min(data.size(), batchSize)).to(device));
  if (!torch::isfinite(logits).all().item<bool>())
    throw std::runtime_error("the model's outputs hold NaN or Inf on the test images (diverged training or a corrupt checkpoint); "
                             "no accuracy is reported");
}

/// The model's predictions on rows [first, last) of `data`: a data-parallel rank's share (rankShare),
/// empty when the rank has none.
torch::Tensor predictRows(ClassifierImpl& model, const Dataset& data, torch::Device device, int64_t batchSize, int64_t first, int64_t last) {
  return first < last ? predict(model, data.images.slice(0, first, last), device, batchSize) : torch::empty({0}, torch::kInt64);
}

/// The model's prediction on every example. A data-parallel rank predicts its share (as the attacks
/// split the examples) and the shares are gathered in rank order: every rank holds all.
torch::Tensor cleanPredictions(ClassifierImpl& model, const Dataset& data, torch::Device device, int64_t batchSize, Communicator* comm) {
  if (!comm) return predict(model, data.images, device, batchSize);
  const auto [first, last] = rankShare(comm, data.size());
  return comm->allGather(predictRows(model, data, device, batchSize, first, last));
}

/// An eps-0 attack returns its input (the eps_zero_identity sanity check runs the real attacks at
/// eps 0 to prove it), so the clean predictions are its result.
AttackRun zeroEpsRun(const AttackSpec& spec, const EvalResult& r) {
  AttackRun run;
  const auto attack = makeAttack(spec.name, spec.options);
  run.attack = attack->name();
  run.eps = 0;
  run.stageNames = attack->stages();
  run.stageRobust.assign(run.stageNames.size(), r.cleanCorrect.sum().item<int64_t>());
  run.advPred = r.cleanPred.clone();
  run.robust = r.cleanCorrect.clone();
  run.robustAccuracy = r.cleanAccuracy;
  run.examples = r.exampleInputs.to(torch::kFloat32);
  return run;
}

/// The run's accuracy, success rate and perturbation norms from its per-batch pieces.
void summarise(AttackRun& run, const EvalResult& r, Norm norm, const std::vector<torch::Tensor>& preds, const std::vector<torch::Tensor>& linf,
               const std::vector<torch::Tensor>& l2, const std::vector<torch::Tensor>& own) {
  const int64_t cleanCorrectCount = r.cleanCorrect.sum().item<int64_t>();
  run.advPred = torch::cat(preds);
  run.robust = r.cleanCorrect & run.advPred.eq(r.labels);
  run.robustAccuracy = run.robust.to(torch::kFloat64).mean().item<double>();
  const auto fooled = r.cleanCorrect & run.advPred.ne(r.labels);
  run.successRate = cleanCorrectCount ? fooled.sum().item<double>() / static_cast<double>(cleanCorrectCount) : 0.0;
  const auto linfAll = torch::cat(linf), l2All = torch::cat(l2);
  const auto ownNorm = norm == Norm::kLinf ? linfAll : norm == Norm::kL2 ? l2All : torch::cat(own);
  run.maxNorm = ownNorm.max().item<double>();
  run.meanNorm = fooled.any().item<bool>() ? ownNorm.index({fooled}).mean().item<double>() : 0.0;
  run.meanLinf = linfAll.mean().item<double>();
  run.meanL2 = l2All.mean().item<double>();
}

/// A suite's per-stage robust counts of one batch, added to the run's.
void addStages(AttackRun& run, const AttackStats& s) {
  if (s.stageNames.empty()) return;
  if (run.stageNames.empty()) {
    run.stageNames = s.stageNames;
    run.stageRobust.assign(s.stageRobust.size(), 0);
  }
  for (size_t i = 0; i < s.stageRobust.size() && i < run.stageRobust.size(); ++i) run.stageRobust[i] += s.stageRobust[i];
}

/// A data-parallel rank's per-batch pieces made whole: every rank's, gathered in rank order (the
/// ranks hold contiguous shares in order), and the counters summed.
void gatherRun(Communicator& comm, AttackRun& run, std::vector<torch::Tensor>& preds, std::vector<torch::Tensor>& linf,
               std::vector<torch::Tensor>& l2, std::vector<torch::Tensor>& own, int64_t& zero, int64_t& total) {
  for (auto* part : {&preds, &linf, &l2, &own})
    if (!part->empty()) *part = {comm.allGather(torch::cat(*part))};
  run.examples = comm.allGather(run.examples);
  std::vector<int64_t> counts{zero, total, run.gradientEvaluations, run.queries};
  counts.insert(counts.end(), run.stageRobust.begin(), run.stageRobust.end());
  counts = comm.sum(counts);
  zero = counts[0];
  total = counts[1];
  run.gradientEvaluations = counts[2];
  run.queries = counts[3];
  std::copy(counts.begin() + 4, counts.end(), run.stageRobust.begin());
}

/// One attack at one eps > 0 over the whole set, batch by batch (as a data-parallel rank: over its share).
AttackRun attackRun(ClassifierImpl& model, const Dataset& data, const AttackSpec& spec, double eps, const EvalOptions& options,
                    torch::Device device, const EvalResult& r, Progress& progress) {
  const int64_t n = data.size(), keep = r.exampleInputs.size(0);
  AttackOptions o = spec.options;
  o.eps = eps;
  o.norm = options.norm;
  auto attack = makeAttack(spec.name, o);
  AttackRun run;
  run.attack = attack->name();
  run.eps = eps;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<torch::Tensor> preds, linf, l2, own;
  int64_t zero = 0, total = 0;
  char status[64];
  std::snprintf(status, sizeof status, "%s eps=%g", run.attack.c_str(), eps);
  Communicator* comm = severalRanks(options.comm);
  const auto [first, last] = rankShare(comm, n);
  if (comm) {
    // Every rank's pieces exist, even a rank with no rows or no kept examples, for the gathers to match.
    run.stageNames = attack->stages();
    run.stageRobust.assign(run.stageNames.size(), 0);
    run.examples = torch::empty({0, data.channels(), data.height(), data.width()}, torch::kFloat32);
    for (auto* part : {&preds, &linf, &l2, &own}) part->push_back(torch::empty({0}, part == &preds ? torch::kInt64 : torch::kFloat32));
  }
  for (int64_t b = first; b < last; b += options.batchSize) {
    const int64_t e = std::min(last, b + options.batchSize);
    const auto xb = data.images.slice(0, b, e);
    // Within a batch (a suite's batch may take minutes): the attack's own estimate, and its stage.
    const int64_t before = progress.done();
    attack->setProgressHook([&, before, rows = e - b](double share, const std::string& stage) {
      progress.advanceTo(before + static_cast<int64_t>(share * static_cast<double>(rows)), stage.empty() ? status : std::string(status) + " " + stage);
    });
    const auto xadv = attack->perturb(model, xb.to(device), data.labels.slice(0, b, e).to(device)).cpu();
    zero += attack->stats().zeroGradElements;
    total += attack->stats().gradElements;
    run.gradientEvaluations += attack->stats().gradientEvaluations;
    run.queries += attack->stats().queries;
    addStages(run, attack->stats());
    preds.push_back(predict(model, xadv, device, options.batchSize));
    const auto delta = xadv - xb;
    linf.push_back(perExampleNorm(delta, Norm::kLinf));
    l2.push_back(perExampleNorm(delta, Norm::kL2));
    if (options.norm == Norm::kL1) own.push_back(perExampleNorm(delta, Norm::kL1));
    if (b < keep) {
      const auto part = xadv.slice(0, 0, std::min(keep - b, e - b)).to(torch::kFloat32);
      run.examples = run.examples.defined() ? torch::cat({run.examples, part}) : part;
    }
    progress.advanceTo(before + (e - b), status);
  }
  if (comm) gatherRun(*comm, run, preds, linf, l2, own, zero, total);
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  summarise(run, r, options.norm, preds, linf, l2, own);
  run.zeroGradFraction = total ? static_cast<double>(zero) / static_cast<double>(total) : 0.0;
  return run;
}

/// Worst case over attacks per eps, and its envelope: fooled at a smaller eps means fooled at every
/// larger one, so the envelope never rises.
void worstCase(EvalResult& r) {
  const int64_t n = r.labels.size(0), E = static_cast<int64_t>(r.epsGrid.size());
  r.worstRobust = torch::zeros({n, E}, torch::kBool);
  auto envelope = r.cleanCorrect.clone();
  for (int64_t e = 0; e < E; ++e) {
    auto raw = r.cleanCorrect.clone();
    for (const auto& run : r.runs)
      if (run.eps == r.epsGrid[e]) raw &= run.robust;
    r.rawWorstAccuracy.push_back(raw.to(torch::kFloat64).mean().item<double>());
    envelope &= raw;
    r.worstRobust.select(1, e).copy_(envelope);
    r.worstAccuracy.push_back(envelope.to(torch::kFloat64).mean().item<double>());
  }
}

}  // namespace

double sharedAccuracy(ClassifierImpl& model, const Dataset& d, torch::Device device, Communicator* comm, int64_t batchSize) {
  if (!comm || comm->size() == 1 || d.size() == 0) return accuracy(model, d, device, batchSize);
  const auto [a, b] = rankShare(comm, d.size());
  const int64_t right = predictRows(model, d, device, batchSize, a, b).eq(d.labels.slice(0, a, b)).sum().item<int64_t>();
  return static_cast<double>(comm->sum(std::vector<int64_t>{right})[0]) / static_cast<double>(d.size());
}

EvalResult evaluate(ClassifierImpl& model, const Dataset& data, const EvalOptions& options, torch::Device device) {
  options.validate();
  model.to(device);
  PrecisionGuard precision(options.precision);
  const int64_t n = data.size();
  EvalResult r;
  r.norm = options.norm;
  r.precision = options.precision;
  r.epsGrid = options.epsGrid;
  r.labels = data.labels.clone();
  for (const auto& a : options.attacks)
    if (model.spec().numClasses < attackMinClasses(a.name))
      throw std::invalid_argument("attack " + canonicalAttackName(a.name) + ": needs at least " + std::to_string(attackMinClasses(a.name)) +
                                  " classes, the model has " + std::to_string(model.spec().numClasses));
  checkFiniteOutputs(model, data, device, options.batchSize);
  r.cleanPred = cleanPredictions(model, data, device, options.batchSize, severalRanks(options.comm));
  r.cleanCorrect = r.cleanPred.eq(r.labels);
  r.cleanAccuracy = r.cleanCorrect.to(torch::kFloat64).mean().item<double>();
  r.exampleInputs = data.images.slice(0, 0, (options.keepExamples < 0 ? n : std::min(options.keepExamples, n))).clone();

  // eps 0 costs nothing (the clean predictions): the bar counts the attacked examples only.
  const auto attacked = std::count_if(options.epsGrid.begin(), options.epsGrid.end(), [](double eps) { return eps != 0; });
  // A data-parallel rank counts its own share (rank 0's bar speaks for all).
  const auto [first, last] = rankShare(severalRanks(options.comm), n);
  Progress progress("attack", static_cast<int64_t>(options.attacks.size()) * attacked * (last - first), options.progress);
  for (const auto& spec : options.attacks) {
    for (double eps : options.epsGrid) {
      if (eps == 0) {
        r.runs.push_back(zeroEpsRun(spec, r));
        continue;
      }
      r.runs.push_back(attackRun(model, data, spec, eps, options, device, r, progress));
    }
  }
  progress.finish();
  worstCase(r);
  // Every rank: the checks share their examples between the ranks and agree on every verdict.
  if (options.sanityChecks) runSanityChecks(model, data, options, device, r);
  return r;
}

void printEvalTable(const EvalResult& r) {
  std::printf("clean accuracy: %.2f%% (%lld examples), norm %s\n", 100.0 * r.cleanAccuracy,
              static_cast<long long>(r.labels.size(0)), normName(r.norm).c_str());
  std::printf("%-10s %8s %10s %10s %10s %10s %9s\n", "attack", "eps", "robust%", "success%", "mean|d|", "max|d|", "seconds");
  const double n = static_cast<double>(r.labels.size(0));
  for (const auto& run : r.runs) {
    std::printf("%-10s %8.4g %10.2f %10.2f %10.4g %10.4g %9.2f\n", run.attack.c_str(), run.eps, 100.0 * run.robustAccuracy,
                100.0 * run.successRate, run.meanNorm, run.maxNorm, run.seconds);
    if (run.eps > 0)
      for (size_t i = 1; i < run.stageNames.size(); ++i)
        std::printf("  after %-12s %10.2f\n", run.stageNames[i].c_str(), 100.0 * static_cast<double>(run.stageRobust[i]) / n);
  }
  for (size_t e = 0; e < r.epsGrid.size(); ++e)
    std::printf("%-10s %8.4g %10.2f   (worst case over attacks and smaller eps)\n", "worst", r.epsGrid[e], 100.0 * r.worstAccuracy[e]);
  for (const auto& c : r.checks)
    if (!c.passed) std::printf("WARNING: sanity check %s failed: %s\n", c.name.c_str(), c.detail.c_str());
  std::printf("sanity checks: %lld of %zu passed\n", static_cast<long long>(r.checks.size() - r.failedChecks()), r.checks.size());
}

}  // namespace robustlab
