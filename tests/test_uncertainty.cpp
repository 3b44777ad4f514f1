// Calibration and out-of-distribution detection metrics against known answers.
#include "attacks/evaluation/uncertainty.h"

#include <torch/nn/functional/loss.h>

#include <catch2/catch.hpp>

#include <cmath>

using namespace robustlab;

namespace {

torch::Tensor d(std::vector<double> v) { return torch::tensor(v, torch::kFloat64); }

/// Two-class logits whose softmax confidence is `conf` for class 0, and labels: 1 in every
/// `period`-th example (wrong), else 0 (right).
std::pair<torch::Tensor, torch::Tensor> twoClass(int64_t n, double conf, int64_t period) {
  auto logits = torch::zeros({n, 2}, torch::kFloat64);
  logits.select(1, 0).fill_(std::log(conf / (1 - conf)));
  auto labels = (torch::arange(n, torch::kInt64).remainder(period) == period - 1).to(torch::kInt64);
  return {logits, labels};
}

}  // namespace

TEST_CASE("AUROC is 1 for separable scores, 1/2 for identical ones, and the hand-made case's values", "[statistics]") {
  CHECK(detection(d({3, 4, 5}), d({0, 1, 2})).auroc == 1.0);
  CHECK(detection(d({0, 1, 2}), d({3, 4, 5})).auroc == 0.0);
  const auto same = detection(d({0.2, 0.5, 0.9}), d({0.9, 0.2, 0.5}));
  CHECK(same.auroc == 0.5);
  // in = {4, 3, 2, 1}, out = {3.5, 0.5}: 5 of the 8 pairs ranked right; AUPR-in by hand: 1/4 + (1/4)(2/3)
  // + (1/4)(3/4) + (1/4)(4/5); AUPR-out: 1/2 + (1/2)(2/5); at TPR 95% every in-score must pass (t = 1),
  // which also passes the out-score 3.5: FPR 1/2.
  const auto m = detection(d({4, 3, 2, 1}), d({3.5, 0.5}));
  CHECK(m.auroc == Approx(0.625).epsilon(1e-12));
  CHECK(m.auprIn == Approx(0.25 + 0.25 * 2 / 3 + 0.25 * 0.75 + 0.25 * 0.8).epsilon(1e-12));
  CHECK(m.auprOut == Approx(0.5 + 0.5 * 0.4).epsilon(1e-12));
  CHECK(m.fpr95 == 0.5);
  // 20 in-scores 1..20: the threshold accepting 95% (19 of them) is 2; out-scores {1.5, 2, 30}: 2 pass.
  const auto k = detection(torch::arange(1, 21, torch::kFloat64), d({1.5, 2, 30}));
  CHECK(k.fpr95 == Approx(2.0 / 3));
  CHECK_THROWS_WITH(detection(d({1}), torch::zeros({0}, torch::kFloat64)), Catch::Contains("at least one"));
}

TEST_CASE("calibration is 0 for a calibrated toy and the closed form for constant confidence", "[statistics]") {
  // Confidence 3/4 everywhere and every fourth example wrong: each 4-example bin is right 3/4 of the time.
  const auto [logits, labels] = twoClass(60, 0.75, 4);
  const auto c = calibration(logits, labels, 15);
  CHECK(c.ece == Approx(0).margin(1e-12));
  CHECK(c.rmsError == Approx(0).margin(1e-12));
  CHECK(c.binCount.sum().item<int64_t>() == 60);
  // Confidence 3/4, half right, one bin: |acc - conf| = 1/4 for both errors; NLL and Brier by hand.
  const auto [l2, y2] = twoClass(40, 0.75, 2);
  const auto h = calibration(l2, y2, 1);
  CHECK(h.ece == Approx(0.25).epsilon(1e-12));
  CHECK(h.rmsError == Approx(0.25).epsilon(1e-12));
  CHECK(h.nll == Approx((std::log(4.0 / 3) + std::log(4.0)) / 2).epsilon(1e-12));
  CHECK(h.brier == Approx((0.125 + 1.125) / 2).epsilon(1e-12));
  // NLL is the mean cross-entropy; equal-mass bins of 10 examples in 3 bins hold 3, 3 and 4.
  const auto z = torch::randn({10, 4}, torch::kFloat64);
  const auto y = torch::tensor({0, 1, 2, 3, 0, 1, 2, 3, 0, 1}, torch::kInt64);
  const auto r = calibration(z, y, 3);
  CHECK(r.nll == Approx(torch::nn::functional::cross_entropy(z, y).item<double>()).epsilon(1e-12));
  CHECK(r.binCount.equal(torch::tensor({3, 3, 4}, torch::kInt64)));
  CHECK(calibration(z, y, 50).binCount.size(0) == 10);
  CHECK_THROWS_WITH(calibration(z, y, 0), Catch::Contains("bins"));
}
