// APGD-DLR (Croce & Hein 2020): the DLR loss against its closed form on hand-made logits, its
// invariances, the class-count rule (ATTACK-CORRECTNESS.md item 17), and the attack on real data.
// The attack contract (test_attack_contract.cpp) runs over it as over every registered attack.
#include "fixtures.h"

#include "attacks/evaluation/evaluation.h"
#include "attacks/registry.h"
#include "framework/config/config.h"

#include <catch2/catch.hpp>

using namespace robustlab;

TEST_CASE("the DLR loss matches its closed form and is shift- and scale-invariant", "[attacks]") {
  // One row of logits 3, 1, 2, 0: sorted 3 > 2 > 1 > 0, so z_pi1 - z_pi3 = 3 - 1 = 2.
  const auto z = torch::tensor({3.0f, 1.0f, 2.0f, 0.0f}).repeat({4, 1});
  const auto y = torch::tensor({0, 2, 3, 1}, torch::kInt64);
  const auto d = dlrLoss(z, y);
  // y = 0 is the top class: -(3 - 2) / 2; y = 2: -(2 - 3) / 2; y = 3: -(0 - 3) / 2; y = 1: -(1 - 3) / 2.
  const std::vector<double> expected{-0.5, 0.5, 1.5, 1.0};
  for (int64_t i = 0; i < 4; ++i) CHECK(d[i].item<double>() == Approx(expected[static_cast<size_t>(i)]).epsilon(1e-6));
  // Targeted at class 2 from y = 0: -(3 - 2) / (3 - (1 + 0) / 2) = -0.4.
  const auto t = dlrLoss(z.slice(0, 0, 1), y.slice(0, 0, 1), torch::tensor({2}, torch::kInt64));
  CHECK(t[0].item<double>() == Approx(-0.4).epsilon(1e-6));
  // The reason for DLR: a rescaled or shifted logit vector gives the same loss (float rounding aside).
  torch::manual_seed(1);
  const auto r = torch::randn({64, 5});
  const auto labels = torch::randint(0, 5, {64}, torch::kInt64);
  CHECK(torch::allclose(dlrLoss(r, labels), dlrLoss(7.5 * r + 3.0, labels), 1e-4, 1e-5));
}

TEST_CASE("DLR needs 3 classes, targeted DLR 4: a clear error, never an out-of-range read", "[attacks]") {
  REQUIRE_THROWS_WITH(dlrLoss(torch::randn({3, 2}), torch::zeros({3}, torch::kInt64)), Catch::Contains("at least 3 classes"));
  REQUIRE_THROWS_WITH(dlrLoss(torch::randn({3, 3}), torch::zeros({3}, torch::kInt64), torch::ones({3}, torch::kInt64)),
                      Catch::Contains("at least 4 classes"));
  CHECK(attackMinClasses("apgd-dlr") == 3);
  CHECK(attackMinClasses("apgd-ce") == 2);
  // A two-class fine-tuning task is refused when the config is read, with the field named.
  REQUIRE_THROWS_WITH(parseConfig("[finetune]\nclasses = [3, 7]\n[attack]\nattacks = [\"pgd\", \"apgd-dlr\"]\n", "<test>"),
                      Catch::Contains("attack.attacks") && Catch::Contains("apgd-dlr needs at least 3 classes"));
  CHECK_NOTHROW(parseConfig("[finetune]\nclasses = [3, 7, 8]\n[attack]\nattacks = [\"apgd-dlr\"]\n", "<test>"));
}

TEST_CASE("APGD-DLR on real data: far below clean accuracy, and the worst case with APGD-CE never above either", "[attacks]") {
  Classifier model = test::standardModel();
  EvalOptions e;
  AttackOptions o;
  o.steps = 20;
  o.seed = 5;
  e.attacks = {{"apgd-ce", o}, {"apgd-dlr", o}};
  e.epsGrid = {0.0, 0.1};
  e.sanityChecks = false;
  const EvalResult r = evaluate(*model, test::fashionTest().head(500), e, torch::kCPU);
  const auto *ce = r.find("apgd-ce", 0.1), *dlr = r.find("apgd-dlr", 0.1);
  REQUIRE(ce);
  REQUIRE(dlr);
  INFO("clean " << r.cleanAccuracy << ", apgd-ce " << ce->robustAccuracy << ", apgd-dlr " << dlr->robustAccuracy << ", worst "
                << r.worstAccuracy[1]);
  CHECK(dlr->robustAccuracy < r.cleanAccuracy - 0.2);
  // Per-example worst case: at most each attack's own accuracy.
  CHECK(r.worstAccuracy[1] <= std::min(ce->robustAccuracy, dlr->robustAccuracy));
  // DLR ascends a different loss: it is not a copy of CE (some example ends differently).
  CHECK_FALSE(torch::equal(ce->advPred, dlr->advPred));
}

TEST_CASE("APGD-T targets the most likely wrong classes, capped at classes - 1, and needs 4 classes", "[attacks]") {
  // A 5-class model labelled with its own predictions, attacked at a radius too small to change any:
  // no example is fooled, so each runs against all min(9, 5 - 1) = 4 targets, steps + 1 gradients each.
  seedEverything(2);
  Classifier five(test::smallCnn(5));
  five->eval();
  const auto x = test::fashionTest().images.slice(0, 0, 16);
  const auto own = five->forward(x).argmax(1).detach();
  AttackOptions o;
  o.eps = 1e-7;
  o.steps = 5;
  auto t = makeAttack("apgd-t", o);
  t->perturb(*five, x, own);
  CHECK(t->stats().gradientEvaluations == 16 * 4 * (5 + 1));
  // target_classes = 2 runs two targets.
  o.targetClasses = 2;
  auto two = makeAttack("apgd-t", o);
  two->perturb(*five, x, own);
  CHECK(two->stats().gradientEvaluations == 16 * 2 * (5 + 1));
  // Fewer than 4 classes, or a target mode of the user's: one clear error.
  Classifier three(test::smallCnn(3));
  REQUIRE_THROWS_WITH(makeAttack("apgd-t", AttackOptions{})->perturb(*three, x, torch::zeros({16}, torch::kInt64)),
                      Catch::Contains("at least 4 classes"));
  AttackOptions targeted;
  targeted.targeting = Targeting::kRandom;
  REQUIRE_THROWS_WITH(makeAttack("apgd-t", targeted), Catch::Contains("picks its own targets"));
  REQUIRE_THROWS_WITH(parseConfig("[finetune]\nclasses = [1, 2, 3]\n[attack]\nattacks = [\"apgd-t\"]\n", "<test>"),
                      Catch::Contains("apgd-t needs at least 4 classes"));
}

TEST_CASE("APGD-T on real data: fools far more than clean errors, and at least as many as untargeted APGD-DLR here", "[attacks]") {
  Classifier model = test::standardModel();
  EvalOptions e;
  AttackOptions o;
  o.steps = 20;
  o.seed = 5;
  e.attacks = {{"apgd-dlr", o}, {"apgd-t", o}};
  e.epsGrid = {0.0, 0.1};
  e.sanityChecks = false;
  const EvalResult r = evaluate(*model, test::fashionTest().head(300), e, torch::kCPU);
  const auto *dlr = r.find("apgd-dlr", 0.1), *t = r.find("apgd-t", 0.1);
  REQUIRE(dlr);
  REQUIRE(t);
  INFO("clean " << r.cleanAccuracy << ", apgd-dlr " << dlr->robustAccuracy << ", apgd-t " << t->robustAccuracy);
  CHECK(t->robustAccuracy < r.cleanAccuracy - 0.2);
  // Nine targeted runs of the same budget on the points still robust: never weaker here by more than
  // a few examples (1% of 300).
  CHECK(t->robustAccuracy <= dlr->robustAccuracy + 0.01);
}
