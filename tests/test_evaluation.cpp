// Evaluation semantics (ATTACK-CORRECTNESS.md items 11-15) and the HDF5 results they produce.
#include "eval_suite.h"
#include "fixtures.h"

#include "attacks/evaluation/evaluation.h"
#include "data/h5io.h"
#include "experiments/plan/results_io.h"
#include "framework/runtime/progress.h"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace robustlab;

namespace {

EvalOptions fullSuite() { return test::fgsmPgdSuite(); }

const EvalResult& standardEval() {
  static const EvalResult r = [] {
    Classifier m = test::standardModel();
    return evaluate(*m, test::fashionTest().head(400), fullSuite(), torch::kCPU);
  }();
  return r;
}

}  // namespace

TEST_CASE("robust accuracy counts clean mistakes as not robust; success rate is over clean-correct examples", "[evaluation]") {
  const EvalResult& r = standardEval();
  const auto* run = r.find("pgd", 0.05);
  REQUIRE(run);
  const int64_t n = r.labels.size(0);
  const auto correct = r.cleanCorrect;
  // No example wrong on its clean input is counted as robust.
  CHECK((run->robust & ~correct).sum().item<int64_t>() == 0);
  CHECK(run->robustAccuracy == Approx(run->robust.sum().item<double>() / n));
  const double fooled = (correct & run->advPred.ne(r.labels)).sum().item<double>();
  CHECK(run->successRate == Approx(fooled / correct.sum().item<double>()));
  CHECK(r.cleanAccuracy < 1.0);  // so the denominators really differ
}

TEST_CASE("worst-case curves are monotone in eps and the worst over attacks", "[evaluation]") {
  const EvalResult& r = standardEval();
  for (size_t e = 1; e < r.worstAccuracy.size(); ++e) CHECK(r.worstAccuracy[e] <= r.worstAccuracy[e - 1]);
  // Per example: robust at eps implies robust at every smaller eps.
  const auto w = r.worstRobust;
  for (int64_t e = 1; e < w.size(1); ++e) CHECK((w.select(1, e) & ~w.select(1, e - 1)).sum().item<int64_t>() == 0);
  for (size_t e = 0; e < r.epsGrid.size(); ++e)
    for (const auto& run : r.runs)
      if (run.eps == r.epsGrid[e]) CHECK(r.worstAccuracy[e] <= run.robustAccuracy + 1e-12);
  CHECK(r.worstAccuracy[0] == Approx(r.cleanAccuracy));
}

TEST_CASE("sanity checks pass on a normally trained model and are recorded", "[evaluation]") {
  const EvalResult& r = standardEval();
  std::vector<std::string> names;
  for (const auto& c : r.checks) {
    names.push_back(c.name);
    INFO(c.name << ": " << c.detail);
    CHECK(c.passed);
  }
  CHECK(names == std::vector<std::string>{"pgd_not_weaker_than_fgsm", "monotone_in_eps", "zero_gradients", "deterministic_model",
                                          "eps_zero_identity", "large_eps_breaks_model", "more_steps_stable"});
}

TEST_CASE("gradient masking is flagged: a saturated-softmax model fails the sanity checks", "[evaluation]") {
  // Scaling the logits by 1e4 saturates the softmax: for confidently classified inputs the
  // cross-entropy gradient is exactly 0 in float32, FGSM/PGD stall and the model looks robust.
  // The evaluation must say so, not report the robustness.
  Classifier m = test::standardModel();
  {
    torch::NoGradGuard g;
    m->head()->weight.mul_(1e4);
    m->head()->bias.mul_(1e4);
  }
  const EvalResult r = evaluate(*m, test::fashionTest().head(200), fullSuite(), torch::kCPU);
  std::vector<std::string> failed;
  for (const auto& c : r.checks)
    if (!c.passed) failed.push_back(c.name);
  INFO("PGD accuracy at 0.1: " << r.find("pgd", 0.1)->robustAccuracy << "; zero-gradient fraction "
                                << r.find("pgd", 0.1)->zeroGradFraction);
  CHECK(std::find(failed.begin(), failed.end(), "zero_gradients") != failed.end());
  CHECK(std::find(failed.begin(), failed.end(), "large_eps_breaks_model") != failed.end());
}

TEST_CASE("evaluation results round-trip through HDF5 with float32 adversarial examples", "[evaluation]") {
  const EvalResult& r = standardEval();
  const auto dir = test::tempDir("eval-h5");
  writeH5Atomically(dir + "/r.h5", [&](H5File& f) {
    writeResultsHeader(f, "seed = 0\n", "test");
    writeEvaluation(f, "/eval/model", r);
  });
  const StoredEval s = readEvaluation(dir + "/r.h5", "/eval/model");
  CHECK(s.cleanAccuracy == r.cleanAccuracy);
  CHECK(s.attacks == std::vector<std::string>{"fgsm", "pgd"});
  CHECK(torch::allclose(s.worstAccuracy, torch::tensor(r.worstAccuracy, torch::kFloat64)));
  H5File f(dir + "/r.h5", H5File::Mode::kRead);
  const auto ex = f.readTensor("/eval/model/attacks/pgd/examples");
  CHECK(ex.scalar_type() == torch::kFloat32);
  CHECK(ex.sizes() == torch::IntArrayRef({4, 4, 1, 28, 28}));
  // The stored examples are exactly the attack's output: still adversarial when reloaded.
  CHECK(torch::equal(ex[3], r.find("pgd", 0.1)->examples));
  CHECK(f.attrString("/eval/model", "robust_accuracy_denominator").find("all evaluated") == 0);
  CHECK(f.readTensor("/eval/model/sanity/passed").sum().item<int64_t>() == static_cast<int64_t>(r.checks.size()));
}
