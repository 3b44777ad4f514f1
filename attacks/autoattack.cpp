#include "attacks/autoattack.h"

#include "attacks/registry.h"

#include <stdexcept>

namespace robustlab {

AutoAttackSuite::AutoAttackSuite(AttackOptions options, bool plus) : Attack(options), plus_(plus) {
  if (options.targeting != Targeting::kNone)
    throw std::invalid_argument("targeted: " + name() + " runs its own targeted members; set targeted = \"none\"");
  AttackOptions base = options;
  base.steps = options.suiteSteps;
  base.restarts = 1;
  base.randomStart = true;
  auto with = [&](int64_t restarts) {
    AttackOptions o = base;
    o.restarts = restarts;
    return o;
  };
  if (plus)
    members_ = {{"apgd-ce", with(5)}, {"apgd-dlr", with(5)}, {"fab", with(5)}, {"square", with(1)}, {"apgd-t", with(1)}, {"fab-t", with(1)}};
  else
    members_ = {{"apgd-ce", with(1)}, {"apgd-t", with(1)}, {"fab-t", with(1)}, {"square", with(1)}};
  for (const auto& [n, o] : members_) makeAttack(n, o);  // validates every member's options now
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
