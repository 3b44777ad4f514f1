#include "fixtures.h"

#include "data/h5io.h"
#include "framework/checkpoint.h"
#include "attacks/attack.h"
#include "framework/conv.h"
#include "framework/conv_kernels.h"
#include "framework/input_grad.h"
#include "framework/runtime.h"

#include <torch/csrc/autograd/function.h>
#include <torch/autograd.h>
#include <torch/nn/functional/conv.h>
#include <torch/nn/functional/loss.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/threshold_backward.h>

#include <catch2/catch.hpp>

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
  CHECK_FALSE(std::filesystem::exists(dir + "/a.h5.tmp"));
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
        // fp32: the same sums in another order. bf16: both round the same bf16 products; ours accumulates
        // the input gradient in fp32 and does not round it back to bf16.
        const double tol = p == Precision::kFp32 ? 1e-5 : 1e-2;
        for (size_t i = 0; i < ours.size(); ++i) {
          INFO("gradient " << i);
          REQUIRE(ours[i].scalar_type() == ref[i].scalar_type());
          const double scale = ref[i].abs().max().item<double>();
          CHECK(scale > 0);
          CHECK((ours[i] - ref[i]).abs().max().item<double>() <= tol * scale);
        }
      }
    }
  }
  }
}

TEST_CASE("the single-channel kernels match LibTorch's convolution, fused ReLU included", "[models]") {
  if (!singleChannelKernelsAvailable()) {
    WARN("this CPU has no AVX-512: the single-channel kernels do not run here and are not tested");
    return;
  }
  torch::manual_seed(5);
  const auto images = test::fashionTest().images.slice(0, 0, 24);
  struct Case {
    int64_t c, kh, kw, sh, sw, ph, pw, h, w;
  };
  // Images side by side, for rows wider than one image.
  const auto wide = torch::cat({images, images.flip(3)}, 3);
  // The default model's first layer; an output row wider than 16 and channels in blocks of 8; a
  // channel count that is not; a 3-column kernel (the general scatter); stride 3 with a non-square crop;
  // then two more for the bf16 dot-product forward pass (column stride 2, even kernel width): channels
  // not in blocks of 8 with an output row wider than 16, and a 2x2 kernel.
  for (const Case& k : {Case{16, 4, 4, 2, 2, 1, 1, 28, 28}, Case{32, 3, 3, 1, 1, 1, 1, 28, 28}, Case{5, 5, 3, 3, 2, 2, 0, 28, 28},
                       Case{20, 2, 4, 1, 3, 0, 3, 27, 25}, Case{12, 4, 2, 2, 1, 3, 1, 26, 28}, Case{10, 4, 4, 2, 2, 1, 1, 28, 40},
                       Case{7, 2, 2, 1, 2, 0, 1, 21, 33}}) {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      for (const bool relu : {false, true}) {
        DYNAMIC_SECTION(k.c << " channels, kernel " << k.kh << "x" << k.kw << ", stride " << k.sh << "," << k.sw << ", padding " << k.ph << ","
                            << k.pw << (dtype == torch::kFloat32 ? " fp32" : " bf16") << (relu ? " relu" : "")) {
          const auto x = wide.slice(2, 0, k.h).slice(3, 0, k.w).contiguous();
          const auto w = torch::randn({k.c, 1, k.kh, k.kw}) * 0.3;
          const auto b = torch::randn({k.c}) * 0.1;
          const std::vector<int64_t> stride{k.sh, k.sw}, padding{k.ph, k.pw};
          REQUIRE(singleChannelConvApplies(x, w, stride, padding));
          auto ref = at::convolution(x.to(dtype), w.to(dtype), b.to(dtype), stride, padding, {1, 1}, false, {0, 0}, 1);
          if (relu) ref = ref.relu();
          const auto ours = singleChannelConv(x, w, b, stride, padding, dtype, relu);
          REQUIRE(ours.sizes() == ref.sizes());
          REQUIRE(ours.scalar_type() == dtype);
          // fp32: the same sums in another order. bf16: the same bf16 inputs, products summed in fp32, the
          // sum rounded to bf16 (one rounding step apart at most).
          const double scale = ref.abs().max().item<double>();
          CHECK((ours.to(torch::kFloat32) - ref.to(torch::kFloat32)).abs().max().item<double>() <= (dtype == torch::kFloat32 ? 1e-5 : 8e-3) * scale);
          if (relu) CHECK(ours.min().item<double>() >= 0);
          // Input gradient: against LibTorch's convolution backward in fp32 on the same rounded weights,
          // after ReLU's backward when the ReLU is fused (its output as the mask).
          const auto go = torch::randn(ref.sizes()).to(dtype);
          const auto gin = relu ? at::threshold_backward(go, ref, 0) : go;
          const auto gref = std::get<0>(at::convolution_backward(gin.to(torch::kFloat32), x, w.to(dtype).to(torch::kFloat32), std::vector<int64_t>{k.c},
                                                                 stride, padding, {1, 1}, false, {0, 0}, 1, {true, false, false}));
          const auto gours = singleChannelConvInputGrad(go, w, {k.h, k.w}, stride, padding, dtype, relu ? ref : torch::Tensor());
          REQUIRE(gours.sizes() == x.sizes());
          REQUIRE(gours.scalar_type() == torch::kFloat32);
          const double gscale = gref.abs().max().item<double>();
          CHECK(gscale > 0);
          CHECK((gours - gref).abs().max().item<double>() <= 1e-5 * gscale);
        }
      }
    }
  }
  SECTION("what the kernels do not take is left to LibTorch") {
    const auto x = images.slice(0, 0, 2);
    CHECK_FALSE(singleChannelConvApplies(torch::cat({x, x}, 1), torch::randn({8, 2, 3, 3}), {1, 1}, {1, 1}));  // two input channels
    CHECK_FALSE(singleChannelConvApplies(x, torch::randn({8, 1, 5, 5}), {1, 1}, {2, 2}));                     // 25 taps
    CHECK_FALSE(singleChannelConvApplies(x.to(torch::kFloat64), torch::randn({8, 1, 3, 3}, torch::kFloat64), {1, 1}, {1, 1}));
    CHECK_FALSE(singleChannelConvApplies(x, torch::randn({8, 1, 3, 3}), {1, 1}, {3, 3}));  // padding >= kernel
    setSingleChannelKernels(false);
    CHECK_FALSE(singleChannelConvApplies(x, torch::randn({8, 1, 3, 3}), {1, 1}, {1, 1}));
    setSingleChannelKernels(true);
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
