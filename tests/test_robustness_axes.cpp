// The [robustness] axes through `robustlab run`: corrupted and imbalanced fine-tuning labels,
// calibration and out-of-distribution detection stored per arm x seed, summarised and compared over
// seeds; without the section, unit keys are those of before.
#include "experiments/plan/plan.h"
#include "data/h5io.h"
#include "data/task_shifts.h"
#include "framework/config/config.h"

#include "fixtures.h"
#include "tiny_experiment.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

using namespace robustlab;

TEST_CASE("run stores label noise, imbalance, calibration and OOD detection per arm and seed, with paired tests", "[experiment]") {
  const std::string dir = test::tempDir("robustness-axes");
  std::ofstream(dir + "/axes.toml") << test::kTinyConfig
                                    << "[robustness]\nlabel_noise = 0.4\nlabel_noise_kind = \"flip\"\nimbalance = 4\ncalibration = true\n"
                                       "calibration_bins = 10\nood_sources = [\"blobs\", \"gaussian\", \"mnist\"]\nood_limit = 150\n"
                                       "corruptions = [\"fog\", \"rotate\"]\n";
  // The MNIST digits of data/fetch_mnist.sh (scripts/setup.sh runs it), wherever the run starts.
  const std::string mnist = std::string(ROBUSTLAB_SOURCE_DIR) + "/data/cache/mnist";
  REQUIRE(test::shell("cd " + dir + " && ROBUSTLAB_MNIST_DIR=" + mnist + " " + ROBUSTLAB_BINARY + " run -q axes.toml -o r.h5 > out.txt 2>&1") == 0);
  H5File f(dir + "/r.h5", H5File::Mode::kRead);
  for (const std::string arm : {"scratch", "pre-adv"}) {
    for (const std::string seed : {"seed_0", "seed_1"}) {
      const std::string g = "/arms/" + arm + "/" + seed + "/robustness";
      INFO(g);
      REQUIRE(f.has(g));
      // Imbalance first (class 0 keeps the most, the last a quarter of it), then 40% of those labels wrong.
      const auto counts = f.readTensor(g + "/train_class_counts");
      const auto expected = imbalancedCounts(counts[0].item<int64_t>(), 5, 4.0);
      for (int64_t c = 0; c < 5; ++c) CHECK(counts[c].item<int64_t>() == expected[static_cast<size_t>(c)]);
      const int64_t n = counts.sum().item<int64_t>();
      CHECK(f.readTensor(g + "/train_label_corrupted").sum().item<int64_t>() == std::llround(0.4 * static_cast<double>(n)));
      CHECK(f.readTensor(g + "/calibration/bin_count").sum().item<int64_t>() == 200);
      for (const std::string k : {"rms_error", "ece"}) {
        const double v = f.attrDouble(g + "/calibration", k);
        CHECK((v >= 0 && v <= 1));
      }
      CHECK(f.attrDouble(g + "/calibration", "nll") > 0);
      for (const std::string name : {"fog", "rotate"}) {
        const auto acc = f.readTensor(g + "/corruptions/" + name + "/accuracy");
        CHECK(acc.numel() == 5);
        CHECK(((acc >= 0) & (acc <= 1)).all().item<bool>());
      }
      CHECK(f.attrDouble(g + "/corruptions", "mean_accuracy") >= 0);
      for (const std::string source : {"blobs", "gaussian", "mnist"}) {
        CHECK(f.attrInt(g + "/ood/" + source, "images") == 150);
        for (const std::string score : {"msp", "max_logit"}) {
          const double auroc = f.attrDouble(g + "/ood/" + source + "/" + score, "auroc");
          CHECK((auroc >= 0 && auroc <= 1));
          const double fpr = f.attrDouble(g + "/ood/" + source + "/" + score, "fpr95");
          CHECK((fpr >= 0 && fpr <= 1));
        }
      }
    }
  }
  CHECK(f.has("/summary/scratch/robustness/calibration/ece_mean"));
  CHECK(f.has("/summary/pre-adv/robustness/ood/mnist/msp/auroc_ci_low"));
  const auto p = f.readTensor("/comparisons/pre-adv_vs_scratch/robustness/ood/blobs/msp/auroc/paired_p");
  CHECK(p.numel() == 1);
  CHECK(f.has("/summary/scratch/robustness/corruptions/mean_accuracy_mean"));
  const auto mce = f.readTensor("/comparisons/pre-adv_vs_scratch/robustness/corruptions/mce_per_seed");
  CHECK(mce.numel() == 2);
  CHECK((mce > 0).all().item<bool>());
  const std::string perExample = "/comparisons/pre-adv_vs_scratch/robustness_per_example/corruptions/fog";
  const double mp = f.readTensor(perExample + "/mcnemar_p")[0].item<double>();
  CHECK((mp >= 0 && mp <= 1));
  CHECK(f.readTensor("/arms/scratch/seed_0/robustness/corruptions/fog/correct").sizes() == torch::IntArrayRef({5, 200}));
  // The report's answer says it, one sentence per axis and comparison.
  const std::string report = test::readFile(dir + "/r-report/report.md");
  CHECK_THAT(report, Catch::Contains("Beyond adversarial examples") && Catch::Contains("RMS calibration error") &&
                         Catch::Contains("AUROC of the maximum softmax probability: blobs") && Catch::Contains("relative mCE"));
  // And its section: the axes per arm, the reliability diagram.
  CHECK_THAT(report, Catch::Contains("Robustness beyond adversarial examples") && Catch::Contains("ood/mnist/msp/auroc") &&
                         Catch::Contains("figures/reliability.svg"));
  CHECK(test::readFile(dir + "/r-report/figures/reliability.svg").find("<svg") != std::string::npos);
  CHECK(test::readFile(dir + "/r-report/figures/corruptions.png").rfind("\x89PNG", 0) == 0);
}

TEST_CASE("[robustness] at its defaults leaves unit keys as they were; set, it changes only the arms' keys", "[experiment]") {
  const std::string dir = test::tempDir("robustness-keys");
  Config plain = parseConfig(test::kTinyConfig, "<tiny>");
  plain.output = dir + "/a.h5";
  Config same = parseConfig(std::string(test::kTinyConfig) + "[robustness]\ncalibration = false\nlabel_noise = 0\n", "<tiny>");
  same.output = plain.output;
  Config set = parseConfig(std::string(test::kTinyConfig) + "[robustness]\ncalibration = true\n", "<tiny>");
  set.output = plain.output;
  const Plan a = makePlan(plain, torch::kCPU), b = makePlan(same, torch::kCPU), c = makePlan(set, torch::kCPU);
  REQUIRE(a.units.size() == c.units.size());
  for (size_t i = 0; i < a.units.size(); ++i) {
    CHECK(a.units[i].hash == b.units[i].hash);
    CHECK((a.units[i].hash == c.units[i].hash) == (a.units[i].kind == Unit::Kind::kPretrain));
  }
  // An arm's own label noise changes that arm's keys only.
  std::string tiny = test::kTinyConfig;
  tiny.replace(tiny.find("name = \"pre-adv\"\n"), 17, "name = \"pre-adv\"\nlabel_noise = 0.2\n");
  Config armNoise = parseConfig(tiny, "<tiny>");
  armNoise.output = plain.output;
  const Plan d = makePlan(armNoise, torch::kCPU);
  for (size_t i = 0; i < a.units.size(); ++i) CHECK((a.units[i].hash == d.units[i].hash) == (a.units[i].name != "pre-adv"));
  CHECK_THROWS_WITH(parseConfig(tiny.replace(tiny.find("label_noise = 0.2"), 17, "imbalance = 0.5"), "<tiny>"), Catch::Contains("imbalance"));
  CHECK_THROWS_WITH(parseConfig(std::string(test::kTinyConfig) + "[robustness]\nood_sources = [\"noise\"]\n", "<tiny>"),
                    Catch::Contains("robustness.ood_sources") && Catch::Contains("gaussian"));
  CHECK_THROWS_WITH(parseConfig(std::string(test::kTinyConfig) + "[robustness]\ncorruptions = [\"frost\"]\n", "<tiny>"),
                    Catch::Contains("robustness.corruptions") && Catch::Contains("zigzag"));
}
