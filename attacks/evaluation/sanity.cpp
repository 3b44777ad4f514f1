#include "attacks/evaluation/sanity.h"

#include "attacks/registry.h"
#include "data/tasks.h"
#include "framework/distributed/communicator.h"
#include "framework/models/predict.h"

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <sstream>

namespace robustlab {
namespace {

std::string pct(double v) {
  std::ostringstream os;
  os.precision(4);
  os << 100.0 * v << "%";
  return os.str();
}

/// The sanity checks' examples as data-parallel ranks share them: each rank attacks its contiguous
/// share (`mine`) and the counts are summed over the ranks; one process holds them all.
struct Share {
  Dataset mine;
  int64_t total = 0;           ///< examples over all ranks
  Communicator* comm = nullptr;

  Share(const Dataset& all, Communicator* c) : total(all.size()), comm(c) {
    const auto [first, last] = rankShare(comm, total);
    mine = comm ? all.select(torch::arange(first, last, torch::kInt64)) : all;
  }
  /// `count` summed over the ranks (one process: itself).
  int64_t sum(int64_t count) const { return comm ? comm->sum(std::vector<int64_t>{count})[0] : count; }
  /// Share of all examples that `count` (this rank's) makes, summed over the ranks.
  double fraction(int64_t count) const { return static_cast<double>(sum(count)) / static_cast<double>(total); }
  double max(double v) const {
    return comm ? comm->allGather(torch::tensor({v}, torch::kFloat64)).max().item<double>() : v;
  }
};

/// Robust accuracy of one attack over the shared examples (clean mistakes count as not robust).
double robustAccuracy(ClassifierImpl& model, const Share& share, const std::string& name, const AttackOptions& o,
                      torch::Device device, int64_t batchSize, double* maxChange = nullptr) {
  auto attack = makeAttack(name, o);
  const Dataset& data = share.mine;
  int64_t robust = 0;
  double change = 0;
  for (int64_t b = 0; b < data.size(); b += batchSize) {
    const int64_t e = std::min(data.size(), b + batchSize);
    const auto xb = data.images.slice(0, b, e), yb = data.labels.slice(0, b, e);
    const auto xadv = attack->perturb(model, xb.to(device), yb.to(device)).cpu();
    change = std::max(change, (xadv - xb).abs().max().item<double>());
    robust += predict(model, xadv, device, batchSize).eq(yb).sum().item<int64_t>();
  }
  if (maxChange) *maxChange = share.max(change);
  return share.fraction(robust);
}

const AttackSpec* findSpec(const EvalOptions& options, const std::string& name) {
  for (const auto& a : options.attacks)
    if (a.name == name) return &a;
  return nullptr;
}

}  // namespace

namespace {

/// PGD must not be weaker than its own first step.
void checkPgdNotWeakerThanFgsm(const EvalOptions& options, double slack, EvalResult& r) {
  if (!findSpec(options, "pgd") || !findSpec(options, "fgsm")) return;
  SanityCheck c{"pgd_not_weaker_than_fgsm", true, "PGD accuracy <= FGSM accuracy at every eps"};
  for (double eps : options.epsGrid) {
    const auto *p = r.find("pgd", eps), *f = r.find("fgsm", eps);
    if (p && f && p->robustAccuracy > f->robustAccuracy + slack) {
      c.passed = false;
      c.detail = "at eps " + std::to_string(eps) + " PGD leaves " + pct(p->robustAccuracy) + " but FGSM " +
                 pct(f->robustAccuracy) + ": gradient masking or a too-small PGD step";
    }
  }
  r.checks.push_back(c);
}

void checkMonotoneInEps(const EvalOptions& options, double slack, EvalResult& r) {
  SanityCheck c{"monotone_in_eps", true, "no attack's raw accuracy rises with eps"};
  for (const auto& spec : options.attacks) {
    const AttackRun* prev = nullptr;
    for (double eps : options.epsGrid) {
      const auto* cur = r.find(makeAttack(spec.name, spec.options)->name(), eps);
      if (prev && cur && cur->robustAccuracy > prev->robustAccuracy + slack) {
        c.passed = false;
        c.detail = cur->attack + " accuracy rises from " + pct(prev->robustAccuracy) + " at eps " + std::to_string(prev->eps) +
                   " to " + pct(cur->robustAccuracy) + " at eps " + std::to_string(eps) + " (reported curves use the worst case)";
      }
      prev = cur;
    }
  }
  r.checks.push_back(c);
}

void checkZeroGradients(EvalResult& r) {
  SanityCheck c{"zero_gradients", true, ""};
  double worst = 0;
  for (const auto& run : r.runs) worst = std::max(worst, run.zeroGradFraction);
  c.passed = worst < 0.5;
  c.detail = "largest fraction of exactly-zero input gradients: " + pct(worst);
  r.checks.push_back(c);
}

void checkEpsZeroIdentity(ClassifierImpl& model, const Share& subset, double subsetClean, const EvalOptions& options,
                          torch::Device device, EvalResult& r) {
  SanityCheck c{"eps_zero_identity", true, "every attack at eps = 0 returns the input and the clean accuracy"};
  for (const auto& spec : options.attacks) {
    AttackOptions o = spec.options;
    o.eps = 0;
    o.norm = options.norm;
    double change = 0;
    const double acc = robustAccuracy(model, subset, spec.name, o, device, options.batchSize, &change);
    if (change != 0 || std::abs(acc - subsetClean) > 1e-12) {
      c.passed = false;
      c.detail = spec.name + " at eps 0 changed the input by " + std::to_string(change) + " and gave " + pct(acc) +
                 " against clean " + pct(subsetClean);
    }
  }
  r.checks.push_back(c);
}

void checkLargeEpsBreaksModel(ClassifierImpl& model, const Share& subset, const EvalOptions& options, torch::Device device,
                              EvalResult& r) {
  AttackOptions o;
  o.norm = options.norm;
  const double d = static_cast<double>(subset.mine.channels() * subset.mine.height() * subset.mine.width());
  o.eps = options.norm == Norm::kLinf ? 0.5 : options.norm == Norm::kL2 ? 0.5 * std::sqrt(d) : 0.5 * d;
  o.steps = 20;
  o.seed = 7;
  // PGD has no L1 step: APGD-CE there (the same 20 steps).
  const std::string attack = options.norm == Norm::kL1 ? "apgd-ce" : "pgd";
  const double acc = robustAccuracy(model, subset, attack, o, device, options.batchSize);
  r.checks.push_back({"large_eps_breaks_model", acc <= 0.05,
                      (attack == "pgd" ? "PGD-20" : "APGD-CE-20") + std::string(" at ") + normName(o.norm) + " eps " + std::to_string(o.eps) + " leaves " + pct(acc) + " (expected ~0)"});
}

void checkMoreStepsStable(ClassifierImpl& model, const Share& subset, const EvalOptions& options, torch::Device device, EvalResult& r) {
  const auto* spec = findSpec(options, "pgd");
  if (!spec) return;
  const double eps = options.epsGrid[options.epsGrid.size() / 2];
  if (eps <= 0) return;
  AttackOptions base = spec->options;
  base.norm = options.norm;
  base.eps = eps;
  AttackOptions strong = base;
  strong.steps = 2 * base.steps;
  strong.randomStart = true;
  strong.restarts = 2 * base.restarts;
  const double a1 = robustAccuracy(model, subset, "pgd", base, device, options.batchSize);
  const double a2 = robustAccuracy(model, subset, "pgd", strong, device, options.batchSize);
  r.checks.push_back({"more_steps_stable", std::abs(a1 - a2) <= 0.03,
                      "PGD at eps " + std::to_string(eps) + ": " + pct(a1) + " with " + std::to_string(base.steps) + " steps, " +
                          pct(a2) + " with " + std::to_string(strong.steps) + " steps and " + std::to_string(strong.restarts) +
                          " restarts"});
}

/// Examples Square fooled at `eps` that every gradient attack run before it left robust (-1: no Square
/// run with a white-box attack beside it at this eps). Inside a suite Square runs only on the points
/// its gradient members left robust, so its stage's drop is that count; a standalone Square run is
/// compared per example with the other single attacks at the same eps.
int64_t blackBoxOnly(const EvalResult& r, double eps) {
  int64_t count = -1;
  for (const auto& run : r.runs) {
    if (run.eps != eps) continue;
    for (size_t i = 1; i < run.stageNames.size(); ++i)
      if (run.stageNames[i] == "square") count = std::max(count, run.stageRobust[i - 1] - run.stageRobust[i]);
  }
  const AttackRun* square = r.find("square", eps);
  if (!square) return count;
  auto left = r.cleanCorrect.clone();
  bool white = false;
  for (const auto& run : r.runs) {
    if (run.eps != eps || run.attack == "square" || !run.stageNames.empty()) continue;
    left &= run.robust;
    white = true;
  }
  if (white) count = std::max(count, (left & ~square->robust).sum().item<int64_t>());
  return count;
}

/// Score-based attacks are the gradient-masking test (ATTACK-CORRECTNESS.md item 21): if Square fools
/// examples that every gradient attack left robust, the gradients mislead. The count is always stated;
/// the check fails above 1% of the examples.
void checkBlackBoxNotStronger(EvalResult& r) {
  const int64_t n = r.labels.size(0), allowed = std::max<int64_t>(1, n / 100);
  int64_t worst = -1;
  double worstEps = 0;
  for (double eps : r.epsGrid) {
    const int64_t c = eps > 0 ? blackBoxOnly(r, eps) : -1;
    if (c > worst) {
      worst = c;
      worstEps = eps;
    }
  }
  if (worst < 0) return;
  SanityCheck c{"black_box_not_stronger", worst <= allowed, ""};
  c.detail = "square fooled " + std::to_string(worst) + " of " + std::to_string(n) + " examples that every white-box attack left robust" +
             (worst > 0 ? " (at eps " + std::to_string(worstEps) + ")" : "") +
             (c.passed ? "" : ": a sign of masked gradients, the white-box numbers overstate robustness");
  r.checks.push_back(c);
}

/// AutoAttack's check_randomized: 5 eval-mode passes over the same inputs give the same predictions
/// and logits (normalised to unit L2 length) within 1e-4. A model that does not is randomized, and an
/// evaluation of it without EOT (autoattack-rand, or eot_iter > 1) fails the check.
void checkDeterministic(ClassifierImpl& model, const Share& subset, const EvalOptions& options, torch::Device device, EvalResult& r) {
  constexpr int kPasses = 5;
  double maxDiff = 0;
  std::vector<int64_t> changedPerPass(kPasses - 1, 0);
  if (subset.mine.size() > 0) {
    std::vector<torch::Tensor> outs;
    for (int k = 0; k < kPasses; ++k) {
      const auto z = logits(model, subset.mine.images, device, options.batchSize).to(torch::kFloat64);
      outs.push_back(z / (z.norm(2, 1, /*keepdim=*/true) + 1e-10));
    }
    for (int i = 1; i < kPasses; ++i) {
      maxDiff = std::max(maxDiff, (outs[i] - outs[0]).norm(2, 1).max().item<double>());
      changedPerPass[static_cast<size_t>(i - 1)] = outs[i].argmax(1).ne(outs[0].argmax(1)).sum().item<int64_t>();
    }
  }
  maxDiff = subset.max(maxDiff);
  if (subset.comm) changedPerPass = subset.comm->sum(changedPerPass);
  const int64_t changed = *std::max_element(changedPerPass.begin(), changedPerPass.end());
  bool eot = false;
  for (const auto& spec : options.attacks) eot |= spec.name == "autoattack-rand" || spec.options.eotIter > 1;
  const bool randomized = changed > 0 || maxDiff > 1e-4;
  char numbers[160];
  std::snprintf(numbers, sizeof numbers, "largest normalised logit difference %.3g, up to %lld of %lld predictions changed", maxDiff,
                static_cast<long long>(changed), static_cast<long long>(subset.total));
  r.checks.push_back({"deterministic_model", !randomized || eot,
                      !randomized ? std::string("5 passes over the same inputs give the same outputs")
                      : eot       ? std::string("a randomized model (") + numbers + "), evaluated with EOT"
                                  : std::string("the model's outputs differ between passes over the same inputs (") + numbers +
                                  "): a randomized model, which attacks without EOT overrate; evaluate with autoattack-rand or attack.eot_iter = 20"});
}

}  // namespace

void runSanityChecks(ClassifierImpl& model, const Dataset& data, const EvalOptions& options, torch::Device device, EvalResult& r) {
  const double slack = 1.0 / static_cast<double>(std::max<int64_t>(1, data.size()));
  checkPgdNotWeakerThanFgsm(options, slack, r);
  checkMonotoneInEps(options, slack, r);
  checkZeroGradients(r);
  checkBlackBoxNotStronger(r);
  // The subset's attacks are most of the checks' time: data-parallel ranks share its examples.
  const Dataset sample = sampleSubset(data, options.sanityLimit, 1234);
  const Share subset(sample, severalRanks(options.comm));
  const double subsetClean = sharedAccuracy(model, sample, device, subset.comm, options.batchSize);
  checkDeterministic(model, subset, options, device, r);
  checkEpsZeroIdentity(model, subset, subsetClean, options, device, r);
  checkLargeEpsBreaksModel(model, subset, options, device, r);
  checkMoreStepsStable(model, subset, options, device, r);
}

}  // namespace robustlab
