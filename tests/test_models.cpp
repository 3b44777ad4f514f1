#include "fixtures.h"
#include "tolerance.h"

#include "data/h5io.h"
#include "framework/models/checkpoint.h"
#include "attacks/attack.h"
#include "framework/models/conv.h"
#include "framework/models/kernels/conv_kernels.h"
#include "framework/models/input_grad.h"
#include "framework/runtime/onednn_check.h"
#include "framework/runtime/runtime.h"

#include <torch/csrc/autograd/function.h>
#include <torch/autograd.h>
#include <torch/nn/functional/conv.h>
#include <torch/nn/functional/loss.h>
#include <ATen/Context.h>
#include <ATen/ops/convolution_backward.h>

#include <catch2/catch.hpp>

#include <filesystem>

#include <fstream>

using namespace robustlab;

TEST_CASE("model families build from specs and give one logit per class", "[models]") {
  const auto x = test::fashionTest().images.slice(0, 0, 4);
  ModelSpec cnn = test::smallCnn(10, true);
  Classifier a(cnn);
  CHECK(a->forward(x).sizes() == torch::IntArrayRef({4, 10}));
  CHECK(a->featureDim() == 100);
  ModelSpec mlp;
  mlp.arch = "mlp";
  mlp.hidden = {64, 32};
  mlp.numClasses = 3;
  CHECK(Classifier(mlp)->forward(x).sizes() == torch::IntArrayRef({4, 3}));
  ModelSpec res;
  res.arch = "resnet";
  res.resnetWidth = 8;
  res.resnetBlocks = {1, 1};
  CHECK(Classifier(res)->forward(x).sizes() == torch::IntArrayRef({4, 10}));
  ModelSpec bad = cnn;
  bad.layers[0].type = "convolution";
  REQUIRE_THROWS_WITH(Classifier(bad), Catch::Contains("unknown layer type 'convolution'"));
}

TEST_CASE("checkpoints round-trip weights, spec and config", "[models]") {
  const auto dir = test::tempDir("ckpt");
  seedEverything(1);
  Classifier a(test::smallCnn(10, true));
  saveCheckpoint(dir + "/a.h5", *a, "seed = 1\n");
  Classifier b = loadClassifier(dir + "/a.h5");
  a->eval();
  b->eval();
  const auto x = test::fashionTest().images.slice(0, 0, 16);
  CHECK(torch::equal(a->forward(x), b->forward(x)));
  CHECK(readCheckpointConfig(dir + "/a.h5") == "seed = 1\n");
  CHECK(readCheckpointSpec(dir + "/a.h5").toToml() == a->spec().toToml());
}

TEST_CASE("loading a checkpoint into another architecture is a clear error, not a crash", "[models]") {
  const auto dir = test::tempDir("ckpt-arch");
  Classifier a(test::smallCnn());
  saveCheckpoint(dir + "/a.h5", *a, "");
  ModelSpec wider = test::smallCnn();
  wider.layers[0].channels = 32;
  Classifier b(wider);
  REQUIRE_THROWS_WITH(loadWeights(dir + "/a.h5", *b, false), Catch::Contains(dir + "/a.h5") && Catch::Contains("architecture differs"));
  // Same backbone, another head size: full load names the head tensor; backbone-only load works.
  Classifier c(test::smallCnn(5));
  REQUIRE_THROWS_WITH(loadWeights(dir + "/a.h5", *c, false), Catch::Contains("head.weight") && Catch::Contains("shape"));
  REQUIRE_NOTHROW(loadWeights(dir + "/a.h5", *c, true));
  // Not a checkpoint at all.
  std::ofstream(dir + "/junk.h5") << "junk";
  REQUIRE_THROWS_WITH(loadClassifier(dir + "/junk.h5"), Catch::Contains("not an HDF5 file"));
  H5File(dir + "/other.h5", H5File::Mode::kTruncate).setAttr("/", "format", std::string("something-else"));
  REQUIRE_THROWS_WITH(loadClassifier(dir + "/other.h5"), Catch::Contains("not a robustlab checkpoint"));
}

TEST_CASE("a run killed while writing leaves the previous checkpoint intact", "[models]") {
  const auto dir = test::tempDir("ckpt-atomic");
  Classifier a(test::smallCnn());
  saveCheckpoint(dir + "/a.h5", *a, "first");
  // A writer that dies halfway (an exception mid-write stands in for the kill).
  REQUIRE_THROWS(saveCheckpoint(dir + "/a.h5", *a, "second", [](H5File&) { throw std::runtime_error("killed"); }));
  CHECK(readCheckpointConfig(dir + "/a.h5") == "first");
  // ... and no temporary beside it.
  for (const auto& e : std::filesystem::directory_iterator(dir)) CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
}

TEST_CASE("the convolution layer's gradients match LibTorch's convolution, fp32 and bf16, with and without its own kernels", "[models]") {
  namespace F = torch::nn::functional;
  torch::manual_seed(3);
  const auto gray = test::fashionTest().images.slice(0, 0, 64);
  struct Case {
    int64_t in, kernel, stride, padding;
    bool bias = true;
  };
  const bool kernels = singleChannelKernelsAvailable();
  if (!kernels) WARN("this CPU has no AVX-512: the single-channel kernels are not tested here");
  for (const bool useKernels : {true, false}) {
  // The last case is a ResNet stem: no bias (an absent bias once crashed the custom autograd functions).
  for (const Case c : {Case{1, 4, 2, 1}, Case{1, 3, 1, 1}, Case{3, 3, 1, 0}, Case{1, 3, 1, 1, false}}) {
    for (const Precision p : {Precision::kFp32, Precision::kBf16}) {
      DYNAMIC_SECTION((useKernels ? "kernels on" : "kernels off") << " in " << c.in << " kernel " << c.kernel << " stride " << c.stride
                                                                   << (c.bias ? "" : " no bias") << " " << precisionName(p)) {
        setSingleChannelKernels(useKernels);
        struct Restore {
          ~Restore() { setSingleChannelKernels(true); }
        } restore;
        const auto base = c.in == 1 ? gray : torch::cat({gray, gray.flip(2), 1 - gray}, 1);
        Conv conv(torch::nn::Conv2dOptions(c.in, 16, c.kernel).stride(c.stride).padding(c.padding).bias(c.bias));
        auto run = [&](bool ours) {
          for (auto& t : conv->parameters()) t.mutable_grad() = torch::Tensor();
          auto x = base.clone().requires_grad_(true);
          PrecisionGuard guard(p);
          auto y = ours ? conv->forward(x)
                        : F::conv2d(x, conv->weight, F::Conv2dFuncOptions().bias(conv->bias).stride(c.stride).padding(c.padding));
          if (ours && useKernels && kernels && c.in == 1)
            CHECK(y.grad_fn()->name().find("SingleChannelConvFn") != std::string::npos);
          else if (ours && useIm2colInputGrad(c.in, p == Precision::kBf16 ? torch::kBFloat16 : torch::kFloat32))
            CHECK(y.grad_fn()->name().find("Im2colInputGradConv") != std::string::npos);
          const auto weights = torch::linspace(-1, 1, y.numel()).view(y.sizes());
          (y.to(torch::kFloat32) * weights).sum().backward();
          std::vector<torch::Tensor> grads{x.grad(), conv->weight.grad().clone()};
          if (c.bias) grads.push_back(conv->bias.grad().clone());
          return grads;
        };
        const auto ours = run(true), ref = run(false);
        // Bounds from the arithmetic (tests/tolerance.h), per element against S, the same gradient computed
        // in fp64 over magnitudes. Terms per element: input gradient at most out-channels x taps, weight and
        // bias gradients images x output positions. fp32: the same sums in two orders. bf16: ours sums the
        // bf16 products in fp32 (the input gradient, not rounded back: autocast's cast returns fp32) or is
        // LibTorch's own convolution_backward on the same operands (weight, bias); the reference is
        // LibTorch's bf16, converted or emulated as this CPU computes it.
        const auto xc = base.to(p == Precision::kBf16 ? torch::kBFloat16 : torch::kFloat32).to(torch::kFloat64);
        const auto wc = conv->weight.detach().to(p == Precision::kBf16 ? torch::kBFloat16 : torch::kFloat32).to(torch::kFloat64);
        const auto y0 = F::conv2d(xc, wc, F::Conv2dFuncOptions().stride(c.stride).padding(c.padding));
        const auto gy = torch::linspace(-1, 1, y0.numel(), torch::kFloat64).view(y0.sizes()).to(torch::kFloat32).to(
            p == Precision::kBf16 ? torch::kBFloat16 : torch::kFloat32).to(torch::kFloat64).abs();
        const auto mags = at::convolution_backward(gy, xc.abs(), wc.abs(), std::vector<int64_t>{wc.size(0)}, {c.stride, c.stride},
                                                   {c.padding, c.padding}, {1, 1}, false, {0, 0}, 1, {true, true, c.bias});
        const std::vector<torch::Tensor> scales{std::get<0>(mags), std::get<1>(mags), c.bias ? std::get<2>(mags) : torch::Tensor()};
        const int64_t terms[] = {16 * c.kernel * c.kernel, y0.size(0) * y0.size(2) * y0.size(3), y0.size(0) * y0.size(2) * y0.size(3)};
        for (size_t i = 0; i < ours.size(); ++i) {
          INFO("gradient " << i << " (input, weight, bias), " << terms[i] << " terms");
          REQUIRE(ours[i].scalar_type() == ref[i].scalar_type());
          CHECK(ref[i].abs().max().item<double>() > 0);
          const int64_t n = terms[i], overlaps = ((c.kernel + c.stride - 1) / c.stride) * ((c.kernel + c.stride - 1) / c.stride);
          const double bound = p == Precision::kFp32 ? 2 * test::gamma(n, test::kUnitFp32)
                               : i == 0              ? test::gamma(n, test::kUnitFp32) + test::libtorchBf16Bound(n, 1 + overlaps)
                                                     : 2 * test::libtorchBf16Bound(n, 1);
          INFO("LibTorch's bf16 here: " << (test::libtorchBf16IsConverted() ? "converted (oneDNN)" : "emulated") << "; "
                                       << test::usedFraction(ours[i], ref[i], scales[i], bound) << " of the bound used");
          CHECK(test::excess(ours[i], ref[i], scales[i], bound) <= 0);
        }
      }
    }
  }
  }
}

TEST_CASE("the graph-free input gradient equals autograd's bit for bit", "[models]") {
  namespace F = torch::nn::functional;
  const auto x = test::fashionTest().images.slice(0, 0, 96);
  const auto y = test::fashionTest().labels.slice(0, 0, 96);
  const auto targets = (y + 3).remainder(10);
  ModelSpec normalised = test::smallCnn();
  normalised.mean = 0.286;
  normalised.stdev = 0.353;
  normalised.layers.insert(normalised.layers.end() - 1, LayerSpec{"dropout"});
  ModelSpec mlp;
  mlp.arch = "mlp";
  mlp.hidden = {64, 32};
  for (auto [name, model] : std::vector<std::pair<std::string, Classifier>>{
           {"trained cnn", test::standardModel()}, {"normalised cnn with dropout", Classifier(normalised)}, {"mlp", Classifier(mlp)}}) {
    for (const Precision p : {Precision::kFp32, Precision::kBf16}) {
      for (const bool targeted : {false, true}) {
        DYNAMIC_SECTION(name << " " << precisionName(p) << (targeted ? " targeted" : "")) {
          EvalModeGuard eval(*model);
          FrozenParamsGuard frozen(*model);
          PrecisionGuard guard(p);
          REQUIRE(supportsManualInputGrad(*model));
          const auto& labels = targeted ? targets : y;
          const auto manual = crossEntropyInputGrad(*model, x, labels, targeted);
          REQUIRE(manual.has_value());
          auto xin = x.clone().requires_grad_(true);
          const auto logits = model->forward(xin);
          auto loss = F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().reduction(torch::kNone));
          if (targeted) loss = -loss;
          const auto grad = torch::autograd::grad({loss.sum()}, {xin})[0];
          CHECK(torch::equal(manual->logits, logits.detach()));
          CHECK(torch::equal(manual->loss, loss.detach()));
          CHECK(torch::equal(manual->grad, grad));
          CHECK(grad.abs().max().item<double>() > 0);
        }
      }
    }
  }
  SECTION("models it cannot follow fall back to autograd") {
    Classifier bn(test::smallCnn(10, true));
    EvalModeGuard eval(*bn);
    FrozenParamsGuard frozen(*bn);
    CHECK_FALSE(supportsManualInputGrad(*bn));
    CHECK_FALSE(crossEntropyInputGrad(*bn, x, y, false).has_value());
    Classifier training(test::smallCnn());
    CHECK_FALSE(supportsManualInputGrad(*training));  // train mode, parameters need gradients
  }
}

TEST_CASE("WideResNets and PreAct ResNet-18 have their published parameter counts", "[models]") {
  auto count = [](const ModelSpec& spec) {
    Classifier m(spec);
    int64_t n = 0;
    for (const auto& p : m->parameters()) n += p.numel();
    return n;
  };
  ModelSpec s;
  s.inChannels = 3;
  s.height = s.width = 32;
  s.numClasses = 10;
  s.arch = "wrn";
  s.wrnDepth = 28;
  s.wrnWidth = 10;
  CHECK(count(s) == 36479194);  // WRN-28-10 on CIFAR-10: 36.5M (Zagoruyko & Komodakis 2016)
  s.wrnDepth = 34;
  CHECK(count(s) == 46160474);  // WRN-34-10 (Madry et al., TRADES): 46.2M
  s.wrnDepth = 16;
  s.wrnWidth = 4;
  CHECK(count(s) == 2748890);   // WRN-16-4: 2.7M
  s.arch = "resnet";
  s.resnetWidth = 64;
  s.resnetBlocks = {2, 2, 2, 2};
  CHECK(count(s) == 11172170);  // PreAct ResNet-18 with the final BN-ReLU (Rice et al. 2020); 11,171,146 without it
  s.arch = "wrn";
  s.wrnDepth = 27;
  CHECK_THROWS_WITH(Classifier(s), Catch::Contains("model.wrn_depth: must be 6n + 4"));
}

TEST_CASE("LibTorch's convolutions are right on this CPU, or robustlab has switched oneDNN off", "[models]") {
  // skipCode (tests/fixtures.cpp) ran the guard before any test, as robustlab's main does.
  const bool switchedOff = guardOnednnConvolutions();
  if (switchedOff) WARN(onednnCheckFailure());
  INFO("oneDNN " << (at::globalContext().userEnabledMkldnn() ? "on" : "off"));
  CHECK(checkConvolutions().empty());
  CHECK(switchedOff == !onednnCheckFailure().empty());
}
