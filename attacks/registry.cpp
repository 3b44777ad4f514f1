#include "attacks/registry.h"

#include "attacks/apgd.h"
#include "attacks/fgsm.h"
#include "attacks/pgd.h"

#include <stdexcept>

namespace robustlab {

std::vector<std::string> attackNames() { return {"fgsm", "pgd", "apgd-ce"}; }

std::unique_ptr<Attack> makeAttack(const std::string& name, const AttackOptions& options) {
  if (name == "fgsm") return std::make_unique<Fgsm>(options);
  if (name == "pgd") return std::make_unique<Pgd>(options);
  if (name == "apgd-ce" || name == "apgd") return std::make_unique<ApgdCe>(options);
  std::string valid;
  for (const auto& n : attackNames()) valid += (valid.empty() ? "" : ", ") + n;
  throw std::invalid_argument("attack: unknown attack '" + name + "', valid names: " + valid);
}

}  // namespace robustlab
