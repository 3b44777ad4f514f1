// Models from PyTorch: TorchScript classifiers (framework/models/torchscript.h) predict as in PyTorch,
// plain scripts run as robustlab's own layers, attacks keep their contract over scripts, and bad
// TorchScript inputs are one line. Fine-tuning, checkpoints, Python and the commands:
// test_torchscript_io.cpp.
#include <catch2/catch.hpp>

#include "torchscript_models.h"

#include "attacks/registry.h"
#include "framework/models/input_grad.h"
#include "framework/runtime/runtime.h"

#include <filesystem>
#include <fstream>

using namespace robustlab;
using namespace robustlab::test;

TEST_CASE("TorchScript classifiers predict what they predict in PyTorch", "[torchscript]") {
  const auto x = test::fashionTest().images.slice(0, 0, 200);
  SECTION("scripted, with BatchNorm statistics and dropout (eval mode)") {
    Classifier m(scriptSpec("bn_cnn"));
    CHECK_FALSE(m->head());
    checkSameLogits(evalLogits(*m, x), pythonLogits(scriptSpec("bn_cnn").torchscript, x, "bn"), 16 * 7 * 7, 3);
  }
  SECTION("traced from a robustlab checkpoint") {
    Classifier m(scriptSpec("traced"));
    Classifier native = test::standardModel();
    checkSameLogits(evalLogits(*m, x), evalLogits(*native, x), 32 * 7 * 7, 3);
  }
  SECTION("normalisation inside the model") {
    checkSameLogits(evalLogits(*Classifier(scriptSpec("normalised")), x), pythonLogits(scriptSpec("normalised").torchscript, x, "norm"),
                    8 * 14 * 14, 2);
  }
  SECTION("inputs in [0, 255] (model.input_range)") {
    ModelSpec s = scriptSpec("range255");
    s.rangeHi = 255;
    checkSameLogits(evalLogits(*Classifier(s), x), pythonLogits(s.torchscript, x, "r255"), 784, 2);
  }
  SECTION("three-channel 32 x 32 input") {
    seedEverything(5);
    const auto rgb = torch::rand({64, 3, 32, 32});
    Classifier m(scriptSpec("rgb", 10, {3, 32, 32}));
    checkSameLogits(evalLogits(*m, rgb), pythonLogits(m->spec().torchscript, rgb, "rgb"), 16 * 8 * 8, 3);
  }
}

TEST_CASE("a plain TorchScript chain runs as robustlab's own layers: the native model's logits and gradient, bit for bit", "[torchscript]") {
  const auto x = test::fashionTest().images.slice(0, 0, 100);
  const auto y = test::fashionTest().labels.slice(0, 0, 100);
  Classifier traced(scriptSpec("traced"));
  Classifier native = test::standardModel();
  Classifier withBatchNorm(scriptSpec("bn_cnn"));
  for (auto* m : {traced.get(), native.get(), withBatchNorm.get()}) {
    m->eval();
    for (auto& p : m->parameters()) p.requires_grad_(false);
  }
  CHECK(supportsManualInputGrad(*traced));
  INFO("BatchNorm and pooling are not in the plain set: that script runs as it is, gradients by autograd");
  CHECK_FALSE(supportsManualInputGrad(*withBatchNorm));
  const auto a = crossEntropyInputGrad(*traced, x, y, false), b = crossEntropyInputGrad(*native, x, y, false);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(torch::equal(a->grad, b->grad));
  CHECK(torch::equal(a->loss, b->loss));
  CHECK(torch::equal(evalLogits(*traced, x), evalLogits(*native, x)));
  INFO("in training mode the script itself runs (no dropout or BatchNorm here: the same function)");
  torch::NoGradGuard g;
  traced->train();
  checkSameLogits(traced->forward(x), evalLogits(*native, x), 32 * 7 * 7, 3);
}

TEST_CASE("a traced copy of a robustlab model has the native model's robust accuracy", "[torchscript]") {
  const Dataset test = test::fashionTest().head(500);
  Classifier native = test::standardModel();
  Classifier traced(scriptSpec("traced"));
  for (const std::string name : {"pgd", "apgd-ce"}) {
    AttackOptions o;
    o.eps = 0.1;
    o.steps = 20;
    o.seed = 1;
    auto robust = [&](ClassifierImpl& m) {
      const auto xadv = makeAttack(name, o)->perturb(m, test.images, test.labels);
      return evalLogits(m, xadv).argmax(1).eq(test.labels).to(torch::kFloat64).mean().item<double>();
    };
    const double a = robust(*native), b = robust(*traced);
    INFO(name << ": native " << a << ", traced " << b << " (1 point = 5 of 500 images)");
    CHECK(std::abs(a - b) < 0.01);
  }
}

TEST_CASE("the attack contract holds over TorchScript models: one with BatchNorm and dropout, one lowered", "[torchscript]") {
  const auto x = test::fashionTest().images.slice(0, 0, 32);
  const auto y = test::fashionTest().labels.slice(0, 0, 32);
  for (const std::string script : {"bn_cnn", "traced"})
  for (const auto& name : attackNames()) {
    DYNAMIC_SECTION(script << " " << name) {
      Classifier m(scriptSpec(script));
      AttackOptions o;
      o.eps = 0.1;
      o.steps = 5;
      o.queries = 200;
      o.seed = 3;
      std::vector<torch::Tensor> buffers, params;
      for (const auto& b : m->buffers()) buffers.push_back(b.clone());
      for (const auto& p : m->parameters()) params.push_back(p.clone());
      const auto xCopy = x.clone();
      m->train();
      const auto xadv = makeAttack(name, o)->perturb(*m, x, y);
      CHECK((xadv - x).abs().max().item<double>() <= o.eps * (1 + 1e-6));
      CHECK(xadv.min().item<float>() >= 0.f);
      CHECK(xadv.max().item<float>() <= 1.f);
      CHECK(torch::equal(x, xCopy));
      INFO("BatchNorm statistics, weights and their gradients are as before");
      auto bs = m->buffers();
      for (size_t i = 0; i < bs.size(); ++i) CHECK(torch::equal(bs[i], buffers[i]));
      auto ps = m->parameters();
      for (size_t i = 0; i < ps.size(); ++i) {
        CHECK(torch::equal(ps[i], params[i]));
        CHECK_FALSE(ps[i].grad().defined());
        CHECK(ps[i].requires_grad());
      }
      CHECK(m->is_training());
      if (script == "bn_cnn") {
        INFO("training mode restored inside the script: dropout is active again");
        torch::NoGradGuard g;
        CHECK_FALSE(torch::equal(m->forward(x), m->forward(x)));
      }
    }
  }
}

TEST_CASE("bad TorchScript inputs are one clear line naming the file", "[torchscript]") {
  auto oneLine = [](const ModelSpec& s, const std::string& expected) {
    try {
      Classifier m(s);
      FAIL("no error for " << s.torchscript);
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find('\n') == std::string::npos);
      CHECK(msg.find(expected) != std::string::npos);
      CHECK(msg.find(std::filesystem::path(s.torchscript).filename().string()) != std::string::npos);
    }
  };
  const auto dir = test::tempDir("torchscript-bad");
  {
    std::ofstream(dir + "/garbage.pt") << "not a zip archive";
  }
  ModelSpec garbage = scriptSpec("bn_cnn");
  garbage.torchscript = dir + "/garbage.pt";
  oneLine(garbage, "not a TorchScript file");
  ModelSpec missing = garbage;
  missing.torchscript = dir + "/missing.pt";
  oneLine(missing, "cannot be read");
  oneLine(scriptSpec("tuple"), "returned Tuple, expected one Tensor");
  oneLine(scriptSpec("nan"), "NaN or Inf");
  oneLine(scriptSpec("rgb"), "its first layer 'conv1' (Conv2d) takes 3 channels but the data has 1 x 28 x 28 images");
  oneLine(scriptSpec("bn_cnn", 5), "returns 10 logits but the data has 5 classes");
  ModelSpec noLayer = scriptSpec("bn_cnn");
  noLayer.cut = "classifier";
  oneLine(noLayer, "no submodule 'classifier'");
  ModelSpec notLinear = scriptSpec("bn_cnn");
  notLinear.cut = "bn1";
  oneLine(notLinear, "is not a linear layer");
  ModelSpec pinned = scriptSpec("bn_cnn");
  pinned.torchscriptSha256 = std::string(64, '0');
  oneLine(pinned, "is pinned");
  INFO("a TorchScript classifier used as it is has no head to replace");
  Classifier asIs(scriptSpec("bn_cnn"));
  CHECK_THROWS_WITH(asIs->resetHead(5), Catch::Contains("model.cut"));
}
