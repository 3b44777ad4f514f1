// Splitting an attack step's batch across cores (framework/runtime/chunks.h): every example gets what
// its own chunk computed alone gives it, under the caller's precision, and the attack's outcome does not
// depend on the core count.
#include "fixtures.h"
#include "tolerance.h"
#include "attacks/registry.h"
#include "framework/models/input_grad.h"
#include "framework/runtime/chunks.h"
#include "framework/runtime/runtime.h"

#include <ATen/ops/cat.h>

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
