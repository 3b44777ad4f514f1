// Contrastive pre-training (SimCLR, adversarial contrastive), LP-FT and BatchNorm statistics on
// fine-tuning, on real Fashion-MNIST slices with fixed seeds.
#include "fixtures.h"

#include "data/tasks.h"
#include "framework/runtime/progress.h"
#include "framework/runtime/runtime.h"
#include "framework/training/augment.h"
#include "framework/training/contrastive.h"
#include "framework/training/registry.h"
#include "framework/training/trainer.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <limits>

using namespace robustlab;

namespace {

TrainOptions quick(int64_t epochs, int64_t batch = 128, double lr = 0.05) {
  Progress::setQuiet(true);
  TrainOptions o;
  o.epochs = epochs;
  o.batchSize = batch;
  o.optim.lr = lr;
  return o;
}

bool sameParameters(ClassifierImpl& a, ClassifierImpl& b) { return test::sameTensors(a.parameters(), b.parameters()); }

bool sameBackbone(ClassifierImpl& a, ClassifierImpl& b) { return test::sameTensors(a.backbone()->parameters(), b.backbone()->parameters()); }

std::vector<torch::Tensor> batchNormBuffers(ClassifierImpl& m) {
  std::vector<torch::Tensor> out;
  for (const auto& l : batchNormLayers(m))
    for (const auto& b : l->named_buffers(false)) out.push_back(b.value().clone());
  return out;
}

/// The contrastive recipe measured on this slice (the [.recipe] case below, small CNN, 2000 images,
/// 4 epochs): SimCLR's CIFAR views (crop area from 0.3, jitter 0.4, t = 0.5) leave the held-out
/// pretext accuracy at 2.4% and a 200-label probe at 47%; gentler views and t = 0.2 give 12% and 62%.
ObjectiveParams contrastiveParams(int64_t advSteps = 3) {
  ObjectiveParams p;
  p.adversary.eps = 0.1;
  p.adversary.steps = advSteps;
  p.contrastive.temperature = 0.2;
  p.contrastive.views.minScale = 0.6;
  p.contrastive.views.jitter = 0.2;
  return p;
}

/// Pre-trains a fresh small CNN with `mode` on d, seed 0.
Classifier pretrain(const std::string& mode, const Dataset& d, int64_t epochs, bool batchNorm = false) {
  seedEverything(0);
  Classifier m(test::smallCnn(10, batchNorm));
  auto objective = makePretrainObjective(mode, "standard", contrastiveParams(), *m);
  train(*m, *objective, d, Dataset{}, quick(epochs, 256), torch::kCPU);
  return m;
}

}  // namespace

TEST_CASE("NT-Xent equals its closed form on hand-made batches", "[pretraining]") {
  // Two images, their two views identical and orthogonal to the other image's: each of the 4
  // embeddings has its positive at cosine 1 and two negatives at cosine 0, so the loss is
  // -log(e^(1/t) / (e^(1/t) + 2)) = log(1 + 2 e^(-1/t)).
  // In fp32 the loss is logsumexp(logits) - positive logit, two numbers of size 1/t: its error is a
  // few units of fp32 rounding at 1/t (absolute, not relative: at t = 0.1 the loss is only 9e-5).
  const auto z = torch::tensor({1.0f, 0.0f, 0.0f, 1.0f}).view({2, 2});
  for (double t : {1.0, 0.5, 0.1}) {
    int64_t correct = -1;
    const double loss = ntXentLoss(z, z, t, &correct).item<double>();
    const double margin = 4 * std::numeric_limits<float>::epsilon() * (1 / t + 1);
    CHECK(loss == Approx(std::log1p(2 * std::exp(-1 / t))).epsilon(0).margin(margin));
    CHECK(correct == 4);
  }
  INFO("the loss depends on directions only: scaled projections give the same value");
  CHECK(ntXentLoss(z * 3, z * 0.5, 0.5).item<double>() == Approx(std::log1p(2 * std::exp(-2.0))).epsilon(1e-6));
  INFO("views pointing away from each other: the positive is at cosine -1, the negatives at 0 (t = 1): log(1 + 2 e)");
  const auto away = torch::tensor({-1.0f, 0.0f, 0.0f, -1.0f}).view({2, 2});
  int64_t correct = -1;
  CHECK(ntXentLoss(z, away, 1.0, &correct).item<double>() == Approx(std::log1p(2 * std::exp(1.0))).epsilon(1e-6));
  CHECK(correct == 0);
  INFO("one image: its other view is the only candidate, the loss is log 1 = 0");
  CHECK(ntXentLoss(torch::tensor({{0.3f, 0.7f}}), torch::tensor({{-0.2f, 0.1f}}), 0.5).item<double>() == Approx(0.0).margin(1e-7));
  CHECK_THROWS_WITH(ntXentLoss(z, z.slice(0, 0, 1), 0.5), Catch::Contains("N x d"));
}

TEST_CASE("contrastive views are seeded random crops, flips and jitter of each image", "[pretraining]") {
  const auto x = test::fashionTrain().images.slice(0, 0, 64);
  ViewOptions identity;
  identity.minScale = 1.0;
  identity.flip = false;
  identity.jitter = 0.0;
  auto gen = makeGenerator(1);
  INFO("a whole-image crop without flip and jitter resamples the pixel centres exactly: the image comes back (fp32 interpolation)");
  CHECK((contrastiveView(x, identity, gen) - x).abs().max().item<float>() < 1e-5f);
  ViewOptions o;
  auto a = makeGenerator(7), b = makeGenerator(7), c = makeGenerator(8);
  const auto va = contrastiveView(x, o, a), vb = contrastiveView(x, o, b), vc = contrastiveView(x, o, c);
  CHECK(va.sizes() == x.sizes());
  CHECK(torch::equal(va, vb));
  CHECK_FALSE(torch::equal(va, vc));
  CHECK(va.min().item<float>() >= 0.0f);
  CHECK(va.max().item<float>() <= 1.0f);
  INFO("every image is changed, each differently");
  CHECK((va - x).abs().flatten(1).amax(1).min().item<float>() > 0.01f);
  ViewOptions bad;
  bad.minScale = 0;
  CHECK_THROWS_WITH(bad.validate(), Catch::Contains("view_min_scale"));
}

TEST_CASE("SimCLR and adversarial contrastive pre-training lower their own loss on real Fashion-MNIST", "[pretraining]") {
  const Dataset d = test::fashionTrain().head(2000);
  for (const std::string mode : {"simclr", "adv-contrastive"}) {
    seedEverything(0);
    Classifier m(test::smallCnn());
    auto objective = makePretrainObjective(mode, "standard", contrastiveParams(), *m);
    const auto h = train(*m, *objective, d, test::fashionTest().head(512), quick(4, 256), torch::kCPU);
    INFO(mode << ": loss " << h.front().loss << " -> " << h.back().loss << ", positive found " << h.back().accuracy << ", held out "
              << h.back().valAccuracy);
    // log(2N - 1) = 6.24 (N = 256) is the loss of embeddings that say nothing; measured: 28% (simclr)
    // and 20% (both terms of adv-contrastive) below the first epoch's after 4 epochs.
    CHECK(h.back().loss < 0.9 * h.front().loss);
    // The held-out 512 images are 1024 queries, each finding its other view among 511 candidates by
    // chance with p = 1/511: about 2 hits. 20 or more has a Poisson probability below 1e-10, so a
    // held-out pretext accuracy above 20/1024 is learnt, not luck (measured: 12%).
    CHECK(h.back().valAccuracy > 20.0 / 1024);
  }
}

TEST_CASE("self-supervised pre-training never reads labels: poisoned labels give the same weights", "[pretraining]") {
  Dataset d = test::fashionTrain().head(512);
  Dataset poisoned = d;
  poisoned.labels = torch::randint(0, 10, {d.size()}, makeGenerator(99), torch::kInt64);
  REQUIRE_FALSE(torch::equal(poisoned.labels, d.labels));
  for (const std::string mode : {"simclr", "adv-contrastive", "rotation", "masked"}) {
    Classifier a = pretrain(mode, d, 1), b = pretrain(mode, poisoned, 1);
    INFO(mode);
    CHECK(sameParameters(*a, *b));
  }
  INFO("a supervised pre-training does read them");
  seedEverything(0);
  Classifier c(test::smallCnn());
  seedEverything(0);
  Classifier f(test::smallCnn());
  CrossEntropyObjective ce;
  train(*c, ce, d, Dataset{}, quick(1, 256), torch::kCPU);
  train(*f, ce, poisoned, Dataset{}, quick(1, 256), torch::kCPU);
  CHECK_FALSE(sameParameters(*c, *f));
}

TEST_CASE("a SimCLR backbone's linear probe beats a random backbone's by a clear margin", "[pretraining]") {
  Classifier pre = pretrain("simclr", test::fashionTrain(), 6);
  seedEverything(0);
  Classifier random(test::smallCnn());
  const Dataset labelled = limitPerClass(test::fashionTrain(), 20, 3);
  auto probe = [&](ClassifierImpl& m) {
    m.resetHead(10);
    CrossEntropyObjective ce;
    // A random backbone's features are small (LibTorch's default initialisation): its probe needs a
    // high rate and many steps to converge, so both probes get 100 epochs at 0.5 (at 0.05 for 30 the
    // random one stays at chance and the comparison would say nothing).
    auto opt = quick(100, 64, 0.5);
    opt.headOnly = true;
    train(m, ce, labelled, Dataset{}, opt, torch::kCPU);
    return accuracy(m, test::fashionTest(), torch::kCPU);
  };
  const double simclr = probe(*pre), chance = probe(*random);
  // 1000 test images: a difference of two accuracies near 0.7 has a standard error of about
  // sqrt(2 * 0.7 * 0.3 / 1000) = 2 points; a clear margin is 3 of them, 6 points.
  INFO("linear probe on 200 labels: SimCLR backbone " << simclr << ", random backbone " << chance);
  CHECK(simclr > chance + 0.06);
}

TEST_CASE("LP-FT: the probe trains the head alone, the full phase starts from the probed head", "[pretraining]") {
  Classifier pre = pretrain("simclr", test::fashionTrain().head(1000), 1);
  const auto dir = test::tempDir("lpft");
  const Dataset target = limitPerClass(selectClasses(test::fashionTrain(), {5, 6, 7, 8, 9}), 30, 1);
  auto fresh = [&] {
    seedEverything(5);
    Classifier m(test::smallCnn(5));
    auto src = pre->backbone()->parameters(), dst = m->backbone()->parameters();
    torch::NoGradGuard g;
    for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
    return m;
  };
  CrossEntropyObjective ce;
  auto probeOpt = quick(5, 64, 0.05);
  probeOpt.headOnly = true;
  Classifier probed = fresh();
  train(*probed, ce, target, Dataset{}, probeOpt, torch::kCPU);
  CHECK(sameBackbone(*probed, *pre));

  LpFtOptions lp;
  lp.probeEpochs = 5;
  lp.probeLr = 0.05;
  auto fullOpt = quick(0, 64, 0.01);
  SECTION("with no full epochs LP-FT is exactly the probe") {
    Classifier m = fresh();
    const auto h = trainLpFt(*m, ce, target, Dataset{}, fullOpt, lp, torch::kCPU);
    CHECK(h.size() == 5);
    CHECK(sameParameters(*m, *probed));
  }
  SECTION("the full phase moves the backbone from where the probe left the head") {
    fullOpt.epochs = 2;
    Classifier m = fresh();
    const auto h = trainLpFt(*m, ce, target, Dataset{}, fullOpt, lp, torch::kCPU);
    REQUIRE(h.size() == 7);
    CHECK(h[5].epoch == 6);
    CHECK_FALSE(sameBackbone(*m, *pre));
    INFO("the probe's epochs ran at the probe's rate, the full phase's at its own");
    CHECK(h[0].lr > 0.01);  // cosine from 0.05: still above 0.04 after the first of 5 epochs
    CHECK(h[6].lr <= 0.01);
    // Full fine-tuning of a fresh head from the same backbone ends elsewhere: the start differed.
    Classifier direct = fresh();
    train(*direct, ce, target, Dataset{}, fullOpt, torch::kCPU);
    CHECK_FALSE(sameParameters(*m, *direct));
  }
}

TEST_CASE("BatchNorm statistics on fine-tuning: frozen keeps the pre-trained ones, update re-estimates them", "[pretraining]") {
  const Dataset target = limitPerClass(selectClasses(test::fashionTrain(), {5, 6, 7, 8, 9}), 30, 1);
  seedEverything(0);
  Classifier pre(test::smallCnn(5, /*batchNorm=*/true));
  CrossEntropyObjective ce;
  train(*pre, ce, selectClasses(test::fashionTrain().head(1000), {0, 1, 2, 3, 4}), Dataset{}, quick(1, 64), torch::kCPU);
  const auto before = batchNormBuffers(*pre);
  REQUIRE_FALSE(before.empty());
  auto opt = quick(1, 64, 0.01);
  opt.freezeBatchNorm = true;
  train(*pre, ce, target, Dataset{}, opt, torch::kCPU);
  CHECK(test::sameTensors(batchNormBuffers(*pre), before));
  opt.freezeBatchNorm = false;
  train(*pre, ce, target, Dataset{}, opt, torch::kCPU);
  CHECK_FALSE(test::sameTensors(batchNormBuffers(*pre), before));
}

TEST_CASE("adversarial contrastive pre-training: the adversarial view, dual BatchNorm", "[pretraining]") {
  const Dataset d = test::fashionTrain().head(256);
  seedEverything(0);
  Classifier m(test::smallCnn(10, /*batchNorm=*/true));
  ContrastiveOptions o;
  o.adversarial = true;
  o.adversary.eps = 0.1;
  o.adversary.steps = 5;
  ContrastiveObjective objective(*m, o);
  auto gen = makeGenerator(2);
  const auto x = d.images.slice(0, 0, 128);
  const auto v1 = contrastiveView(x, o.views, gen), v2 = contrastiveView(x, o.views, gen);
  torch::Tensor clean, attacked, target;
  {
    torch::NoGradGuard g;
    m->eval();
    target = objective.project(*m, v2);
    clean = ntXentLoss(objective.project(*m, v1), target, o.temperature);
  }
  const auto xadv = objective.adversarialView(*m, v1, target, gen);
  {
    torch::NoGradGuard g;
    attacked = ntXentLoss(objective.project(*m, xadv), target, o.temperature);
  }
  INFO("the view stays in the eps box and in [0,1], and raises the contrastive loss: " << clean.item<double>() << " -> " << attacked.item<double>());
  CHECK((xadv - v1).abs().max().item<float>() <= 0.1f);
  CHECK(xadv.min().item<float>() >= 0.0f);
  CHECK(xadv.max().item<float>() <= 1.0f);
  CHECK(attacked.item<double>() > clean.item<double>());

  INFO("dual BatchNorm: the pre-trained model keeps the adversarial view's statistics, not the mixed ones of one set");
  Classifier single = pretrain("adv-contrastive", d, 1, /*batchNorm=*/true);
  seedEverything(0);
  Classifier dual(test::smallCnn(10, true));
  auto p = contrastiveParams();
  p.contrastive.dualBatchNorm = true;
  auto dualObjective = makePretrainObjective("adv-contrastive", "standard", p, *dual);
  train(*dual, *dualObjective, d, Dataset{}, quick(1, 256), torch::kCPU);
  CHECK_FALSE(test::sameTensors(batchNormBuffers(*dual), batchNormBuffers(*single)));
  seedEverything(0);
  Classifier plain(test::smallCnn());
  CHECK_THROWS_WITH(makePretrainObjective("adv-contrastive", "standard", p, *plain), Catch::Contains("no BatchNorm layers"));
}

// Not a CTest entry: measures a contrastive recipe on the test slice (RECIPE_* environment variables)
// so that the assertions above are chosen from measurements, not guessed.
TEST_CASE("contrastive recipe measurement", "[.recipe]") {
  auto env = [](const char* k, double d) { const char* v = std::getenv(k); return v ? std::atof(v) : d; };
  const Dataset d = test::fashionTrain().head(static_cast<int64_t>(env("RECIPE_N", 2000)));
  const std::string mode = std::getenv("RECIPE_MODE") ? std::getenv("RECIPE_MODE") : "simclr";
  seedEverything(0);
  Classifier m(test::smallCnn(10, env("RECIPE_BN", 0) > 0));
  auto p = contrastiveParams();
  p.contrastive.temperature = env("RECIPE_T", 0.5);
  p.contrastive.views.minScale = env("RECIPE_SCALE", 0.3);
  p.contrastive.views.jitter = env("RECIPE_JITTER", 0.4);
  auto objective = makePretrainObjective(mode, "standard", p, *m);
  auto o = quick(static_cast<int64_t>(env("RECIPE_EPOCHS", 4)), static_cast<int64_t>(env("RECIPE_BATCH", 256)), env("RECIPE_LR", 0.05));
  o.optim.name = std::getenv("RECIPE_OPT") ? std::getenv("RECIPE_OPT") : "sgd";
  TrainHistory h(1);
  if (o.epochs > 0) h = train(*m, *objective, d, test::fashionTest().head(512), o, torch::kCPU);
  double secs = 0;
  for (const auto& e : h) secs += e.seconds;
  m->resetHead(10);
  CrossEntropyObjective ce;
  auto po = quick(static_cast<int64_t>(env("RECIPE_PEPOCHS", 30)), 64, env("RECIPE_PLR", 0.05));
  po.optim.name = std::getenv("RECIPE_POPT") ? std::getenv("RECIPE_POPT") : "sgd";
  po.headOnly = true;
  const auto ph = train(*m, ce, limitPerClass(test::fashionTrain(), 20, 3), Dataset{}, po, torch::kCPU);
  WARN("probe loss " << ph.front().loss << " -> " << ph.back().loss << " acc " << ph.back().accuracy);
  WARN(mode << " loss " << h.front().loss << " -> " << h.back().loss << " pretext acc " << h.back().accuracy << " val " << h.back().valAccuracy
            << " probe " << accuracy(*m, test::fashionTest(), torch::kCPU) << " seconds " << secs);
}
