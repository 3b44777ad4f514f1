// The architecture registry: every registered architecture builds, gives one logit per class, trains a
// step and round-trips through a checkpoint; a toy architecture registered here, in this file alone, is
// a valid `model.arch` for configs and runs like the built-in ones.
#include "fixtures.h"

#include "framework/config/config.h"
#include "framework/models/architectures.h"
#include "framework/models/checkpoint.h"
#include "framework/runtime/runtime.h"

#include <torch/nn/modules/activation.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/modules/linear.h>

#include <catch2/catch.hpp>

#include <algorithm>

using namespace robustlab;

namespace {

/// The toy: flatten, one hidden layer of 24 units, ReLU.
void appendToy(torch::nn::Sequential& seq, const ModelSpec& spec) {
  seq->push_back(torch::nn::Flatten());
  seq->push_back(torch::nn::Linear(spec.inChannels * spec.height * spec.width, 24));
  seq->push_back(torch::nn::ReLU());
}

const ArchitectureRegistration kToy("toy-mlp", appendToy);

/// A small spec of each architecture (the defaults are CIFAR-sized), sized for 1 x 28 x 28 and 5 classes.
ModelSpec smallSpec(const std::string& arch) {
  ModelSpec s = arch == "cnn" ? defaultSmallCnn() : ModelSpec{};
  s.arch = arch;
  s.resnetWidth = 4;
  s.resnetBlocks = {1, 1};
  s.wrnDepth = 10;
  s.wrnWidth = 1;
  s.hidden = {16};
  s.numClasses = 5;
  return s;
}

}  // namespace

TEST_CASE("every registered architecture builds, trains a step and round-trips through a checkpoint", "[models]") {
  const auto names = architectureNames();
  CHECK(std::find(names.begin(), names.end(), "toy-mlp") != names.end());
  const auto x = test::fashionTest().images.slice(0, 0, 16);
  const auto y = test::fashionTest().labels.slice(0, 0, 16).remainder(5);
  const std::string dir = test::tempDir("architectures");
  for (const auto& [name, build] : architectures()) {
    INFO(name);
    seedEverything(3);
    Classifier m(smallSpec(name));
    const auto logits = m->forward(x);
    CHECK(logits.sizes() == torch::IntArrayRef({16, 5}));
    auto loss = torch::nn::functional::cross_entropy(logits, y);
    loss.backward();
    for (const auto& p : m->parameters()) CHECK(p.grad().defined());
    saveCheckpoint(dir + "/" + name + ".h5", *m, "");
    Classifier back = loadClassifier(dir + "/" + name + ".h5");
    torch::NoGradGuard g;
    m->eval();
    back->eval();
    CHECK(torch::equal(m->forward(x), back->forward(x)));
  }
}

TEST_CASE("a toy architecture registered in one file is a model.arch configs accept", "[models]") {
  const Config c = parseConfig("[model]\narch = \"toy-mlp\"\n", "toy.toml");
  CHECK(c.model.arch == "toy-mlp");
  ModelSpec s = c.model;
  s.numClasses = 10;
  Classifier m(s);
  CHECK(m->featureDim() == 24);
  CHECK_THROWS_WITH(parseConfig("[model]\narch = \"vit\"\n", "vit.toml"), Catch::Contains("toy-mlp"));
}
