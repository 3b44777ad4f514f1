// The attack loss object: a toy loss defined here, in this file alone, runs through the attacks like
// the built-in ones; a loss that couples the rows runs only in Pgd's last-iterate loop and says so
// elsewhere; TRADES' inner maximisation through Pgd is exactly the TRADES loop.
#include "fixtures.h"

#include "attacks/apgd.h"
#include "attacks/pgd.h"
#include "framework/runtime/runtime.h"
#include "framework/training/adversarial_training.h"

#include <torch/autograd.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <catch2/catch.hpp>

#include <memory>

using namespace robustlab;
namespace F = torch::nn::functional;

namespace {

/// The toy: the logit of class 0, per example (an attack ascending it pushes every image towards class 0).
class ClassZeroLogit : public AttackLoss {
 public:
  explicit ClassZeroLogit(bool wholeBatch = false) : wholeBatch_(wholeBatch) {}
  std::string name() const override { return "toy"; }
  torch::Tensor operator()(const torch::Tensor& logits, const torch::Tensor&, const torch::Tensor&) const override {
    const auto z0 = logits.select(1, 0);
    return wholeBatch_ ? z0.sum() : z0;
  }
  bool perExample() const override { return !wholeBatch_; }

 private:
  bool wholeBatch_;
};

AttackOptions trainingPgd() {
  AttackOptions o;
  o.eps = 0.1;
  o.steps = 10;
  o.seed = 4;
  o.lastIterate = true;
  o.earlyStop = false;
  return o;
}

double share(const torch::Tensor& mask) { return mask.to(torch::kFloat64).mean().item<double>(); }

}  // namespace

TEST_CASE("a toy loss defined in a test runs through pgd and apgd, which ascend it", "[attacks]") {
  Classifier model = test::standardModel();
  const auto x = test::fashionTest().images.slice(0, 0, 200);
  const auto y = test::fashionTest().labels.slice(0, 0, 200);
  const auto toy = std::make_shared<ClassZeroLogit>();
  torch::Tensor clean;
  {
    torch::NoGradGuard noGrad;
    clean = model->forward(x);
  }
  model->train();
  for (const bool apgd : {false, true}) {
    INFO((apgd ? "apgd" : "pgd"));
    // PGD's last iterate is the plain ascent; APGD keeps per example the first point that misclassifies
    // (its success), else the highest-loss one.
    AttackOptions o = trainingPgd();
    o.lastIterate = !apgd;
    std::unique_ptr<Attack> attack = apgd ? std::unique_ptr<Attack>(std::make_unique<Apgd>(o, toy)) : std::make_unique<Pgd>(o);
    if (!apgd) attack->setLoss(toy);
    CHECK(attack->name() == (apgd ? "apgd-toy" : "pgd"));
    const auto xadv = attack->perturb(*model, x, y);
    CHECK(model->is_training());
    CHECK(perExampleNorm(xadv - x, Norm::kLinf).max().item<double>() <= 0.1 * (1 + 1e-6));
    torch::NoGradGuard noGrad;
    const auto adv = model->forward(xadv);
    // Per example the kept iterate is the highest-loss one of the steps taken (or the first that fooled):
    // the class-0 logit rises on average, and class 0 gains predictions it cannot gain by chance.
    const double before = share(clean.argmax(1).eq(0)), after = share(adv.argmax(1).eq(0));
    INFO("class-0 share " << before << " -> " << after);
    CHECK(adv.select(1, 0).mean().item<double>() > clean.select(1, 0).mean().item<double>() + 1.0);
    CHECK(after > 2 * before);
  }
  model->eval();
}

TEST_CASE("a loss that couples the rows runs in pgd's last-iterate loop, bit-identical to its per-example form, and nowhere else",
          "[attacks]") {
  Classifier model = test::standardModel();
  const auto x = test::fashionTest().images.slice(0, 0, 96);
  const auto y = test::fashionTest().labels.slice(0, 0, 96);
  Pgd perRow(trainingPgd()), whole(trainingPgd());
  perRow.setLoss(std::make_shared<ClassZeroLogit>(false));
  whole.setLoss(std::make_shared<ClassZeroLogit>(true));
  // The gradient of the summed per-example loss and of the batch's one number are the same numbers.
  CHECK(torch::equal(perRow.perturb(*model, x, y), whole.perturb(*model, x, y)));
  AttackOptions o = trainingPgd();
  o.lastIterate = false;
  Pgd evaluating(o);
  evaluating.setLoss(std::make_shared<ClassZeroLogit>(true));
  CHECK_THROWS_WITH(evaluating.perturb(*model, x, y), Catch::Contains("toy loss scores whole batches only") && Catch::Contains("last_iterate"));
  Apgd apgd(o, std::make_shared<ClassZeroLogit>(true));
  CHECK_THROWS_WITH(apgd.perturb(*model, x, y), Catch::Contains("whole batches only"));
}

TEST_CASE("TRADES through pgd is the TRADES loop: the same adversarial examples and loss as a plain reference loop", "[attacks]") {
  Classifier model = test::standardModel();
  const auto x = test::fashionTest().images.slice(0, 0, 64);
  const auto y = test::fashionTest().labels.slice(0, 0, 64);
  AttackOptions a;
  a.eps = 0.1;
  a.steps = 5;
  a.stepSize = 0.03;
  const double beta = 6.0;
  // The reference (Zhang et al.'s code, with the attack's ulp-exact box): start x + 0.001 N(0,1) from the
  // batch's generator, steps on KL(p_clean || p(x')) summed, sign steps clamped into the box, eval mode.
  torch::Tensor reference;
  {
    at::Generator gen = makeGenerator(11);
    model->eval();
    torch::Tensor pClean;
    {
      torch::NoGradGuard noGrad;
      pClean = torch::softmax(model->forward(x), 1);
    }
    const LinfBox box = linfBox(x, a.eps, 0.0, 1.0);
    auto xadv = x + 0.001 * randNormal(x.sizes(), gen, x.device());
    for (int64_t s = 0; s < a.steps; ++s) {
      auto xin = xadv.detach().requires_grad_(true);
      const auto kl = F::kl_div(torch::log_softmax(model->forward(xin), 1), pClean, F::KLDivFuncOptions().reduction(torch::kSum));
      const auto g = torch::autograd::grad({kl}, {xin}, {}, false, false, /*allow_unused=*/false)[0];
      xadv = box.clamp(xadv.detach() + a.stepSize * g.sign());
    }
    model->train();
    const auto logits = model->forward(x);
    reference = F::cross_entropy(logits, y) + beta * F::kl_div(torch::log_softmax(model->forward(xadv.detach()), 1), torch::softmax(logits, 1),
                                                                F::KLDivFuncOptions().reduction(torch::kBatchMean));
  }
  for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
  at::Generator gen = makeGenerator(11);
  TradesObjective trades(a, beta);
  const auto out = trades.batch(*model, x, y, gen);
  CHECK(model->is_training());
  for (const auto& p : model->parameters()) CHECK_FALSE(p.grad().defined());  // the attack took no parameter gradient
  INFO("objective " << out.loss.item<double>() << ", reference " << reference.item<double>());
  CHECK(out.loss.item<float>() == reference.item<float>());
  model->eval();
}
