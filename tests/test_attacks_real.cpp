// Attacks against CNNs trained on real Fashion-MNIST, scored on 1000 real held-out test images.
#include "fixtures.h"

#include "attacks/adversarial_training.h"
#include "attacks/evaluation.h"
#include "framework/runtime.h"
#include "framework/progress.h"
#include "framework/trainer.h"

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
  const double robustT = evaluate(*mt, test::fashionTest().head(500), e, torch::kCPU).worstAccuracy[0];
  const double robustC = evaluate(*mc, test::fashionTest().head(500), e, torch::kCPU).worstAccuracy[0];
  INFO("PGD-20 accuracy at eps 0.1: TRADES " << robustT << ", standard " << robustC);
  CHECK(robustT >= robustC + 0.15);
}

TEST_CASE("bf16 precision gives robust accuracy within 1 point of fp32 on the same model and data", "[attacks]") {
  Classifier model = test::standardModel();
  auto e = suite({"pgd"}, {0.05, 0.1});
  const EvalResult fp32 = evaluate(*model, test::fashionTest().head(500), e, torch::kCPU);
  e.precision = Precision::kBf16;
  const EvalResult bf16 = evaluate(*model, test::fashionTest().head(500), e, torch::kCPU);
  CHECK(bf16.precision == Precision::kBf16);
  CHECK(std::abs(bf16.cleanAccuracy - fp32.cleanAccuracy) <= 0.01);
  for (size_t i = 0; i < e.epsGrid.size(); ++i) {
    INFO("eps " << e.epsGrid[i] << ": fp32 " << fp32.worstAccuracy[i] << ", bf16 " << bf16.worstAccuracy[i]);
    CHECK(std::abs(bf16.worstAccuracy[i] - fp32.worstAccuracy[i]) <= 0.01);
  }
  // The precision is scoped to its evaluation: fp32 again afterwards gives the fp32 numbers.
  e.precision = Precision::kFp32;
  CHECK(evaluate(*model, test::fashionTest().head(500), e, torch::kCPU).worstAccuracy == fp32.worstAccuracy);
}
