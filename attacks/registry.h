#pragma once
// Attacks by name, so configs and the CLI can pick them.
#include "attacks/attack.h"

#include <memory>
#include <string>
#include <vector>

namespace robustlab {

/// Registered names: fgsm, pgd, apgd-ce (alias apgd).
std::vector<std::string> attackNames();
/// Builds an attack; an unknown name throws std::invalid_argument listing the valid ones, bad options
/// throw naming the field.
std::unique_ptr<Attack> makeAttack(const std::string& name, const AttackOptions& options);

}  // namespace robustlab
