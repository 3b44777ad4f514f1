// Attacks against CNNs trained on real Fashion-MNIST, scored on 1000 real held-out test images.
#include "fixtures.h"

#include "framework/training/adversarial_training.h"
#include "attacks/evaluation/evaluation.h"
#include "framework/runtime/runtime.h"
#include "framework/runtime/progress.h"
#include "framework/training/trainer.h"
#include "data/sources.h"
#include "experiments/plan/statistics.h"

#include <catch2/catch.hpp>

using namespace robustlab;

namespace {

EvalOptions suite(const std::vector<std::string>& names, std::vector<double> eps) {
  Progress::setQuiet(true);
  EvalOptions e;
  for (const auto& n : names) {
    AttackOptions o;
    o.steps = 20;
    e.attacks.push_back({n, o});
  }
  e.epsGrid = std::move(eps);
  e.sanityChecks = false;
  return e;
}

}  // namespace

TEST_CASE("on a normally trained CNN, PGD-20 at eps 0.1 is far below clean and below FGSM; APGD-CE at least as strong", "[attacks]") {
  Classifier model = test::standardModel();
  const EvalResult r = evaluate(*model, test::fashionTest(), suite({"fgsm", "pgd", "apgd-ce"}, {0.1}), torch::kCPU);
  const double pgd = r.find("pgd", 0.1)->robustAccuracy, fgsm = r.find("fgsm", 0.1)->robustAccuracy,
               apgd = r.find("apgd-ce", 0.1)->robustAccuracy;
  INFO("clean " << r.cleanAccuracy << " fgsm " << fgsm << " pgd " << pgd << " apgd-ce " << apgd);
  CHECK(r.cleanAccuracy >= 0.8);
  CHECK(pgd <= r.cleanAccuracy - 0.4);
  CHECK(pgd < fgsm);
  CHECK(apgd <= pgd + 0.005);
}

TEST_CASE("a PGD-adversarially-trained CNN keeps much higher accuracy at eps 0.1 than the normal one", "[attacks]") {
  Classifier standard = test::standardModel();
  Classifier robust = test::adversarialModel();
  const auto e = suite({"pgd", "apgd-ce"}, {0.1});
  const EvalResult rs = evaluate(*standard, test::fashionTest(), e, torch::kCPU);
  const EvalResult ra = evaluate(*robust, test::fashionTest(), e, torch::kCPU);
  INFO("standard: clean " << rs.cleanAccuracy << " worst " << rs.worstAccuracy[0] << "; adversarial: clean " << ra.cleanAccuracy
                          << " worst " << ra.worstAccuracy[0]);
  CHECK(ra.worstAccuracy[0] >= rs.worstAccuracy[0] + 0.25);
  CHECK(ra.cleanAccuracy >= 0.6);
}

TEST_CASE("TRADES training makes the model more robust than standard training of the same length", "[attacks]") {
  const Dataset d = test::fashionTrain().head(3000);
  auto trainWith = [&](TrainingObjective& obj) {
    seedEverything(0);
    Classifier m(test::smallCnn());
    TrainOptions opt;
    opt.epochs = 2;
    opt.batchSize = 64;
    train(*m, obj, d, Dataset{}, opt, torch::kCPU);
    return m;
  };
  AttackOptions a;
  a.eps = 0.1;
  a.steps = 5;
  a.stepSize = 0.04;
  TradesObjective trades(a, 6.0);
  CrossEntropyObjective ce;
  Classifier mt = trainWith(trades), mc = trainWith(ce);
  const auto e = suite({"pgd"}, {0.1});
  const EvalResult rt = evaluate(*mt, test::fashionTest(), e, torch::kCPU), rc = evaluate(*mc, test::fashionTest(), e, torch::kCPU);
  // Per example on 1,000 test images: robust under TRADES only against under standard training only. Two
  // short trainings differ from CPU to CPU by a few points (measured: TRADES 49.0-51.2% across the AVX-512
  // and AVX2 code paths), so the claim is a large, certain gain rather than one CPU's number: at least 10
  // points (about five standard errors of a paired difference here) and McNemar p < 1e-6.
  const auto t = rt.worstRobust.select(1, 0), c = rc.worstRobust.select(1, 0);
  const int64_t onlyT = (t & ~c).sum().item<int64_t>(), onlyC = (~t & c).sum().item<int64_t>();
  INFO("PGD-20 accuracy at eps 0.1: TRADES " << rt.worstAccuracy[0] << ", standard " << rc.worstAccuracy[0] << "; robust only under TRADES "
                                              << onlyT << ", only under standard " << onlyC);
  CHECK(rt.worstAccuracy[0] >= rc.worstAccuracy[0] + 0.10);
  CHECK(onlyT > onlyC);
  CHECK(mcnemarExactP(onlyC, onlyT) < 1e-6);
}

TEST_CASE("bf16 precision moves PGD's robust accuracy by under 1 point and clean predictions in neither direction", "[attacks]") {
  // Per example, on 3,000 real test images (1 point of accuracy = 30 examples): b examples are robust
  // (or correct) in fp32 only, c in bf16 only. bf16's logits differ from fp32's by about 2^-8 relative,
  // which moves examples near the decision boundary across it.
  // - Clean: one prediction per example, so the rounding has no direction: flips are rare (at most 4%)
  //   and balanced (McNemar's exact test, p >= 0.001: a fair coin fails once in 1,000 such checks).
  // - Under attack the rounding does have a direction: an example is robust only if none of PGD's
  //   checked iterates is misclassified, and noisy logits give each near-boundary example more chances
  //   to be caught, so bf16 can report slightly *lower* robust accuracy. Measured on an AMD EPYC without
  //   AVX-512 (LibTorch's emulated bf16): 21 examples robust in fp32 only against 2 in bf16 only over
  //   eps 0.05 and 0.1; with AVX-512 BF16 (fp32 sums) 3 each way. What is tested is the claim the docs
  //   makes: flips are rare and the accuracy change is under 1 point with 95% confidence, i.e.
  //   |c - b| + 1.96 sqrt(b + c) < N / 100 (the paired difference's normal bound; var(c - b) ~ b + c).
  Classifier model = test::standardModel();
  const Dataset data = loadSplit(DataSourceSpec{}, "test").select(torch::arange(1000, 4000));  // not the 1,000 other tests use
  const int64_t n = data.size();
  REQUIRE(n == 3000);
  auto e = suite({"pgd"}, {0.05, 0.1});
  const EvalResult fp32 = evaluate(*model, data, e, torch::kCPU);
  e.precision = Precision::kBf16;
  const EvalResult bf16 = evaluate(*model, data, e, torch::kCPU);
  CHECK(bf16.precision == Precision::kBf16);
  auto compare = [&](const std::string& what, const torch::Tensor& a, const torch::Tensor& b16, double accA, double accB, bool balanced) {
    const int64_t onlyFp32 = (a & ~b16).sum().item<int64_t>(), onlyBf16 = (~a & b16).sum().item<int64_t>();
    const double p = mcnemarExactP(onlyFp32, onlyBf16);
    const double bound = std::abs(double(onlyBf16 - onlyFp32)) + 1.96 * std::sqrt(double(onlyFp32 + onlyBf16));
    INFO(what << ": fp32 " << accA << ", bf16 " << accB << "; " << onlyFp32 << " examples only in fp32, " << onlyBf16
              << " only in bf16, of " << n << "; McNemar p = " << p << "; 95% bound on the change " << bound << " examples");
    CHECK(onlyFp32 + onlyBf16 <= n * 4 / 100);
    CHECK(bound < n / 100.0);
    if (balanced) CHECK(p >= 0.001);
    CHECK(std::abs(accB - accA) * n == Approx(std::abs(onlyBf16 - onlyFp32)).margin(1e-6));
  };
  compare("clean", fp32.cleanCorrect, bf16.cleanCorrect, fp32.cleanAccuracy, bf16.cleanAccuracy, true);
  for (size_t i = 0; i < e.epsGrid.size(); ++i)
    compare("PGD-20 eps " + std::to_string(e.epsGrid[i]), fp32.worstRobust.select(1, i), bf16.worstRobust.select(1, i), fp32.worstAccuracy[i],
            bf16.worstAccuracy[i], false);
  // The precision is scoped to its evaluation: fp32 again afterwards gives the fp32 numbers.
  e.precision = Precision::kFp32;
  CHECK(evaluate(*model, data, e, torch::kCPU).worstAccuracy == fp32.worstAccuracy);
}
