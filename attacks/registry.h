#pragma once
// Attacks by name: the one list configs, the CLI and the contract tests read. A new attack is one
// file (a subclass of Attack) plus one line in registry.cpp's table; code outside the library (a
// test, a plug-in) adds its own with a static AttackRegistration.
#include "attacks/attack.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace robustlab {

using AttackFactory = std::function<std::unique_ptr<Attack>(const AttackOptions&)>;

struct AttackEntry {
  std::string name;                  ///< as written in configs and on the command line
  std::vector<std::string> aliases;  ///< other accepted spellings (not listed as separate attacks)
  std::string summary;               ///< one line for --help and docs/attacks.md
  AttackFactory make;
  int64_t minClasses = 2;            ///< fewest classes the attack's loss is defined for (DLR: 3)
};

/// Registered names, in registration order (built-ins first: fgsm, pgd, apgd-ce).
std::vector<std::string> attackNames();
/// "fgsm, pgd, apgd-ce": the names for error messages and help.
std::string attackNameList();
/// Whether `name` (or an alias) is registered.
bool isAttackName(const std::string& name);
/// The canonical name of `name` or an alias; throws std::invalid_argument listing the valid ones.
std::string canonicalAttackName(const std::string& name);
/// Builds an attack; an unknown name throws std::invalid_argument listing the valid ones, bad options
/// throw naming the field.
std::unique_ptr<Attack> makeAttack(const std::string& name, const AttackOptions& options);
/// The fewest classes `name` works with; throws like canonicalAttackName for an unknown name.
int64_t attackMinClasses(const std::string& name);
/// Adds an attack; a name already taken throws std::invalid_argument.
void registerAttack(AttackEntry entry);

/// Registers an attack from a static object: `static AttackRegistration reg{{"toy", {}, "...", make}};`
struct AttackRegistration {
  explicit AttackRegistration(AttackEntry entry) { registerAttack(std::move(entry)); }
};

}  // namespace robustlab
