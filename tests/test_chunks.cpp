// Splitting an attack step's batch across cores (framework/runtime/chunks.h): every example gets what
// its own chunk computed alone gives it, under the caller's precision, and the attack's outcome does not
// depend on the core count.
#include "fixtures.h"
#include "tolerance.h"
#include "attacks/registry.h"
#include "framework/models/input_grad.h"
#include "framework/runtime/chunks.h"
#include "framework/runtime/runtime.h"
#include "framework/training/objectives.h"

#include <ATen/ops/cat.h>
#include <torch/autograd.h>
#include <torch/nn/functional/loss.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

using namespace robustlab;

namespace {

/// configureThreads(1, workers) for a scope; the suite's 1 thread, 1 worker afterwards.
struct WorkersGuard {
  explicit WorkersGuard(int workers) { configureThreads(1, workers); }
  ~WorkersGuard() { configureThreads(1, 1); }
};

InputGrad piecewise(ClassifierImpl& m, const torch::Tensor& x, const torch::Tensor& y, bool negate, int chunks) {
  std::vector<torch::Tensor> loss, logits, grad;
  const int64_t n = x.size(0);
  for (int i = 0; i < chunks; ++i) {
    const int64_t b = n * i / chunks, e = n * (i + 1) / chunks;
    auto part = crossEntropyInputGrad(m, x.slice(0, b, e), y.slice(0, b, e), negate);
    REQUIRE(part);
    loss.push_back(part->loss);
    logits.push_back(part->logits);
    grad.push_back(part->grad);
  }
  return {at::cat(loss), at::cat(logits), at::cat(grad)};
}

}  // namespace

TEST_CASE("an attack step split across cores gives every example what its chunk alone gives it", "[models]") {
  // 97 rows: two chunks of unequal size (48 and 49), both above kMinChunk.
  const auto x = test::fashionTest().images.slice(0, 0, 97);
  const auto y = test::fashionTest().labels.slice(0, 0, 97);
  Classifier model = test::standardModel();
  EvalModeGuard eval(*model);
  FrozenParamsGuard frozen(*model);
  configureThreads(1, 1);
  const auto fp32Logits = crossEntropyInputGrad(*model, x, y, false)->logits;
  for (const Precision p : {Precision::kFp32, Precision::kBf16}) {
    for (const bool targeted : {false, true}) {
      DYNAMIC_SECTION(precisionName(p) << (targeted ? " targeted" : "")) {
        PrecisionGuard guard(p);
        const auto labels = targeted ? (y + 3).remainder(10) : y;
        configureThreads(1, 1);
        REQUIRE(chunksFor(97) == 1);
        const auto whole = crossEntropyInputGrad(*model, x, labels, targeted);
        const auto pieces = piecewise(*model, x, labels, targeted, 2);
        REQUIRE(whole);
        WorkersGuard two(2);
        REQUIRE(chunksFor(97) == 2);
        const auto split = crossEntropyInputGrad(*model, x, labels, targeted);
        const auto again = crossEntropyInputGrad(*model, x, labels, targeted);
        REQUIRE(split);
        INFO("the same operations on the same rows, one thread each: the same bits, on any CPU");
        CHECK(torch::equal(split->loss, pieces.loss));
        CHECK(torch::equal(split->logits, pieces.logits));
        CHECK(torch::equal(split->grad, pieces.grad));
        CHECK(split->grad.scalar_type() == x.scalar_type());
        CHECK(torch::equal(split->grad, again->grad));
        // The workers run under the caller's autocast state: bf16 on a worker is not fp32.
        if (p == Precision::kBf16) CHECK_FALSE(torch::equal(fp32Logits, split->logits));
        // Against the whole batch only the kernels' blocking for a smaller batch can differ: each
        // logit is the same sums in another order, through 3 layers whose longest sum is the linear
        // layer's 32 * 7 * 7 terms, with (for bf16) one more bf16 rounding per layer.
        const double perLayer = 2 * test::gamma(32 * 7 * 7, test::kUnitFp32) + (p == Precision::kBf16 ? 2 * test::kUnitBf16 : 0);
        const double bound = 3 * perLayer;
        INFO("whole batch against split: largest logit difference " << (whole->logits - split->logits).abs().max().item<double>()
                                                                     << (torch::equal(whole->grad, split->grad) ? " (gradients bit-identical)" : ""));
        CHECK(test::excess(split->logits, whole->logits, 1 + whole->logits.abs().to(torch::kFloat64), bound) <= 0);
        CHECK(torch::equal(split->logits.argmax(1), whole->logits.argmax(1)));
      }
    }
  }
}

TEST_CASE("chunks run on distinct worker threads, and a chunk's exception reaches the caller", "[models]") {
  WorkersGuard two(2);
  REQUIRE(batchWorkers() == 2);
  std::mutex m;
  std::set<std::thread::id> ids;
  std::vector<int> seen(2, 0);
  runChunks(2, [&](int i) {
    // Long enough that both workers are busy at once.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::lock_guard<std::mutex> lock(m);
    ids.insert(std::this_thread::get_id());
    ++seen[static_cast<size_t>(i)];
  });
  CHECK(seen == std::vector<int>{1, 1});
  CHECK(ids.size() == 2);
  CHECK(ids.count(std::this_thread::get_id()) == 0);
  CHECK_THROWS_WITH(runChunks(2, [](int i) {
                      if (i == 1) throw std::runtime_error("chunk 1 failed");
                    }),
                    "chunk 1 failed");
  INFO("the pool still works after an exception");
  int done = 0;
  runChunks(2, [&](int) {
    std::lock_guard<std::mutex> lock(m);
    ++done;
  });
  CHECK(done == 2);
  INFO("a chunk that splits again runs its inner chunks itself, in order");
  std::vector<int> inner;
  runChunks(2, [&](int i) {
    if (i != 0) return;
    runChunks(2, [&](int j) { inner.push_back(j); });
  });
  CHECK(inner == std::vector<int>{0, 1});
}

TEST_CASE("adversarial training's PGD taking each core's rows through every step gives what splitting every step gives",
          "[models]") {
  // Pgd's last-iterate loop hands each core its chunk once for all the steps (Attack::inRowChunks);
  // the reference below splits the batch afresh at every step, as the gradient alone does.
  const auto x = test::fashionTest().images.slice(0, 0, 97);
  const auto y = test::fashionTest().labels.slice(0, 0, 97);
  Classifier model = test::standardModel();
  AttackOptions o;
  o.eps = 0.1;
  o.steps = 5;
  o.seed = 3;
  o.lastIterate = true;
  o.earlyStop = false;
  const double alpha = o.effectiveStepSize();
  for (const Precision p : {Precision::kFp32, Precision::kBf16}) {
    for (const int workers : {1, 2}) {
      DYNAMIC_SECTION(precisionName(p) << ", " << workers << " worker(s)") {
        WorkersGuard w(workers);
        PrecisionGuard guard(p);
        auto pgd = makeAttack("pgd", o);
        const auto got = pgd->perturb(*model, x, y);
        CHECK(pgd->stats().gradientEvaluations == 97 * o.steps);
        EvalModeGuard eval(*model);
        FrozenParamsGuard frozen(*model);
        const LinfBox box = linfBox(x, o.eps, o.lo, o.hi);
        auto gen = makeGenerator(o.seed);
        auto cur = box.clamp(x + (torch::rand(x.sizes(), gen, torch::kFloat32) * 2.0 - 1.0) * o.eps);
        for (int64_t k = 0; k < o.steps; ++k) {
          const auto g = crossEntropyInputGrad(*model, cur, y, false);
          REQUIRE(g);
          cur = box.clamp(torch::add(cur, g->grad.sign(), alpha));
        }
        INFO("the same operations on the same rows: the same bits, on any CPU");
        CHECK(torch::equal(got, cur));
      }
    }
  }
}

TEST_CASE("a training step split across cores gives the sum of its chunks' gradients, which is the whole batch's up to order",
          "[training]") {
  const auto x = test::fashionTest().images.slice(0, 0, 97);
  const auto y = test::fashionTest().labels.slice(0, 0, 97);
  for (const Precision p : {Precision::kFp32, Precision::kBf16}) {
    DYNAMIC_SECTION(precisionName(p)) {
      seedEverything(5);
      Classifier model(defaultSmallCnn());
      model->train();
      REQUIRE(rowIndependentInTraining(*model));
      const auto params = model->parameters();
      auto gradsOf = [&](int workers) {
        WorkersGuard w(workers);
        for (auto& t : params) t.mutable_grad() = torch::Tensor();
        // Backpropagated with autocast off, as the trainer does, but inside the guard: under
        // the AVX2 variables on an AVX-512 CPU only the guard keeps bf16 off oneDNN (runtime.h).
        PrecisionGuard guard(p);
        const auto out = crossEntropyStep(*model, x, y);
        CHECK(out.gradientsDone == (workers > 1));
        if (!out.gradientsDone) {
          AutocastOff noAutocast;
          out.loss.backward();
        }
        std::vector<torch::Tensor> g;
        for (auto& t : params) g.push_back(t.grad().clone());
        return std::make_pair(out, g);
      };
      // The reference: each chunk's share of the mean, backpropagated one after the other on this thread.
      auto piecewiseGrads = [&] {
        for (auto& t : params) t.mutable_grad() = torch::Tensor();
        PrecisionGuard guard(p);
        for (const auto& [b, e] : {std::pair<int64_t, int64_t>{0, 48}, {48, 97}}) {
          namespace F = torch::nn::functional;
          const auto loss = F::cross_entropy(model->forward(x.slice(0, b, e)), y.slice(0, b, e), F::CrossEntropyFuncOptions().reduction(torch::kSum));
          AutocastOff noAutocast;
          auto g = torch::autograd::grad({loss / 97.0}, params);
          for (size_t j = 0; j < params.size(); ++j) params[j].mutable_grad() = params[j].grad().defined() ? params[j].grad() + g[j] : g[j];
        }
        std::vector<torch::Tensor> out;
        for (auto& t : params) out.push_back(t.grad().clone());
        return out;
      };
      const auto [whole, wholeGrads] = gradsOf(1);
      const auto [split, splitGrads] = gradsOf(2);
      const auto [again, againGrads] = gradsOf(2);
      const auto pieces = piecewiseGrads();
      CHECK(split.correct == whole.correct);
      CHECK(split.count == 97);
      for (size_t j = 0; j < params.size(); ++j) {
        INFO("parameter " << j << " " << params[j].sizes());
        CHECK(torch::equal(splitGrads[j], pieces[j]));     // the same operations on the same rows, in chunk order
        CHECK(torch::equal(splitGrads[j], againGrads[j]));  // and the same bits on every run
        // Against the whole batch: the same sums over examples grouped otherwise (and, for bf16, the
        // kernels' blocking for another batch size). A per-element bound needs each sum's magnitude
        // sum, which autograd does not give; what a structural fault would change is checked instead:
        // a chunk lost or counted twice, or a wrong share of the mean, moves the norm by a factor of
        // about 2 and turns the direction, while reordered sums move both by well under 1e-3 in fp32,
        // and in bf16 by a few bf16 roundings (LibTorch's emulated bf16, on an AVX2 CPU or under the
        // AVX2 variables, rounds partial sums of the bias gradients to bf16: 0.28% measured there).
        const double tol = p == Precision::kBf16 ? 4 * test::kUnitBf16 : 1e-3;
        const double nw = wholeGrads[j].norm().item<double>(), ns = splitGrads[j].norm().item<double>();
        const double cosine = (wholeGrads[j] * splitGrads[j]).sum().item<double>() / (nw * ns);
        INFO("norms " << nw << " / " << ns << ", cosine " << cosine);
        CHECK(std::abs(ns / nw - 1) <= tol);
        CHECK(cosine >= 1 - tol);
      }
      INFO("the loss: the mean of the same per-example losses, up to their order and the kernels' blocking");
      CHECK(std::abs(split.loss.item<double>() - whole.loss.item<double>()) <= 1e-3 * whole.loss.item<double>());
    }
  }
}

TEST_CASE("a split training step computes with the weights of this step, after an update, in bf16 too", "[training]") {
  // Autocast caches casts of trainable weights per thread; a worker's cache must not outlive its chunk.
  const auto x = test::fashionTest().images.slice(0, 0, 64);
  const auto y = test::fashionTest().labels.slice(0, 0, 64);
  Classifier model = test::standardModel();  // trained: halving its weights moves the loss far
  model->train();
  REQUIRE(rowIndependentInTraining(*model));
  const auto params = model->parameters();
  auto step = [&](int workers) {
    WorkersGuard w(workers);
    for (auto& t : params) t.mutable_grad() = torch::Tensor();
    PrecisionGuard guard(Precision::kBf16);
    auto out = crossEntropyStep(*model, x, y);
    if (!out.gradientsDone) {
      AutocastOff noAutocast;
      out.loss.backward();
    }
    return out.loss.item<double>();
  };
  const double before = step(2);
  {
    torch::NoGradGuard noGrad;
    for (auto& t : params) t.mul_(0.5);  // an update in place, as the optimiser's
  }
  const double split = step(2), whole = step(1);
  INFO("loss before the update " << before << "; after it: split " << split << ", whole " << whole);
  REQUIRE(std::abs(whole - before) > 0.1);  // the update matters
  CHECK(std::abs(split - whole) <= 1e-3 * std::abs(whole));
}

TEST_CASE("PGD's robust accuracy does not depend on how many cores split its batches", "[models]") {
  const Dataset test = test::fashionTest().head(500);
  Classifier model = test::standardModel();
  AttackOptions o;
  o.eps = 0.1;
  o.steps = 10;
  o.seed = 1;
  model->eval();
  auto attacked = [&](int workers) {
    WorkersGuard w(workers);
    const auto xadv = makeAttack("pgd", o)->perturb(*model, test.images, test.labels);
    torch::NoGradGuard g;
    return model->forward(xadv).argmax(1).eq(test.labels);
  };
  const auto one = attacked(1), two = attacked(2);
  const int64_t differ = one.ne(two).sum().item<int64_t>();
  INFO("1 worker: " << one.sum().item<int64_t>() << " of 500 robust; 2 workers: " << two.sum().item<int64_t>() << "; " << differ
                    << " examples differ");
  // The same steps, with each example's gradient the same sums in at most another order: a sign that
  // flips on a near-zero gradient coordinate can move an example, rarely; 1 in 100 would be a fault.
  CHECK(differ <= 5);
}
