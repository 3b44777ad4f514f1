// Randomized models: a CNN with Gaussian noise inside its forward pass (registered here, in this file
// alone), trained on real Fashion-MNIST. AutoAttack's rand version (EOT) finds lower robust accuracy
// than its standard version, and the randomness check flags an evaluation without EOT.
#include "fixtures.h"

#include "attacks/evaluation/evaluation.h"
#include "attacks/registry.h"
#include "framework/models/architectures.h"
#include "framework/runtime/progress.h"
#include "framework/runtime/runtime.h"
#include "framework/training/trainer.h"

#include <torch/nn/module.h>

#include <catch2/catch.hpp>

#include <algorithm>

using namespace robustlab;

namespace {

/// Noise is drawn only while a test of this file switches it on, so the registry's own tests (which
/// build every registered architecture and compare outputs) see a plain CNN.
bool noiseOn = false;
constexpr double kSigma = 0.8;

/// x + sigma * N(0, 1) in training and in eval mode alike (a random-noise defense).
struct GaussianNoiseImpl : torch::nn::Module {
  torch::Tensor forward(const torch::Tensor& x) { return noiseOn ? x + kSigma * torch::randn_like(x) : x; }
};
TORCH_MODULE(GaussianNoise);

void appendNoisy(torch::nn::Sequential& seq, const ModelSpec& spec) {
  seq->push_back(GaussianNoise());
  architectures().at("cnn")(seq, spec);
}

const ArchitectureRegistration kNoisy("noisy-cnn", appendNoisy);

struct NoiseSwitch {
  NoiseSwitch() { noiseOn = true; }
  ~NoiseSwitch() { noiseOn = false; }
};

EvalResult evaluateWith(ClassifierImpl& model, const Dataset& data, const std::string& attack) {
  EvalOptions e;
  AttackOptions o;
  o.suiteSteps = 25;
  o.queries = 200;
  o.seed = 4;
  e.attacks = {{attack, o}};
  e.epsGrid = {0.1};
  e.progress = false;
  e.sanityLimit = 200;
  e.keepExamples = -1;
  return evaluate(model, data, e, torch::kCPU);
}

/// The randomized model's accuracy on `x` in expectation: the mean over 50 passes.
double expectedAccuracy(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y) {
  torch::NoGradGuard noGrad;
  model.eval();
  double sum = 0;
  for (int k = 0; k < 50; ++k) sum += model.forward(x).argmax(1).eq(y).to(torch::kFloat64).mean().item<double>();
  return sum / 50;
}

bool checkPassed(const EvalResult& r, const std::string& name) {
  for (const auto& c : r.checks)
    if (c.name == name) return c.passed;
  FAIL("no sanity check named " << name);
  return false;
}

}  // namespace

TEST_CASE("on a model with noise inside its forward pass, autoattack-rand finds lower robust accuracy than autoattack, and the randomness check fires",
          "[attacks]") {
  Progress::setQuiet(true);
  const NoiseSwitch on;
  seedEverything(21);
  ModelSpec s = test::smallCnn();
  s.arch = "noisy-cnn";
  Classifier model(s);
  CrossEntropyObjective ce;
  TrainOptions o;
  o.epochs = 3;
  o.batchSize = 64;
  o.seed = 21;
  train(*model, ce, test::fashionTrain().head(3000), Dataset{}, o, torch::kCPU);
  const Dataset data = test::fashionTest().head(500);
  const EvalResult standard = evaluateWith(*model, data, "autoattack"), rand = evaluateWith(*model, data, "autoattack-rand");
  // Each verdict above is one random pass; the model's accuracy on each attack's examples in expectation
  // (50 passes) is what tells the attacks apart.
  const double accStandard = expectedAccuracy(*model, standard.runs.back().examples, data.labels);
  const double accRand = expectedAccuracy(*model, rand.runs.back().examples, data.labels);
  INFO("clean " << standard.cleanAccuracy << "; one pass: autoattack " << standard.runs.back().robustAccuracy << ", autoattack-rand "
                << rand.runs.back().robustAccuracy << "; in expectation: autoattack " << accStandard << ", autoattack-rand " << accRand);
  // Measured (AMD EPYC Zen 5, 2026-12-05): clean 71.2%; one pass 47.2% against 42.0%, in expectation 51.9%
  // against 48.2%. Without EOT, a member that fools an example on one lucky pass ends its attack there.
  CHECK(standard.cleanAccuracy > 0.6);
  CHECK(accRand < accStandard);
  CHECK_FALSE(checkPassed(standard, "deterministic_model"));  // flagged: evaluated without EOT
  CHECK(checkPassed(rand, "deterministic_model"));            // evaluated with EOT
  // The same model without its noise is deterministic, and the check says so.
  noiseOn = false;
  CHECK(checkPassed(evaluateWith(*model, data.head(50), "fgsm"), "deterministic_model"));
  noiseOn = true;
}

TEST_CASE("eot_iter averages k passes' gradients: on a deterministic model PGD's examples are one pass's, at k times the passes", "[attacks]") {
  Classifier model = test::standardModel();
  const auto x = test::fashionTest().images.slice(0, 0, 32), y = test::fashionTest().labels.slice(0, 0, 32);
  AttackOptions o;
  o.eps = 0.1;
  o.steps = 5;
  o.seed = 2;
  auto one = makeAttack("pgd", o);
  o.eotIter = 4;  // (g + g + g + g) / 4 is g exactly in float
  auto four = makeAttack("pgd", o);
  CHECK(torch::equal(one->perturb(*model, x, y), four->perturb(*model, x, y)));
  CHECK(four->stats().gradientEvaluations == 4 * one->stats().gradientEvaluations);
  o.eotIter = 0;
  CHECK_THROWS_WITH(makeAttack("pgd", o)->perturb(*model, x, y), Catch::Contains("eot_iter"));
}
