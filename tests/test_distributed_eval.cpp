// Evaluation as data-parallel ranks: the attacks' and the sanity checks' examples, the clean
// predictions and the corruptions' (corruption, severity) pairs shared between ranks, every rank
// ending with one process's numbers. Ranks are threads of this process (ranks.h).
#include "eval_suite.h"
#include "fixtures.h"
#include "ranks.h"

#include "attacks/evaluation/evaluation.h"
#include "experiments/plan/robustness_eval.h"
#include "framework/config/config.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace robustlab;

TEST_CASE("Ranks share the corruptions' severities and store one process's per-example results, on every rank", "[distributed]") {
  // 4 corruptions x 5 severities = 20 pairs: 10 per rank of two, 7, 7 and 6 on three. Each pair is one
  // seeded draw over the whole test set on one rank, so the rows are one process's, bit for bit.
  const Dataset data = test::fashionTest().head(300);
  Config c;
  c.seed = 3;
  c.robustness.corruptions = {"gaussian_noise", "rotate", "contrast", "fog"};
  c.robustness.calibration = true;
  Classifier one = test::standardModel();
  const RobustnessResult alone = evaluateRobustness(*one, data, {}, {}, c, torch::kCPU);
  REQUIRE(alone.corruptions.size() == 4);
  // Not a constant: the severities move the accuracy (the fixture model is right on most clean images).
  CHECK(alone.corruptions[1].accuracy.front() > alone.corruptions[1].accuracy.back());
  for (const int n : {2, 3}) {
    std::vector<RobustnessResult> ranks(static_cast<size_t>(n));
    std::vector<Classifier> models;
    for (int r = 0; r < n; ++r) models.push_back(test::standardModel());
    test::onRanks(n, [&](Communicator& comm) {
      const auto r = static_cast<size_t>(comm.rank());
      ranks[r] = evaluateRobustness(*models[r], data, {}, {}, c, torch::kCPU, &comm);
    });
    for (const auto& r : ranks) {
      INFO(n << " ranks");
      REQUIRE(r.corruptions.size() == alone.corruptions.size());
      for (size_t i = 0; i < r.corruptions.size(); ++i) {
        INFO(alone.corruptions[i].name);
        CHECK(r.corruptions[i].name == alone.corruptions[i].name);
        CHECK(r.corruptions[i].accuracy == alone.corruptions[i].accuracy);
        CHECK(torch::equal(r.corruptions[i].correct, alone.corruptions[i].correct));
      }
      CHECK(r.calibration.ece == alone.calibration.ece);
    }
  }
}

TEST_CASE("Two ranks share the sanity checks' examples and reach one process's verdicts, the same on every rank", "[distributed]") {
  // The checks' own attacks (eps 0, a huge eps, PGD with twice the steps) and the five passes of the
  // randomness check split the examples like the attacks do; their counts are summed over the ranks.
  // Deterministic parts (FGSM, every attack at eps 0, the model's passes) give one process's numbers;
  // PGD's random starts are drawn per rank. A masked model must still fail on two ranks.
  const Dataset data = test::fashionTest().head(200);
  for (const bool masked : {false, true}) {
    auto model = [masked] {
      Classifier m = test::standardModel();
      if (masked) {  // saturated softmax: zero input gradients (as in test_evaluation.cpp)
        torch::NoGradGuard g;
        m->head()->weight.mul_(1e4);
        m->head()->bias.mul_(1e4);
      }
      return m;
    };
    Classifier one = model();
    const EvalResult alone = evaluate(*one, data, test::fgsmPgdSuite(), torch::kCPU);
    std::vector<EvalResult> ranks(2);
    std::vector<Classifier> models{model(), model()};
    test::onRanks(2, [&](Communicator& c) {
      EvalOptions e = test::fgsmPgdSuite();
      e.comm = test::borrowed(c);
      ranks[static_cast<size_t>(c.rank())] = evaluate(*models[static_cast<size_t>(c.rank())], data, e, torch::kCPU);
    });
    INFO((masked ? "masked model" : "trained model"));
    // The clean predictions, each rank predicting its share: one process's, on every rank.
    for (const auto& r : ranks) CHECK(torch::equal(r.cleanPred, alone.cleanPred));
    REQUIRE(alone.checks.size() == 7);
    for (const auto& r : ranks) REQUIRE(r.checks.size() == alone.checks.size());
    for (size_t i = 0; i < alone.checks.size(); ++i) {
      const auto &a = alone.checks[i], &r0 = ranks[0].checks[i], &r1 = ranks[1].checks[i];
      INFO(a.name << ": one process '" << a.detail << "', rank 0 '" << r0.detail << "'");
      CHECK(r0.name == a.name);
      CHECK((r1.name == r0.name && r1.passed == r0.passed && r1.detail == r0.detail));  // every rank the same verdicts
      // Their numbers come from no random draw: one process's, word for word. (zero_gradients and the
      // others count PGD's steps from random starts: close, not equal, on a masked model.)
      if (a.name == "deterministic_model" || a.name == "eps_zero_identity") CHECK(r0.detail == a.detail);
    }
    for (const EvalResult* result : {&alone, static_cast<const EvalResult*>(&ranks[0])}) {
      std::vector<std::string> failed;
      for (const auto& c : result->checks)
        if (!c.passed) failed.push_back(c.name);
      if (masked) {
        CHECK(std::find(failed.begin(), failed.end(), "zero_gradients") != failed.end());
        CHECK(std::find(failed.begin(), failed.end(), "large_eps_breaks_model") != failed.end());
      } else {
        CHECK(failed.empty());
      }
    }
  }
}
