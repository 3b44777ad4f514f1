// The attack contract (../shared/ATTACK-CORRECTNESS.md items 1, 2, 5, 6, 7, 8, 9, 13-eps0), run over
// every registered attack and every norm it supports on a CNN trained on real Fashion-MNIST.
#include "fixtures.h"

#include "attacks/registry.h"
#include "framework/runtime/runtime.h"
#include "framework/training/trainer.h"

#include <catch2/catch.hpp>

#include <limits>
#include <tuple>

using namespace robustlab;

namespace {

AttackOptions optionsFor(Norm norm) {
  AttackOptions o;
  o.norm = norm;
  o.eps = norm == Norm::kLinf ? 0.1 : norm == Norm::kL2 ? 1.5 : 10.0;
  o.steps = 10;
  o.seed = 3;
  return o;
}

double maxNorm(const torch::Tensor& d, Norm n) { return perExampleNorm(d, n).max().item<double>(); }

}  // namespace

TEST_CASE("attack contract holds for every registered attack and norm", "[attacks]") {
  Classifier model = test::standardModel();
  const auto x = test::fashionTest().images.slice(0, 0, 64);
  const auto y = test::fashionTest().labels.slice(0, 0, 64);
  for (const auto& name : attackNames()) {
    for (Norm norm : {Norm::kLinf, Norm::kL2, Norm::kL1}) {
      // An attack without an L1 step refuses l1 (test_attack_l1.cpp); the rest keep the contract in it.
      bool supported = true;
      try {
        supported = makeAttack(name, optionsFor(norm))->supportsNorm(norm);
      } catch (const std::invalid_argument&) {
        supported = false;
      }
      if (!supported) continue;
      DYNAMIC_SECTION(name << " " << normName(norm)) {
        const AttackOptions o = optionsFor(norm);
        auto attack = makeAttack(name, o);
        const auto xCopy = x.clone();
        model->train();
        const auto xadv = attack->perturb(*model, x, y);

        INFO("item 1: inside the eps-ball around the clean input, inside [0,1]");
        CHECK(maxNorm(xadv - x, norm) <= o.eps * (1 + 1e-6));
        CHECK(xadv.min().item<float>() >= 0.f);
        CHECK(xadv.max().item<float>() <= 1.f);
        INFO("item 2: the caller's input is bit-identical afterwards");
        CHECK(torch::equal(x, xCopy));
        INFO("item 5: training mode restored");
        CHECK(model->is_training());
        CHECK(model->backbone()->is_training());
        INFO("the attack actually attacks: accuracy drops");
        model->eval();
        const auto cleanAcc = model->forward(x).argmax(1).eq(y).sum().item<int64_t>();
        const auto advAcc = model->forward(xadv).argmax(1).eq(y).sum().item<int64_t>();
        CHECK(advAcc < cleanAcc);
        INFO("item 13: eps = 0 returns the input unchanged");
        AttackOptions zero = o;
        zero.eps = 0;
        CHECK(torch::equal(makeAttack(name, zero)->perturb(*model, x, y), x));
      }
    }
  }
}

TEST_CASE("attacks leave BatchNorm statistics, mixed module modes and parameter gradients untouched", "[attacks]") {
  seedEverything(0);
  Classifier model(test::smallCnn(10, true));
  // Give BatchNorm non-trivial running statistics first.
  model->train();
  {
    torch::NoGradGuard g;
    model->forward(test::fashionTrain().images.slice(0, 0, 256));
  }
  const auto x = test::fashionTest().images.slice(0, 0, 32);
  const auto y = test::fashionTest().labels.slice(0, 0, 32);
  for (const auto& name : attackNames()) {
    DYNAMIC_SECTION(name) {
      std::vector<torch::Tensor> buffers;
      for (const auto& b : model->buffers()) buffers.push_back(b.clone());
      // Half the parameters carry a gradient already (mid-training), half have none.
      auto params = model->parameters();
      for (size_t i = 0; i < params.size(); i += 2) params[i].mutable_grad() = torch::full_like(params[i], 0.25);
      // A mixed mode, as in a linear probe: backbone in eval, the rest training.
      model->train();
      model->backbone()->eval();
      makeAttack(name, optionsFor(Norm::kLinf))->perturb(*model, x, y);
      auto after = model->buffers();
      for (size_t i = 0; i < buffers.size(); ++i) CHECK(torch::equal(after[i], buffers[i]));
      for (size_t i = 0; i < params.size(); ++i) {
        if (i % 2 == 0) CHECK(torch::equal(params[i].grad(), torch::full_like(params[i], 0.25)));
        else CHECK_FALSE(params[i].grad().defined());
        CHECK(params[i].requires_grad());
      }
      CHECK(model->is_training());
      CHECK_FALSE(model->backbone()->is_training());
      CHECK(model->head()->is_training());
      for (auto& p : params) p.mutable_grad() = torch::Tensor();
    }
  }
}

TEST_CASE("an example's adversarial result does not depend on its batch", "[attacks]") {
  Classifier model = test::standardModel();
  const auto x = test::fashionTest().images.slice(0, 0, 256);
  const auto y = test::fashionTest().labels.slice(0, 0, 256);
  // The deterministic attacks (FAB with one restart has no random start; Square and APGD draw theirs).
  for (const std::string name : {"fgsm", "pgd", "fab-t"}) {
    DYNAMIC_SECTION(name) {
      AttackOptions o = optionsFor(Norm::kLinf);
      o.randomStart = false;
      o.targetClasses = 3;
      const auto big = makeAttack(name, o)->perturb(*model, x, y);
      for (int64_t i : {0, 17, 255}) {
        const auto one = makeAttack(name, o)->perturb(*model, x.slice(0, i, i + 1), y.slice(0, i, i + 1));
        const auto mine = big.slice(0, i, i + 1);
        const auto differing = one.ne(mine).sum().item<int64_t>();
        const double maxDiff = (one - mine).abs().max().item<double>();
        INFO("example " << i << ": " << differing << " of 784 pixels differ, by at most " << maxDiff);
        if (name == "fab-t") {
          // FAB's steps are continuous: the convolutions' float sums, whose order depends on the batch
          // size, move each step's point by a rounding error of at most ~2 ulp of a value in [0, 1]
          // (2 * FLT_EPSILON), and the steps add up: steps * 2 * FLT_EPSILON. Same verdict either way.
          CHECK(maxDiff <= static_cast<double>(o.steps) * 2 * std::numeric_limits<float>::epsilon());
          model->eval();
          CHECK(model->forward(one).argmax(1).item<int64_t>() == model->forward(mine).argmax(1).item<int64_t>());
        } else {
          // Sign steps: float sums inside the convolutions may differ with the batch size; allow a
          // stray pixel whose gradient sign is decided by rounding, nothing more.
          CHECK(differing <= 2);
        }
      }
    }
  }
}

TEST_CASE("targeted attacks descend on the target class", "[attacks]") {
  Classifier model = test::standardModel();
  const auto x = test::fashionTest().images.slice(0, 0, 100);
  const auto y = test::fashionTest().labels.slice(0, 0, 100);
  for (const std::string name : {"pgd", "apgd-ce"}) {
    DYNAMIC_SECTION(name) {
      AttackOptions o = optionsFor(Norm::kLinf);
      o.eps = 0.25;
      o.steps = 30;
      o.targeting = Targeting::kGiven;
      const auto target = (y + 3).remainder(10);
      auto attack = makeAttack(name, o);
      const auto xadv = attack->perturb(*model, x, y, target);
      model->eval();
      const double hit = model->forward(xadv).argmax(1).eq(target).to(torch::kFloat64).mean().item<double>();
      INFO("targeted success " << hit);
      CHECK(hit >= 0.9);
      // Random and least-likely targets are never the true class.
      o.targeting = Targeting::kRandom;
      auto random = makeAttack(name, o);
      random->perturb(*model, x, y);
      CHECK(random->lastTargets().ne(y).all().item<bool>());
      o.targeting = Targeting::kLeastLikely;
      auto least = makeAttack(name, o);
      least->perturb(*model, x, y);
      CHECK(torch::equal(least->lastTargets(), model->forward(x).argmin(1)));
      o.targeting = Targeting::kGiven;
      REQUIRE_THROWS_WITH(makeAttack(name, o)->perturb(*model, x, y), Catch::Contains("target"));
    }
  }
}

TEST_CASE("zero input gradients are counted, and stall the sign step", "[attacks]") {
  // All weights zero: the loss does not depend on the input, every gradient entry is 0.
  Classifier dead(test::smallCnn());
  {
    torch::NoGradGuard g;
    for (auto& p : dead->parameters()) p.zero_();
  }
  const auto x = test::fashionTest().images.slice(0, 0, 8);
  const auto y = test::fashionTest().labels.slice(0, 0, 8);
  auto fgsm = makeAttack("fgsm", optionsFor(Norm::kLinf));
  CHECK(torch::equal(fgsm->perturb(*dead, x, y), x));
  CHECK(fgsm->stats().zeroGradFraction() == 1.0);
  auto pgd = makeAttack("pgd", optionsFor(Norm::kLinf));
  pgd->perturb(*test::standardModel(), x, y);
  CHECK(pgd->stats().zeroGradFraction() < 0.5);
  CHECK(pgd->stats().gradientEvaluations > 0);
}

TEST_CASE("bad attack options and names are clear errors", "[attacks]") {
  AttackOptions o;
  o.eps = -0.1;
  REQUIRE_THROWS_WITH(makeAttack("pgd", o), Catch::Contains("eps"));
  o = AttackOptions{};
  o.steps = 0;
  REQUIRE_THROWS_WITH(makeAttack("pgd", o), Catch::Contains("steps"));
  o = AttackOptions{};
  o.restarts = 3;
  o.randomStart = false;
  REQUIRE_THROWS_WITH(makeAttack("pgd", o), Catch::Contains("random_start"));
  o = AttackOptions{};
  o.restarts = 2;
  o.lastIterate = true;  // the adversarial-training loop has one start: restarts would be ignored
  REQUIRE_THROWS_WITH(makeAttack("pgd", o), Catch::Contains("restarts"));
  REQUIRE_THROWS_WITH(parseNorm("l3"), Catch::Contains("linf, l2 or l1"));
  REQUIRE_THROWS_WITH(makeAttack("pgdd", AttackOptions{}), Catch::Contains("fgsm, pgd, apgd-ce"));
  // Inputs outside the valid range are refused, not silently clipped.
  Classifier model(test::smallCnn());
  const auto x = torch::full({2, 1, 28, 28}, 1.5f);
  REQUIRE_THROWS_WITH(makeAttack("fgsm", AttackOptions{})->perturb(*model, x, torch::zeros({2}, torch::kInt64)),
                      Catch::Contains("valid range"));
}

TEST_CASE("the Linf box is exact to the ulp, and the fused CPU path equals the tensor-op path bit for bit", "[attacks]") {
  // Real pixels plus values where x + eps rounds past eps (x near 1 with eps 0.1 and 1/255 steps); then
  // the same in [-1, 1] with zeros of both signs and tiny values, where the one-ulp nudge crosses zero.
  const auto real = test::fashionTest().images.slice(0, 0, 64).flatten(1);
  const auto x01 = torch::cat({real, torch::rand({64, 784}) * 0.3 + 0.7}, 0).contiguous();
  auto signedX = (x01 * 2 - 1).contiguous();
  signedX[0].slice(0, 0, 8).fill_(0.0f);
  signedX[0].slice(0, 8, 16).fill_(-0.0f);
  signedX[1] = (torch::rand({784}) - 0.5) * 1e-6;
  for (const auto& [x, lo, hi] : {std::tuple<torch::Tensor, double, double>{x01, 0.0, 1.0}, {signedX.contiguous(), -1.0, 1.0}}) {
    for (const double eps : {0.1, 8.0 / 255, 0.3, 1e-3, 1e-7}) {
      const LinfBox fused = linfBox(x, eps, lo, hi);
      const LinfBox ops = linfBox(x.t().contiguous().t(), eps, lo, hi);  // non-contiguous: the tensor-op path
      CHECK(torch::equal(fused.lower, ops.lower));
      CHECK(torch::equal(fused.upper, ops.upper));
      // The promise: the distance measured in float is at most eps in float (what perturb checks).
      const float epsF = static_cast<float>(eps);
      CHECK((fused.upper - x).max().item<float>() <= epsF);
      CHECK((x - fused.lower).max().item<float>() <= epsF);
      if (lo == 0.0) {  // pixels in [0, 1] (no value below eps / 2 but 0): exact in real arithmetic too
        const auto xd = x.to(torch::kFloat64);
        CHECK((fused.upper.to(torch::kFloat64) - xd).max().item<double>() <= static_cast<double>(epsF));
        CHECK((xd - fused.lower.to(torch::kFloat64)).max().item<double>() <= static_cast<double>(epsF));
      }
      CHECK(fused.lower.min().item<double>() >= lo);
      CHECK(fused.upper.max().item<double>() <= hi);
    }
  }
}

TEST_CASE("on a CPU, attack noise is the seeded generator's own stream: a seed reproduces it bit for bit", "[attacks]") {
  // CUDA draws from a device generator seeded by this stream (framework/runtime/runtime.h); the CPU
  // path must stay the stream itself, or every CPU result with a random start would change.
  auto a = makeGenerator(7), b = makeGenerator(7);
  const auto u = randUniform({64, 1, 28, 28}, a, torch::kCPU);
  const auto n = randNormal({64}, a, torch::kCPU);
  CHECK(torch::equal(u, torch::rand({64, 1, 28, 28}, b, torch::kFloat32)));
  CHECK(torch::equal(n, torch::randn({64}, b, torch::kFloat32)));
  CHECK(u.min().item<float>() >= 0.0f);
  CHECK(u.max().item<float>() < 1.0f);
  CHECK(u.device().is_cpu());
}
