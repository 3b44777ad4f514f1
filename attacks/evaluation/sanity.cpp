#include "attacks/evaluation/sanity.h"

#include "attacks/registry.h"
#include "data/tasks.h"
#include "framework/training/trainer.h"

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

/// Robust accuracy of one attack over `data` (all examples; clean mistakes count as not robust).
double robustAccuracy(ClassifierImpl& model, const Dataset& data, const std::string& name, const AttackOptions& o,
                      torch::Device device, int64_t batchSize, double* maxChange = nullptr) {
  auto attack = makeAttack(name, o);
  int64_t robust = 0;
  double change = 0;
  for (int64_t b = 0; b < data.size(); b += batchSize) {
    const int64_t e = std::min(data.size(), b + batchSize);
    const auto xb = data.images.slice(0, b, e), yb = data.labels.slice(0, b, e);
    const auto xadv = attack->perturb(model, xb.to(device), yb.to(device)).cpu();
    change = std::max(change, (xadv - xb).abs().max().item<double>());
    robust += predict(model, xadv, device, batchSize).eq(yb).sum().item<int64_t>();
  }
  if (maxChange) *maxChange = change;
  return static_cast<double>(robust) / static_cast<double>(data.size());
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

void checkEpsZeroIdentity(ClassifierImpl& model, const Dataset& subset, double subsetClean, const EvalOptions& options,
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

void checkLargeEpsBreaksModel(ClassifierImpl& model, const Dataset& subset, const EvalOptions& options, torch::Device device,
                              EvalResult& r) {
  AttackOptions o;
  o.norm = options.norm;
  o.eps = options.norm == Norm::kLinf ? 0.5 : 0.5 * std::sqrt(static_cast<double>(subset.images[0].numel()));
  o.steps = 20;
  o.seed = 7;
  const double acc = robustAccuracy(model, subset, "pgd", o, device, options.batchSize);
  r.checks.push_back({"large_eps_breaks_model", acc <= 0.05,
                      "PGD-20 at " + normName(o.norm) + " eps " + std::to_string(o.eps) + " leaves " + pct(acc) + " (expected ~0)"});
}

void checkMoreStepsStable(ClassifierImpl& model, const Dataset& subset, const EvalOptions& options, torch::Device device, EvalResult& r) {
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

}  // namespace

void runSanityChecks(ClassifierImpl& model, const Dataset& data, const EvalOptions& options, torch::Device device, EvalResult& r) {
  const double slack = 1.0 / static_cast<double>(std::max<int64_t>(1, data.size()));
  checkPgdNotWeakerThanFgsm(options, slack, r);
  checkMonotoneInEps(options, slack, r);
  checkZeroGradients(r);
  const Dataset subset = sampleSubset(data, options.sanityLimit, 1234);
  const double subsetClean = accuracy(model, subset, device, options.batchSize);
  checkEpsZeroIdentity(model, subset, subsetClean, options, device, r);
  checkLargeEpsBreaksModel(model, subset, options, device, r);
  checkMoreStepsStable(model, subset, options, device, r);
}

}  // namespace robustlab
