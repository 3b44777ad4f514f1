// Adding an attack: this file is the whole change. It defines a toy attack (basic iterative FGSM,
// two signed-gradient steps of eps/2, Kurakin et al. 2017) and registers it from a static object. The
// name then reaches configs (attack.attacks), the CLI's name lists and the contract tests in
// test_attack_contract.cpp, which run over attackNames() and so over this attack too.
#include "fixtures.h"

#include "attacks/evaluation/evaluation.h"
#include "attacks/registry.h"
#include "framework/config/config.h"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace robustlab;

namespace {

class ToyIterativeFgsm : public Attack {
 public:
  explicit ToyIterativeFgsm(AttackOptions o) : Attack(o) {}
  std::string name() const override { return "toy-bim"; }

 protected:
  torch::Tensor run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) override {
    torch::Tensor xadv = x;
    for (int step = 0; step < 2; ++step) {
      const auto lg = lossAndGrad(model, xadv, y, target);
      xadv = project(xadv + 0.5 * options_.eps * ascentDirection(lg.grad), x);
    }
    return xadv;
  }
};

const AttackRegistration kToy{{"toy-bim", {"toy"}, "two signed-gradient steps of eps/2 (a test's attack)",
                               [](const AttackOptions& o) { return std::make_unique<ToyIterativeFgsm>(o); }}};

}  // namespace

TEST_CASE("an attack registered outside the library is listed, configurable and evaluated by name", "[attacks]") {
  const auto names = attackNames();
  REQUIRE(std::find(names.begin(), names.end(), "toy-bim") != names.end());
  CHECK(attackNameList().find("toy-bim") != std::string::npos);
  CHECK(canonicalAttackName("toy") == "toy-bim");

  // A config names it; the alias is stored under its canonical name.
  const Config c = parseConfig("[attack]\nattacks = [\"fgsm\", \"toy\"]\neps = [0.0, 0.1]\n", "<test>");
  CHECK(c.attack.attacks == std::vector<std::string>{"fgsm", "toy-bim"});
  // An unknown name lists every registered attack, this one included.
  REQUIRE_THROWS_WITH(parseConfig("[attack]\nattacks = [\"toy-bm\"]\n", "<test>"), Catch::Contains("toy-bim"));

  // The evaluation runs it like any other: it is at least as strong as FGSM here (two steps on the
  // same budget) and far below clean accuracy on the standard model.
  Classifier model = test::standardModel();
  EvalOptions e;
  e.attacks = {{"fgsm", c.attack.options}, {"toy-bim", c.attack.options}};
  e.epsGrid = {0.0, 0.1};
  e.sanityChecks = false;
  const Dataset test = test::fashionTest().head(300);
  const EvalResult r = evaluate(*model, test, e, torch::kCPU);
  const auto* toy = r.find("toy-bim", 0.1);
  const auto* fgsm = r.find("fgsm", 0.1);
  REQUIRE(toy);
  REQUIRE(fgsm);
  INFO("clean " << r.cleanAccuracy << ", fgsm " << fgsm->robustAccuracy << ", toy-bim " << toy->robustAccuracy);
  CHECK(toy->robustAccuracy < r.cleanAccuracy - 0.2);
  CHECK(toy->robustAccuracy <= fgsm->robustAccuracy + 0.02);
}
