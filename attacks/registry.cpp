#include "attacks/registry.h"

#include "attacks/apgd.h"
#include "attacks/apgd_t.h"
#include "attacks/autoattack.h"
#include "attacks/fab.h"
#include "attacks/fgsm.h"
#include "attacks/pgd.h"
#include "attacks/square.h"

#include <stdexcept>

namespace robustlab {
namespace {

template <class A>
AttackFactory factory() {
  return [](const AttackOptions& o) { return std::make_unique<A>(o); };
}

/// The built-in attacks: one line each.
std::vector<AttackEntry>& entries() {
  static std::vector<AttackEntry> e{
      {"fgsm", {}, "one signed-gradient step of size eps (Goodfellow et al. 2015)", factory<Fgsm>()},
      {"pgd", {}, "projected gradient descent, random start, restarts (Madry et al. 2018)", factory<Pgd>()},
      {"apgd-ce", {"apgd"}, "AutoAttack's step-size-free PGD on cross-entropy (Croce & Hein 2020)", factory<Apgd>()},
      {"apgd-dlr", {}, "APGD on the DLR loss, scale-invariant (Croce & Hein 2020); needs 3+ classes",
       [](const AttackOptions& o) { return std::make_unique<Apgd>(o, dlrAttackLoss()); }, 3},
      {"apgd-t", {}, "AutoAttack's targeted APGD-DLR over the most likely wrong classes; needs 4+ classes", factory<ApgdT>(), 4},
      {"fab-t", {}, "AutoAttack's targeted FAB: minimum-norm steps to the most likely wrong classes' boundaries (Croce & Hein 2020)",
       [](const AttackOptions& o) { return std::make_unique<Fab>(o, true); }},
      {"fab", {}, "untargeted FAB: minimum-norm steps to the closest linearised boundary (Croce & Hein 2020)",
       [](const AttackOptions& o) { return std::make_unique<Fab>(o, false); }},
      {"square", {}, "Square Attack: score-based random search, no gradients (Andriushchenko et al. 2020)", factory<Square>()},
      {"autoattack", {}, "AutoAttack's standard suite: apgd-ce, apgd-t, fab-t, square, each on the points still robust; needs 4+ classes",
       [](const AttackOptions& o) { return std::make_unique<AutoAttackSuite>(o, AutoAttackSuite::Version::kStandard); }, 4},
      {"autoattack-plus", {}, "AutoAttack's extended suite: apgd-ce, apgd-dlr, fab (5 restarts), square, apgd-t, fab-t; needs 4+ classes",
       [](const AttackOptions& o) { return std::make_unique<AutoAttackSuite>(o, AutoAttackSuite::Version::kPlus); }, 4},
      {"autoattack-rand", {}, "AutoAttack's version for randomized models: apgd-ce and apgd-dlr, each gradient averaged over 20 passes (EOT); needs 3+ classes",
       [](const AttackOptions& o) { return std::make_unique<AutoAttackSuite>(o, AutoAttackSuite::Version::kRand); }, 3},
  };
  return e;
}

const AttackEntry* find(const std::string& name) {
  for (const auto& e : entries()) {
    if (e.name == name) return &e;
    for (const auto& a : e.aliases)
      if (a == name) return &e;
  }
  return nullptr;
}

}  // namespace

std::vector<std::string> attackNames() {
  std::vector<std::string> out;
  for (const auto& e : entries()) out.push_back(e.name);
  return out;
}

std::string attackNameList() {
  std::string s;
  for (const auto& n : attackNames()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

bool isAttackName(const std::string& name) { return find(name) != nullptr; }

std::string canonicalAttackName(const std::string& name) {
  if (const auto* e = find(name)) return e->name;
  throw std::invalid_argument("unknown attack '" + name + "', valid names: " + attackNameList());
}

std::unique_ptr<Attack> makeAttack(const std::string& name, const AttackOptions& options) {
  const auto* e = find(name);
  if (!e) throw std::invalid_argument("attack: unknown attack '" + name + "', valid names: " + attackNameList());
  return e->make(options);
}

int64_t attackMinClasses(const std::string& name) {
  if (const auto* e = find(name)) return e->minClasses;
  throw std::invalid_argument("unknown attack '" + name + "', valid names: " + attackNameList());
}

void registerAttack(AttackEntry entry) {
  if (find(entry.name)) throw std::invalid_argument("attack '" + entry.name + "' is registered twice");
  entries().push_back(std::move(entry));
}

}  // namespace robustlab
