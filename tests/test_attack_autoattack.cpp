// FAB, Square and the AutoAttack suite (ATTACK-CORRECTNESS.md items 16-21): known answers on linear
// models where the optimum is known in closed form, the suite's order and per-stage bookkeeping, its
// HDF5 record, and the gradient-masking flag on a model whose gradients are masked. The attack
// contract (test_attack_contract.cpp) runs over every one of them as over every registered attack.
#include "fixtures.h"

#include "attacks/autoattack.h"
#include "attacks/evaluation/evaluation.h"
#include "attacks/fab.h"
#include "attacks/registry.h"
#include "data/h5io.h"
#include "experiments/plan/results_io.h"
#include "framework/config/config.h"
#include "framework/runtime/runtime.h"

#include <catch2/catch.hpp>

using namespace robustlab;

namespace {

/// A linear K-class model f(x) = W x + b on 28x28 inputs, W ~ N(0, 0.01^2): every decision boundary is
/// a hyperplane, so the smallest adversarial perturbation has a closed form.
Classifier linearModel(int64_t classes, uint64_t seed) {
  seedEverything(seed);
  ModelSpec s;
  s.arch = "mlp";
  s.numClasses = classes;
  Classifier m(s);
  torch::NoGradGuard g;
  m->head()->weight.copy_(torch::randn({classes, 784}) * 0.01);
  m->head()->bias.zero_();
  m->eval();
  return m;
}

/// Inputs inside [0.3, 0.7]: the closed forms below ignore the [0,1] box, so keep the optimum far from it.
torch::Tensor interiorInputs(int64_t n, uint64_t seed) {
  auto gen = makeGenerator(seed);
  return torch::rand({n, 1, 28, 28}, gen, torch::kFloat32) * 0.4 + 0.3;
}

/// Distance from x to the boundary between its class y and class k of a linear model, in `norm`:
/// (z_y - z_k) / ||w_y - w_k||_dual (dual of Linf is L1, of L2 is L2). N x K, +inf at k = y.
torch::Tensor boundaryDistances(Classifier& m, const torch::Tensor& x, const torch::Tensor& y, Norm norm) {
  torch::NoGradGuard g;
  const auto W = m->head()->weight.to(torch::kFloat64);
  const auto z = m->forward(x).to(torch::kFloat64);
  const int64_t n = x.size(0), k = W.size(0);
  auto d = torch::full({n, k}, std::numeric_limits<double>::infinity(), torch::kFloat64);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t yi = y[i].item<int64_t>();
    for (int64_t c = 0; c < k; ++c) {
      if (c == yi) continue;
      const auto dw = W[yi] - W[c];
      const double dual = norm == Norm::kLinf ? dw.abs().sum().item<double>() : dw.norm().item<double>();
      d[i][c] = (z[i][yi] - z[i][c]).item<double>() / dual;
    }
  }
  return d;
}

}  // namespace

TEST_CASE("FAB finds the minimal perturbation of a linear model within 1%, in Linf and L2", "[attacks]") {
  Classifier lin = linearModel(4, 11);
  const auto x = interiorInputs(24, 12);
  const auto y = lin->forward(x).argmax(1).detach();  // every example classified "correctly"
  for (Norm norm : {Norm::kLinf, Norm::kL2}) {
    DYNAMIC_SECTION(normName(norm)) {
      const auto d = boundaryDistances(lin, x, y, norm);
      const auto dMin = std::get<0>(d.min(1));
      AttackOptions o;
      o.norm = norm;
      o.steps = 100;
      o.eps = 10 * dMin.max().item<double>();  // a radius every minimal perturbation lies well within
      auto fab = makeAttack("fab", o);
      const auto xadv = fab->perturb(*lin, x, y);
      const auto found = perExampleNorm(xadv - x, norm);
      CHECK(lin->forward(xadv).argmax(1).ne(y).all().item<bool>());
      const auto ratio = found / dMin;
      INFO("found / minimal: min " << ratio.min().item<double>() << ", max " << ratio.max().item<double>());
      // Never below the true minimum (float rounding of the distances aside), never 1% above it.
      CHECK(ratio.min().item<double>() >= 1 - 1e-4);
      CHECK(ratio.max().item<double>() <= 1.01);

      // FAB-T with one target (the second most likely class) reaches that class's boundary: at least
      // the minimum over all classes, at most 1% beyond the target's own distance.
      o.targetClasses = 1;
      const auto xt = makeAttack("fab-t", o)->perturb(*lin, x, y);
      const auto order = std::get<1>(lin->forward(x).sort(1, true));
      const auto dTarget = d.gather(1, order.select(1, 1).view({-1, 1})).squeeze(1);
      const auto foundT = perExampleNorm(xt - x, norm);
      CHECK(lin->forward(xt).argmax(1).ne(y).all().item<bool>());
      CHECK((foundT / dMin).min().item<double>() >= 1 - 1e-4);
      CHECK((foundT / dTarget).max().item<double>() <= 1.01);

      // A radius below every minimal perturbation: nothing is fooled, the clean inputs come back.
      o.eps = 0.5 * dMin.min().item<double>();
      CHECK(torch::equal(makeAttack("fab-t", o)->perturb(*lin, x, y), x));
    }
  }
}

TEST_CASE("FAB's projections put the point on the hyperplane at the closed-form distance when the box does not bind", "[attacks]") {
  auto gen = makeGenerator(3);
  const auto t = torch::rand({16, 50}, gen, torch::kFloat32) * 0.2 + 0.4;
  const auto w = torch::randn({16, 50}, gen, torch::kFloat32);
  const auto b = (w * t).sum(1) + 0.05 * torch::randn({16}, gen, torch::kFloat32);  // planes close to t
  const auto gap = (b - (w * t).sum(1)).abs();
  const auto dInf = fabProjectionLinf(t, w, b), d2 = fabProjectionL2(t, w, b);
  // On the plane (float rounding of a 50-term sum).
  CHECK(((w * (t + dInf)).sum(1) - b).abs().max().item<double>() <= 1e-4);
  CHECK(((w * (t + d2)).sum(1) - b).abs().max().item<double>() <= 1e-4);
  // Minimal: |gap| / ||w||_1 in Linf, |gap| / ||w||_2 in L2.
  CHECK(torch::allclose(dInf.abs().amax(1), gap / w.abs().sum(1), 1e-4, 1e-6));
  CHECK(torch::allclose(d2.norm(2, 1), gap / w.norm(2, 1), 1e-4, 1e-6));
}

TEST_CASE("APGD-T reaches the target when it is reachable", "[attacks]") {
  Classifier lin = linearModel(5, 21);
  const auto x = interiorInputs(32, 22);
  const auto y = lin->forward(x).argmax(1).detach();
  const auto d = boundaryDistances(lin, x, y, Norm::kLinf);
  const auto order = std::get<1>(lin->forward(x).sort(1, true));
  const auto target = order.select(1, 1);
  const auto dTarget = d.gather(1, target.view({-1, 1})).squeeze(1);
  AttackOptions o;
  o.steps = 50;
  o.targetClasses = 1;
  o.eps = 1.5 * dTarget.max().item<double>();  // every example's target is within reach
  const auto xadv = makeAttack("apgd-t", o)->perturb(*lin, x, y);
  const auto pred = lin->forward(xadv).argmax(1);
  CHECK(pred.ne(y).all().item<bool>());
  // The targeted loss drives each example into its target class (the optimum of a linear model's
  // targeted DLR is the vertex eps * sign(w_t - w_y), where z_t leads every class here).
  const double hit = pred.eq(target).to(torch::kFloat64).mean().item<double>();
  INFO("reached the target: " << hit);
  CHECK(hit >= 0.9);
}

TEST_CASE("Square succeeds on a model whose decision boundary is within eps, without a gradient", "[attacks]") {
  Classifier lin = linearModel(4, 31);
  const auto x = interiorInputs(32, 32);
  const auto y = lin->forward(x).argmax(1).detach();
  for (Norm norm : {Norm::kLinf, Norm::kL2}) {
    DYNAMIC_SECTION(normName(norm)) {
      const auto dMin = std::get<0>(boundaryDistances(lin, x, y, norm).min(1));
      AttackOptions o;
      o.norm = norm;
      o.eps = 2 * dMin.max().item<double>();
      auto square = makeAttack("square", o);  // AutoAttack's 5,000 queries
      const auto xadv = square->perturb(*lin, x, y);
      INFO("fooled " << lin->forward(xadv).argmax(1).ne(y).sum().item<int64_t>() << " of 32");
      CHECK(lin->forward(xadv).argmax(1).ne(y).all().item<bool>());
      CHECK(square->stats().gradientEvaluations == 0);
      CHECK(square->stats().queries > 32);
      // A radius below every boundary: nothing can be fooled, whatever the search does.
      o.eps = 0.9 * dMin.min().item<double>();
      const auto none = makeAttack("square", o)->perturb(*lin, x, y);
      CHECK(lin->forward(none).argmax(1).eq(y).all().item<bool>());
    }
  }
}

TEST_CASE("Square spends exactly its query budget on an example it cannot fool", "[attacks]") {
  // One image of a model it can never fool at this radius: the start and then one query per step.
  Classifier lin = linearModel(4, 41);
  const auto x = interiorInputs(1, 42);
  const auto y = lin->forward(x).argmax(1).detach();
  AttackOptions o;
  o.eps = 1e-6;
  o.queries = 600;
  auto s = makeAttack("square", o);
  s->perturb(*lin, x, y);
  CHECK(s->stats().queries == 1 + 600);  // the start and 600 steps; the clean and final checks are not search queries
}

TEST_CASE("autoattack runs its members in order on the points still robust and records each stage", "[attacks]") {
  Classifier model = test::standardModel();
  const Dataset data = test::fashionTest().head(200);
  EvalOptions e;
  AttackOptions o;
  o.seed = 4;
  o.steps = 20;
  o.suiteSteps = 20;
  o.queries = 300;
  e.attacks = {{"apgd-ce", o}, {"autoattack", o}};
  e.epsGrid = {0.0, 0.05};
  e.sanityChecks = true;
  e.sanityLimit = 100;
  const EvalResult r = evaluate(*model, data, e, torch::kCPU);
  const AttackRun* aa = r.find("autoattack", 0.05);
  const AttackRun* ce = r.find("apgd-ce", 0.05);
  REQUIRE(aa);
  REQUIRE(ce);
  CHECK(aa->stageNames == std::vector<std::string>{"clean", "apgd-ce", "apgd-t", "fab-t", "square"});
  REQUIRE(aa->stageRobust.size() == 5);
  CHECK(aa->stageRobust[0] == r.cleanCorrect.sum().item<int64_t>());
  for (size_t i = 1; i < aa->stageRobust.size(); ++i) CHECK(aa->stageRobust[i] <= aa->stageRobust[i - 1]);
  CHECK(aa->stageRobust.back() == aa->robust.sum().item<int64_t>());
  INFO("clean " << r.cleanAccuracy << ", apgd-ce " << ce->robustAccuracy << ", autoattack " << aa->robustAccuracy);
  // The suite's first member is the same APGD-CE; the later members only remove points. Its own
  // random starts are drawn over a different subset, so allow one example in a hundred.
  CHECK(aa->robustAccuracy <= ce->robustAccuracy + 0.01);
  CHECK(aa->robustAccuracy < r.cleanAccuracy - 0.3);
  CHECK(aa->queries > 0);
  CHECK(aa->gradientEvaluations > 0);
  // eps 0: every stage is the clean count.
  const AttackRun* zero = r.find("autoattack", 0.0);
  REQUIRE(zero);
  for (auto s : zero->stageRobust) CHECK(s == r.cleanCorrect.sum().item<int64_t>());
  // The gradient-masking flag is there, with its count, and a normally trained CNN passes it.
  bool flagged = false;
  for (const auto& c : r.checks)
    if (c.name == "black_box_not_stronger") {
      flagged = true;
      CHECK(c.passed);
      CHECK(c.detail.find("square fooled") != std::string::npos);
    }
  CHECK(flagged);

  // The HDF5 record: the stages and their robust accuracy per eps, readable by name.
  const std::string path = test::tempDir("autoattack-h5") + "/r.h5";
  {
    H5File f(path, H5File::Mode::kTruncate);
    writeEvaluation(f, "/eval/model", r);
  }
  H5File f(path, H5File::Mode::kRead);
  CHECK(f.readStrings("/eval/model/attacks/autoattack/stage_names") == aa->stageNames);
  const auto acc = f.readTensor("/eval/model/attacks/autoattack/stage_robust_accuracy");
  REQUIRE(acc.sizes() == torch::IntArrayRef({2, 5}));
  CHECK(acc[1][4].item<double>() == Approx(aa->robustAccuracy).margin(1e-12));
  CHECK(f.has("/eval/model/attacks/apgd-ce/queries"));
}

TEST_CASE("the gradient-masking flag: Square fools what gradient attacks cannot on a model with masked gradients", "[attacks]") {
  // The trained CNN with its logits scaled by 1e4: the same decisions, but the softmax saturates, so
  // the cross-entropy's input gradient is exactly 0 on confidently classified points and FGSM and PGD
  // stall (sign(0) = 0). Square reads only the logits' order and is not fooled by the scale.
  Classifier model = test::standardModel();
  {
    torch::NoGradGuard g;
    model->head()->weight.mul_(1e4);
    model->head()->bias.mul_(1e4);
  }
  EvalOptions e;
  AttackOptions o;
  o.seed = 8;
  o.steps = 10;
  o.queries = 500;
  e.attacks = {{"fgsm", o}, {"pgd", o}, {"square", o}};
  e.epsGrid = {0.0, 0.1};
  e.sanityLimit = 100;
  const EvalResult r = evaluate(*model, test::fashionTest().head(200), e, torch::kCPU);
  const SanityCheck* flag = nullptr;
  for (const auto& c : r.checks)
    if (c.name == "black_box_not_stronger") flag = &c;
  REQUIRE(flag);
  INFO(flag->detail);
  CHECK_FALSE(flag->passed);
  CHECK(flag->detail.find("masked gradients") != std::string::npos);
  // The count is the per-example comparison: fooled by Square, robust to both FGSM and PGD.
  const auto only = r.cleanCorrect & r.find("fgsm", 0.1)->robust & r.find("pgd", 0.1)->robust & ~r.find("square", 0.1)->robust;
  CHECK(flag->detail.find("square fooled " + std::to_string(only.sum().item<int64_t>()) + " of 200") != std::string::npos);
}

TEST_CASE("AutoAttack's settings and class rules are validated with the field named", "[attacks]") {
  REQUIRE_THROWS_WITH(parseConfig("[attack]\nqueries = 0\n", "<test>"), Catch::Contains("attack.queries"));
  REQUIRE_THROWS_WITH(parseConfig("[attack]\np_init = 1.5\n", "<test>"), Catch::Contains("attack.p_init"));
  REQUIRE_THROWS_WITH(parseConfig("[attack]\nautoattack_steps = 0\n", "<test>"), Catch::Contains("attack.autoattack_steps"));
  REQUIRE_THROWS_WITH(parseConfig("[finetune]\nclasses = [1, 2, 3]\n[attack]\nattacks = [\"autoattack\"]\n", "<test>"),
                      Catch::Contains("autoattack needs at least 4 classes"));
  AttackOptions targeted;
  targeted.targeting = Targeting::kRandom;
  REQUIRE_THROWS_WITH(makeAttack("fab-t", targeted), Catch::Contains("picks its own targets"));
  REQUIRE_THROWS_WITH(makeAttack("autoattack", targeted), Catch::Contains("targeted"));
  // The suite keeps the reference's settings: 100 iterations, 9 targets, 5,000 queries, 1 restart.
  AutoAttackSuite standard(AttackOptions{}, AutoAttackSuite::Version::kStandard);
  for (const auto& [name, opts] : standard.members()) {
    CHECK(opts.steps == 100);
    CHECK(opts.restarts == 1);
    CHECK(opts.targetClasses == 9);
    CHECK(opts.queries == 5000);
    CHECK(opts.eotIter == 1);
  }
  // The rand version (set_version('rand')): APGD-CE and APGD-DLR, 1 restart, EOT over 20 passes.
  AutoAttackSuite rand(AttackOptions{}, AutoAttackSuite::Version::kRand);
  CHECK(rand.stages() == std::vector<std::string>{"clean", "apgd-ce", "apgd-dlr"});
  for (const auto& [name, opts] : rand.members()) {
    CHECK(opts.steps == 100);
    CHECK(opts.restarts == 1);
    CHECK(opts.eotIter == 20);
  }
  // L1 (set_version('standard') with norm L1): APGD-CE with 5 restarts, APGD-T with 5 targets, both
  // with the eps schedule (use_largereps).
  AttackOptions l1;
  l1.norm = Norm::kL1;
  l1.eps = 10;
  AutoAttackSuite standardL1(l1, AutoAttackSuite::Version::kStandard);
  REQUIRE(standardL1.members().size() == 2);
  CHECK(standardL1.members()[0].second.restarts == 5);
  CHECK(standardL1.members()[1].second.targetClasses == 5);
  for (const auto& [name, opts] : standardL1.members()) CHECK(opts.l1LargeEps);
  // A 3-class model at evaluation time: one clear error, no out-of-range read.
  Classifier three(test::smallCnn(3));
  EvalOptions e;
  e.attacks = {{"autoattack", AttackOptions{}}};
  e.epsGrid = {0.1};
  REQUIRE_THROWS_WITH(evaluate(*three, test::fashionTest().head(10), e, torch::kCPU), Catch::Contains("at least 4 classes"));
}

TEST_CASE("FAB computes in fp32 under bf16 precision and Square's eps is in pixel units behind a normalising model", "[attacks]") {
  // Item 19: FAB's minimum-norm steps overflow in half precision; its arithmetic is cast to fp32, so
  // under bf16 autocast it still returns finite points inside the ball that fool the model.
  Classifier model = test::standardModel();
  const auto x = test::fashionTest().images.slice(0, 0, 48);
  const auto y = test::fashionTest().labels.slice(0, 0, 48);
  AttackOptions o;
  o.steps = 30;
  o.targetClasses = 3;
  torch::Tensor xadv;
  {
    PrecisionGuard bf16(Precision::kBf16);
    xadv = makeAttack("fab-t", o)->perturb(*model, x, y);
  }
  CHECK(torch::isfinite(xadv).all().item<bool>());
  CHECK(perExampleNorm(xadv - x, Norm::kLinf).max().item<double>() <= o.eps * (1 + 1e-6));
  model->eval();
  CHECK(model->forward(xadv).argmax(1).eq(y).sum().item<int64_t>() < model->forward(x).argmax(1).eq(y).sum().item<int64_t>());

  // Item 20: with (x - 0.5) / 0.25 inside the model, Square's perturbation is still measured in
  // pixels: at most eps, and its squares use the whole budget (+-eps before the box clips).
  ModelSpec s = test::smallCnn(10);
  s.mean = 0.5;
  s.stdev = 0.25;
  seedEverything(6);
  Classifier normalised(s);
  AttackOptions q;
  q.eps = 0.3;
  q.queries = 300;
  const auto xs = makeAttack("square", q)->perturb(*normalised, x, y);
  const auto linf = perExampleNorm(xs - x, Norm::kLinf);
  // Only the examples it fooled carry a perturbation (the rest come back clean, as in the reference).
  const auto fooled = normalised->forward(x).argmax(1).eq(y) & normalised->forward(xs).argmax(1).ne(y);
  CHECK(linf.max().item<double>() <= q.eps * (1 + 1e-6));
  REQUIRE(fooled.any().item<bool>());
  CHECK(linf.index({fooled}).min().item<double>() >= 0.99 * q.eps);
}

TEST_CASE("long attacks report their progress within a batch: the suite's share per member, in order, never backwards", "[attacks]") {
  Classifier model = test::standardModel();
  const Dataset data = test::fashionTest().head(50);
  AttackOptions o;
  o.seed = 4;
  o.eps = 0.05;
  o.steps = 10;
  o.suiteSteps = 10;
  o.queries = 100;
  auto suite = makeAttack("autoattack", o);
  std::vector<std::pair<double, std::string>> seen;
  suite->setProgressHook([&](double share, const std::string& stage) { seen.emplace_back(share, stage); });
  suite->perturb(*model, data.images, data.labels);
  REQUIRE(seen.size() > 4);
  std::vector<std::string> stages;
  for (size_t i = 0; i < seen.size(); ++i) {
    INFO("report " << i << ": " << seen[i].first << " " << seen[i].second);
    CHECK(seen[i].first >= 0);
    CHECK(seen[i].first < 1);
    if (i > 0) CHECK(seen[i].first >= seen[i - 1].first);
    if (stages.empty() || stages.back() != seen[i].second) stages.push_back(seen[i].second);
  }
  INFO("every member is named as it runs, in the suite's order (a member left no points to attack reports its start only)");
  CHECK(stages == std::vector<std::string>{"apgd-ce", "apgd-t", "fab-t", "square"});
  INFO("a single attack reports its own share: PGD's steps");
  auto pgd = makeAttack("pgd", o);
  std::vector<double> shares;
  pgd->setProgressHook([&](double share, const std::string&) { shares.push_back(share); });
  pgd->perturb(*model, data.images, data.labels);
  REQUIRE(shares.size() >= 2);
  CHECK(shares.front() > 0);
  CHECK(shares.back() > shares.front());
}
