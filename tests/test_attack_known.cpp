// Known answers (ATTACK-CORRECTNESS.md items 3, 4, 10): closed forms on a linear model, PGD's first
// step equals FGSM, random starts have the right distribution, restarts keep the per-example worst case.
#include "fixtures.h"

#include "attacks/fgsm.h"
#include "attacks/pgd.h"
#include "attacks/registry.h"
#include "framework/runtime/runtime.h"

#include <catch2/catch.hpp>

#include <torch/nn/modules/linear.h>

using namespace robustlab;

namespace {

/// Exposes the protected random start for distribution tests.
class StartProbe : public Pgd {
 public:
  using Pgd::Pgd;
  torch::Tensor start(const torch::Tensor& x) { return randomStart(x); }
};

/// A 1-pixel, 2-class model whose class-1 logit is -1 below x = 0.47 and a ramp above it
/// (-1 + a(x - 0.47) - a(x - 0.53)+, reaching +1 at 0.53). Below 0.47 no hidden unit is active, so
/// the input gradient is exactly 0 there: whether an attack from x = 0.3 succeeds depends only on
/// where its random start lands.
Classifier deadZoneModel() {
  ModelSpec s;
  s.arch = "mlp";
  s.hidden = {2};
  s.inChannels = s.height = s.width = 1;
  s.numClasses = 2;
  Classifier m(s);
  torch::NoGradGuard g;
  const float a = 2.0f / 0.06f;
  auto fc1 = m->backbone()->ptr(1)->as<torch::nn::Linear>();
  fc1->weight.copy_(torch::tensor({{a}, {a}}));
  fc1->bias.copy_(torch::tensor({-0.47f * a, -0.53f * a}));
  m->head()->weight.copy_(torch::tensor({{0.f, 0.f}, {1.f, -1.f}}));
  m->head()->bias.copy_(torch::tensor({0.f, -1.f}));
  return m;
}

}  // namespace

TEST_CASE("FGSM on a linear model matches the closed form eps * sign(W^T (softmax - onehot))", "[attacks]") {
  seedEverything(5);
  ModelSpec s;
  s.arch = "mlp";  // no hidden layers: f(x) = W x + b
  Classifier lin(s);
  const auto x = test::fashionTest().images.slice(0, 0, 32);
  const auto y = test::fashionTest().labels.slice(0, 0, 32);
  const double eps = 0.07;
  AttackOptions o;
  o.eps = eps;
  const auto xadv = Fgsm(o).perturb(*lin, x, y);

  const auto W = lin->head()->weight.detach().to(torch::kFloat64);
  const auto b = lin->head()->bias.detach().to(torch::kFloat64);
  const auto xf = x.flatten(1).to(torch::kFloat64);
  const auto p = torch::softmax(xf.matmul(W.t()) + b, 1);
  const auto grad = (p - torch::one_hot(y, 10).to(torch::kFloat64)).matmul(W);  // N x 784
  const auto expected = (xf + eps * grad.sign()).clamp(0, 1).to(torch::kFloat32);
  // Entries whose gradient is too small to have a reliable float32 sign are excluded (none in practice).
  const auto reliable = grad.abs() > 1e-9;
  const auto diff = (xadv.flatten(1) - expected).abs().masked_select(reliable);
  CHECK(reliable.to(torch::kFloat64).mean().item<double>() > 0.99);
  CHECK(diff.max().item<float>() <= 1e-6f);
  // L2 closed form: eps * g / ||g||, before clipping to [0,1] (checked on pixels not clipped).
  o.norm = Norm::kL2;
  o.eps = 0.5;
  const auto xadv2 = Fgsm(o).perturb(*lin, x, y).flatten(1).to(torch::kFloat64);
  const auto step = 0.5 * grad / grad.norm(2, 1, true);
  const auto raw = xf + step;
  const auto inside = (raw >= 0) & (raw <= 1);
  CHECK((xadv2 - raw).abs().masked_select(inside).max().item<double>() < 1e-5);
}

TEST_CASE("PGD with one step of size eps and no random start equals FGSM exactly", "[attacks]") {
  Classifier model = test::standardModel();
  const auto x = test::fashionTest().images.slice(0, 0, 200);
  const auto y = test::fashionTest().labels.slice(0, 0, 200);
  for (Norm norm : {Norm::kLinf, Norm::kL2}) {
    AttackOptions o;
    o.norm = norm;
    o.eps = norm == Norm::kLinf ? 0.1 : 1.0;
    Fgsm fgsm(o);
    o.steps = 1;
    o.stepSize = o.eps;
    o.randomStart = false;
    o.earlyStop = false;
    Pgd pgd(o);
    const auto expected = fgsm.perturb(*model, x, y);
    CHECK(torch::equal(pgd.perturb(*model, x, y), expected));
    // The adversarial-training loop (last iterate, no per-example bookkeeping) agrees too.
    o.lastIterate = true;
    CHECK(torch::equal(Pgd(o).perturb(*model, x, y), expected));
  }
}

TEST_CASE("random starts: Linf uniform in the box, L2 uniform in the ball", "[attacks]") {
  const auto x = torch::full({20000, 1, 2, 2}, 0.5f);  // d = 4, far from the [0,1] edges
  AttackOptions o;
  o.eps = 0.1;
  SECTION("linf") {
    StartProbe probe(o);
    const auto d = (probe.start(x) - x).flatten();
    CHECK(d.abs().max().item<float>() <= 0.1f + 1e-7f);
    CHECK(d.mean().item<float>() == Approx(0.0).margin(0.002));
    // Uniform on [-eps, eps]: half the mass within eps/2, a quarter above eps/2.
    CHECK((d.abs() < 0.05).to(torch::kFloat32).mean().item<float>() == Approx(0.5).margin(0.01));
    CHECK((d > 0.05).to(torch::kFloat32).mean().item<float>() == Approx(0.25).margin(0.01));
  }
  SECTION("l2") {
    o.norm = Norm::kL2;
    StartProbe probe(o);
    const auto r = perExampleNorm(probe.start(x) - x, Norm::kL2) / 0.1;
    CHECK(r.max().item<double>() <= 1.0 + 1e-6);
    // Uniform in the 4-ball: (r/eps)^4 is uniform on [0,1] — not all on the sphere, not a cube.
    const auto u = r.pow(4);
    CHECK(u.mean().item<double>() == Approx(0.5).margin(0.01));
    CHECK((u < 0.25).to(torch::kFloat64).mean().item<double>() == Approx(0.25).margin(0.01));
    CHECK((r > 0.999).to(torch::kFloat64).mean().item<double>() < 0.01);
  }
}

TEST_CASE("restarts keep the worst case per example, not per batch", "[attacks]") {
  Classifier model = deadZoneModel();
  // 400 examples of class 0 at 0.3; with eps 0.25 only starts above 0.5 fool the model.
  const auto x = torch::full({400, 1, 1, 1}, 0.3f);
  const auto y = torch::zeros({400}, torch::kInt64);
  model->eval();
  REQUIRE(model->forward(x).argmax(1).eq(y).all().item<bool>());
  auto robustWith = [&](const std::string& name, int64_t restarts) {
    AttackOptions o;
    o.eps = 0.25;
    o.steps = 1;
    o.stepSize = 1e-6;  // the step barely moves: success is decided by the start
    o.restarts = restarts;
    o.seed = 11;
    const auto xadv = makeAttack(name, o)->perturb(*model, x, y);
    return model->forward(xadv).argmax(1).eq(y);
  };
  SECTION("pgd") {
    const auto one = robustWith("pgd", 1), many = robustWith("pgd", 20);
    const double a1 = one.to(torch::kFloat64).mean().item<double>(), a20 = many.to(torch::kFloat64).mean().item<double>();
    INFO("robust accuracy with 1 restart " << a1 << ", with 20 restarts " << a20);
    // One start lands in the fooling 10% of the ball; 20 per-example starts fool ~88%. Choosing
    // the best restart per batch would leave ~85% robust.
    CHECK(a1 > 0.8);
    CHECK(a20 < 0.3);
    // The first restart is the same draw, so whatever it fooled stays fooled.
    CHECK((many & ~one).sum().item<int64_t>() == 0);
  }
  SECTION("apgd-ce") {
    // APGD starts on the sphere: in 1-D that is x - eps (dead, stays) or x + eps (fooled), half and half.
    const double a1 = robustWith("apgd-ce", 1).to(torch::kFloat64).mean().item<double>();
    const double a10 = robustWith("apgd-ce", 10).to(torch::kFloat64).mean().item<double>();
    INFO("robust accuracy with 1 restart " << a1 << ", with 10 restarts " << a10);
    CHECK(a1 > 0.3);
    CHECK(a1 < 0.7);
    CHECK(a10 < 0.02);
  }
}
