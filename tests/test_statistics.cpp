// Statistics against values computed by hand (df = 2 has a closed-form t distribution:
// F(t) = 1/2 + t / (2 sqrt(2 + t^2))).
#include "experiments/plan/statistics.h"
#include "experiments/plan/verdict.h"

#include <catch2/catch.hpp>

#include <cmath>

using namespace robustlab;

TEST_CASE("mean and 95% t-interval", "[statistics]") {
  const MeanCi m = meanCi({0.70, 0.74, 0.69});
  CHECK(m.mean == Approx(0.71));
  CHECK(m.std == Approx(std::sqrt(7e-4)));
  // t(0.975, 2) = 4.302653; half-width = 4.302653 * sd / sqrt(3) = 0.065725
  CHECK(m.ciLow == Approx(0.71 - 0.065725).epsilon(1e-5));
  CHECK(m.ciHigh == Approx(0.71 + 0.065725).epsilon(1e-5));
  const MeanCi one = meanCi({0.5});
  CHECK(one.mean == 0.5);
  CHECK(std::isnan(one.ciLow));
}

TEST_CASE("paired t-test on a hand-computed example", "[statistics]") {
  // Differences 0.05, 0.04, 0.03: mean 0.04, sd 0.01, t = 0.04 / (0.01 / sqrt 3) = 4 sqrt 3,
  // p = 1 - t / sqrt(2 + t^2) = 1 - sqrt(48/50) = 0.0202041.
  const PairedTest t = pairedTTest({0.70, 0.74, 0.69}, {0.65, 0.70, 0.66});
  CHECK(t.meanDifference == Approx(0.04));
  CHECK(t.t == Approx(4 * std::sqrt(3.0)));
  CHECK(t.p == Approx(1 - std::sqrt(48.0 / 50.0)).epsilon(1e-6));
  CHECK(t.cohensD == Approx(4.0));
  CHECK(pairedTTest({0.5, 0.6}, {0.5, 0.6}).p == 1.0);
  CHECK(std::isnan(pairedTTest({0.5}, {0.4}).p));
}

TEST_CASE("exact McNemar test", "[statistics]") {
  // b = 1, c = 9: p = 2 * P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024.
  CHECK(mcnemarExactP(1, 9) == Approx(22.0 / 1024.0));
  CHECK(mcnemarExactP(9, 1) == Approx(22.0 / 1024.0));
  CHECK(mcnemarExactP(5, 5) == 1.0);
  CHECK(mcnemarExactP(0, 0) == 1.0);
  // b = 0, c = 6: 2 / 64.
  CHECK(mcnemarExactP(0, 6) == Approx(2.0 / 64.0));
}

TEST_CASE("Welch's t-test matches the textbook value and its symmetries", "[statistics]") {
  // scipy.stats.ttest_ind([1, 2, 3], [4, 5, 6], equal_var=False): t = -3.6742, df = 4, p = 0.0213116.
  const auto w = welchTTest({1, 2, 3}, {4, 5, 6});
  CHECK(w.meanDifference == Approx(-3.0));
  CHECK(w.p == Approx(0.021311641128756723).epsilon(1e-6));
  // The interval: -3 +- t_{0.975, 4} * sqrt(2/3), t_{0.975, 4} = 2.7764451.
  CHECK(w.ciLow == Approx(-3.0 - 2.7764451051977987 * std::sqrt(2.0 / 3.0)).epsilon(1e-9));
  CHECK(w.ciHigh == Approx(-3.0 + 2.7764451051977987 * std::sqrt(2.0 / 3.0)).epsilon(1e-9));
  const auto swapped = welchTTest({4, 5, 6}, {1, 2, 3});
  CHECK(swapped.p == Approx(w.p));
  CHECK(swapped.meanDifference == Approx(3.0));
  CHECK(welchTTest({1, 2, 3}, {1, 2, 3}).p == Approx(1.0));
  CHECK(std::isnan(welchTTest({1}, {2, 3}).p));
}

TEST_CASE("the headline answers the question by the report's rules: yes, no, partly, no clear answer, no verdict yet", "[statistics]") {
  // difference, interval and p of one arm against its baseline at one eps, 5 seeds
  const Finding more{"adv", "scratch", 0.17, 0.12, 0.22, 0.001, 5}, less{"clean", "scratch", -0.10, -0.15, -0.05, 0.01, 5},
      unclear{"rot", "scratch", 0.05, -0.02, 0.12, 0.09, 5}, widePositive{"x", "scratch", 0.05, 0.01, 0.09, 0.08, 5};
  CHECK(verdictOf(more) == Verdict::kMore);
  CHECK(verdictOf(less) == Verdict::kLess);
  CHECK(verdictOf(unclear) == Verdict::kUnclear);
  CHECK(verdictOf(widePositive) == Verdict::kUnclear);  // the interval excludes 0 but p >= 0.05: both are needed
  Finding twoSeeds = more;
  twoSeeds.seeds = 2;
  CHECK(verdictOf(twoSeeds) == Verdict::kTooFewSeeds);
  CHECK(headlineSentence({more}, 0.1).rfind("Yes: every pre-trained arm was more robust than its baseline at eps 0.1 (", 0) == 0);
  CHECK(headlineSentence({less}, 0.1).rfind("No: every pre-trained arm was less robust", 0) == 0);
  CHECK(headlineSentence({unclear}, 0.1).rfind("No clear answer:", 0) == 0);
  CHECK(headlineSentence({less, unclear}, 0.1).rfind("Not shown: no pre-trained arm was clearly more robust than its baseline", 0) == 0);
  const std::string partly = headlineSentence({more, less, unclear}, 0.1);
  CHECK(partly.rfind("Partly: 1 of 3 pre-trained arms were more robust than their baselines at eps 0.1", 0) == 0);
  CHECK(partly.find("more robust than the baseline: adv (+17.0); less robust: clean (-10.0); no clear difference: rot (+5.0).") != std::string::npos);
  CHECK(headlineSentence({more, twoSeeds}, 0.1).rfind("No verdict yet: 2 seeds are too few", 0) == 0);
  CHECK(headlineSentence({}, 0.1).empty());
}
