#include "attacks/autoattack.h"

#include "attacks/registry.h"

#include <algorithm>
#include <stdexcept>

namespace robustlab {

AutoAttackSuite::AutoAttackSuite(AttackOptions options, Version version) : Attack(options), version_(version) {
  if (options.targeting != Targeting::kNone)
    throw std::invalid_argument("targeted: " + name() + " runs its own targeted members; set targeted = \"none\"");
  if (!supportsNorm(options.norm)) throw std::invalid_argument("norm: " + name() + " runs in linf and l2 only; in l1 use autoattack");
  AttackOptions base = options;
  base.steps = options.suiteSteps;
  base.restarts = 1;
  base.randomStart = true;
  // The reference's set_version: each member's restarts, targets and (L1) eps schedule; EOT for the
  // gradient members only.
  auto with = [&](int64_t restarts, bool gradient = true) {
    AttackOptions o = base;
    o.restarts = restarts;
    if (!gradient) o.eotIter = 1;
    return o;
  };
  if (version == Version::kRand) {
    AttackOptions o = with(1);
    o.eotIter = options.eotIter > 1 ? options.eotIter : 20;
    members_ = {{"apgd-ce", o}, {"apgd-dlr", o}};
  } else if (version == Version::kPlus) {
    members_ = {{"apgd-ce", with(5)}, {"apgd-dlr", with(5)}, {"fab", with(5, false)}, {"square", with(1, false)}, {"apgd-t", with(1)}, {"fab-t", with(1, false)}};
  } else if (options.norm == Norm::kL1) {
    AttackOptions ce = with(5), t = with(1);
    ce.l1LargeEps = t.l1LargeEps = true;
    t.targetClasses = std::min<int64_t>(options.targetClasses, 5);
    members_ = {{"apgd-ce", ce}, {"apgd-t", t}};
  } else {
    members_ = {{"apgd-ce", with(1)}, {"apgd-t", with(1)}, {"fab-t", with(1, false)}, {"square", with(1, false)}};
  }
  for (const auto& [n, o] : members_) makeAttack(n, o);  // validates every member's options now
}

std::string AutoAttackSuite::name() const {
  return version_ == Version::kPlus ? "autoattack-plus" : version_ == Version::kRand ? "autoattack-rand" : "autoattack";
}

std::vector<std::string> AutoAttackSuite::stages() const {
  std::vector<std::string> s{"clean"};
  for (const auto& m : members_) s.push_back(m.first);
  return s;
}

torch::Tensor AutoAttackSuite::run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor&) {
  auto best = x.clone();
  auto fooled = logitsOf(model, x).argmax(1).ne(y);
  stats_.stageNames = stages();
  stats_.stageRobust = {(~fooled).sum().item<int64_t>()};
  const double members = static_cast<double>(members_.size());
  for (size_t k = 0; k < members_.size(); ++k) {
    const auto& [memberName, memberOptions] = members_[k];
    if (progressHook_) progressHook_(static_cast<double>(k) / members, memberName);
    // Each member is one round on the examples the members before it left robust.
    if (options_.eps > 0)
      onSurvivors(best, fooled, 1, [&](const torch::Tensor& idx, int64_t) {
        auto member = makeAttack(memberName, memberOptions);
        // Each member's progress is its share of the suite's, shown with its name.
        if (progressHook_)
          member->setProgressHook([&, k, name = memberName](double share, const std::string&) { progressHook_((static_cast<double>(k) + share) / members, name); });
        const auto ys = y.index_select(0, idx);
        const auto xa = member->perturb(model, x.index_select(0, idx), ys);
        const auto& s = member->stats();
        stats_.gradientEvaluations += s.gradientEvaluations;
        stats_.queries += s.queries;
        stats_.zeroGradElements += s.zeroGradElements;
        stats_.gradElements += s.gradElements;
        return std::make_pair(xa, logitsOf(model, xa).argmax(1).ne(ys).nonzero().squeeze(1));
      });
    stats_.stageRobust.push_back((~fooled).sum().item<int64_t>());
  }
  return best;
}

}  // namespace robustlab
