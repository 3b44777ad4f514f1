// Sweeps: expansion of [sweep] into points, clear errors for bad sweep specs, and a local sweep
// killed with SIGKILL that does not recompute its finished points when run again. (The Slurm
// backend is tested against a real one-node Slurm by tests/slurm_sweep.sh.)
#include "fixtures.h"

#include "experiments/plan/experiment.h"
#include "experiments/plan/sweep.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

using namespace robustlab;
namespace fs = std::filesystem;

namespace {

const std::string kExample = std::string(ROBUSTLAB_SOURCE_DIR) + "/experiments/configs/sweep-example.toml";

std::string withSweep(const std::string& dir, const std::string& sweep) {
  std::string base = test::readFile(kExample);
  base = base.substr(0, base.find("[sweep]"));
  const std::string path = dir + "/sweep.toml";
  std::ofstream(path) << base << sweep;
  return path;
}

}  // namespace

TEST_CASE("a grid expands to one point per combination, each with its own config and hash", "[sweep]") {
  const std::string dir = test::tempDir("sweep-plan");
  const Sweep s = planSweep(kExample, {}, dir + "/s");
  REQUIRE(s.points.size() == 4);
  CHECK(s.keys == std::vector<std::string>{"finetune.adv_eps", "pretrain.mode"});
  CHECK(s.points[1].params[1].second == "'rotation'");
  for (const auto& p : s.points) {
    CHECK(fs::exists(p.configPath));
    const Config c = loadConfig(p.configPath);
    CHECK(experimentHash(c) == p.hash);
  }
  CHECK(loadConfig(s.points[2].configPath).finetune.adversary.eps == Approx(0.1));
  CHECK(loadConfig(s.points[1].configPath).pretrain.mode == "rotation");
}

TEST_CASE("random search is seeded and respects its distributions", "[sweep]") {
  const std::string dir = test::tempDir("sweep-random");
  const std::string cfg = withSweep(dir, "[sweep]\nmode = \"random\"\nsamples = 6\nseed = 3\n[sweep.random]\n"
                                         "\"finetune.lr\" = { distribution = \"log-uniform\", low = 0.001, high = 0.1 }\n"
                                         "\"finetune.per_class\" = { distribution = \"choice\", values = [20, 40] }\n");
  const Sweep a = planSweep(cfg, {}, dir + "/a"), b = planSweep(cfg, {}, dir + "/b");
  REQUIRE(a.points.size() == 6);
  for (size_t i = 0; i < a.points.size(); ++i) {
    CHECK(a.points[i].params == b.points[i].params);
    const Config c = loadConfig(a.points[i].configPath);
    CHECK(c.finetune.train.optim.lr >= 0.001);
    CHECK(c.finetune.train.optim.lr <= 0.1);
    CHECK((c.finetune.perClass == 20 || c.finetune.perClass == 40));
  }
}

TEST_CASE("bad sweep specs are clear errors", "[sweep]") {
  const std::string dir = test::tempDir("sweep-bad");
  REQUIRE_THROWS_WITH(planSweep(withSweep(dir, "[sweep]\n[sweep.grid]\n\"finetune.lrr\" = [0.1, 0.2]\n"), {}, dir + "/s"),
                      Catch::Contains("finetune.lrr") && Catch::Contains("did you mean 'finetune.lr'"));
  REQUIRE_THROWS_WITH(planSweep(withSweep(dir, "[sweep]\n[sweep.grid]\n\"finetune.lr\" = []\n"), {}, dir + "/s"),
                      Catch::Contains("empty list"));
  REQUIRE_THROWS_WITH(planSweep(withSweep(dir, "[sweep]\nmode = \"random\"\nsamples = 2\n[sweep.random]\n"
                                               "\"finetune.lr\" = { distribution = \"gaussian\", low = 0.1, high = 0.2 }\n"),
                                {}, dir + "/s"),
                      Catch::Contains("sweep.random.finetune.lr.distribution") && Catch::Contains("log-uniform"));
  REQUIRE_THROWS_WITH(planSweep(withSweep(dir, "[sweep]\nmode = \"random\"\nsamples = 2\n[sweep.random]\n"
                                               "\"finetune.lr\" = { distribution = \"log-uniform\", low = 0.0, high = 0.2 }\n"),
                                {}, dir + "/s"),
                      Catch::Contains("low > 0"));
  REQUIRE_THROWS_WITH(planSweep(withSweep(dir, "[sweep]\n[sweep.grid]\n\"finetune.epochs\" = [2, -1]\n"), {}, dir + "/s"),
                      Catch::Contains("finetune.epochs") && Catch::Contains("out of range"));
  REQUIRE_THROWS_WITH(planSweep(withSweep(dir, ""), {}, dir + "/s"), Catch::Contains("no [sweep] table"));
}

TEST_CASE("a local sweep killed with SIGKILL does not recompute its finished points", "[sweep]") {
  const std::string dir = test::tempDir("sweep-kill");
  const std::string bin = ROBUSTLAB_BINARY;
  const std::string killer = "bash -c 'setsid " + bin + " sweep " + kExample + " --dir " + dir + "/s --jobs 1 --threads 1 >/dev/null 2>&1 & " +
                             "pid=$!; for i in $(seq 1 1200); do ls " + dir + "/s/points/*.h5 >/dev/null 2>&1 && break; sleep 0.05; done; " +
                             "kill -9 -- -$pid; wait $pid; true'";
  test::shell(killer);
  int finished = 0;
  for (const auto& e : fs::directory_iterator(dir + "/s/points")) finished += e.path().extension() == ".h5";
  REQUIRE(finished >= 1);
  REQUIRE(finished < 4);
  REQUIRE(test::shell(bin + " sweep " + kExample + " --dir " + dir + "/s --jobs 2 --threads 1 >" + dir + "/out 2>" + dir + "/err") == 0);
  const std::string err = test::readFile(dir + "/err");
  INFO(err);
  CHECK(err.find("4 points, " + std::to_string(finished) + " done, " + std::to_string(4 - finished) + " to run") != std::string::npos);
  const std::string out = test::readFile(dir + "/out");
  CHECK(out.find("4 of 4 points") != std::string::npos);

  // The collected sweep makes a report: points, best point per metric, heatmaps (two swept keys).
  REQUIRE(test::shell(bin + " report " + dir + "/s/sweep.h5 -o " + dir + "/rep >/dev/null 2>&1") == 0);
  const std::string html = test::readFile(dir + "/rep/report.html");
  for (const std::string id : {"metadata", "points", "best", "heatmaps"}) {
    INFO(id);
    CHECK(html.find("<section id=\"" + id + "\">") != std::string::npos);
  }
  CHECK(fs::exists(dir + "/rep/figures/heatmap-0.svg"));
}

namespace {

/// Two points that share one pre-training (they differ only in the fine-tuning eps), small enough
/// to run many times.
constexpr const char* kSharedPretraining = R"(name = "shared"
seeds = [0]
[data]
test_limit = 100
train_limit = 3000
[pretrain]
classes = [0, 1, 2, 3, 4]
per_class = 100
epochs = 1
[finetune]
classes = [5, 6, 7, 8, 9]
per_class = 20
epochs = 2
objective = "pgd"
adv_steps = 2
[attack]
attacks = ["fgsm"]
eps = [0.0, 0.1]
sanity_checks = false
[sweep]
mode = "grid"
[sweep.grid]
"finetune.adv_eps" = [0.05, 0.1]
)";

/// Processes whose command line holds `dir` + "/configs" (the sweep's point processes). The pattern
/// is written so that it does not match the shell running pgrep.
int countPointProcesses(const std::string& dir) {
  const std::string out = test::tempDir("pgrep") + "/pgrep.out";
  test::shell("pgrep -f -- '" + dir + "/config[s]/' >" + out + " 2>/dev/null");
  const std::string s = test::readFile(out);
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

}  // namespace

TEST_CASE("points that share a pre-training run concurrently: 20 fresh sweeps with 2 jobs all succeed", "[sweep]") {
  const std::string root = test::tempDir("sweep-concurrent");
  std::ofstream(root + "/shared.toml") << kSharedPretraining;
  int succeeded = 0;
  for (int i = 0; i < 20; ++i) {
    const std::string dir = root + "/run" + std::to_string(i);
    const int code = test::shell(std::string(ROBUSTLAB_BINARY) + " sweep " + root + "/shared.toml --dir " + dir + " --jobs 2 --threads 1 -q >" +
                                 root + "/log" + std::to_string(i) + " 2>&1");
    INFO("run " << i << ": " << test::readFile(root + "/log" + std::to_string(i)));
    CHECK(code == 0);
    succeeded += code == 0;
    // One pre-training computed once, no temporary left.
    int cached = 0;
    for (const auto& e : fs::directory_iterator(dir + "/points/cache")) {
      CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
      cached += e.path().extension() == ".h5";
    }
    CHECK(cached == 1);
  }
  CHECK(succeeded == 20);
}

TEST_CASE("a sweep whose leader is killed leaves no orphan and no temporary, and the rerun gives the same table", "[sweep]") {
  const std::string root = test::tempDir("sweep-leader-kill");
  std::ofstream(root + "/shared.toml") << kSharedPretraining;
  const std::string bin = ROBUSTLAB_BINARY;
  REQUIRE(test::shell(bin + " sweep " + root + "/shared.toml --dir " + root + "/clean --jobs 2 --threads 1 -q >/dev/null 2>&1") == 0);
  // Start the sweep, then SIGKILL the leader while its points compute.
  const std::string dir = root + "/killed";
  test::shell("(" + bin + " sweep " + root + "/shared.toml --dir " + dir + " --jobs 2 --threads 1 -q >/dev/null 2>&1 & echo $! >" + root +
              "/pid; wait) & sleep 2; kill -KILL $(cat " + root + "/pid)");
  // They die with the leader (SIGTERM from the kernel), well before they would have finished.
  for (int i = 0; i < 5 && countPointProcesses(dir) > 0; ++i) test::shell("sleep 0.1");
  CHECK(countPointProcesses(dir) == 0);
  REQUIRE(test::shell(bin + " sweep " + root + "/shared.toml --dir " + dir + " --jobs 2 --threads 1 -q >/dev/null 2>&1") == 0);
  for (const std::string sub : {"/points", "/points/cache", ""})
    for (const auto& e : fs::directory_iterator(dir + sub)) {
      INFO("left behind: " << e.path());
      CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
    }
  CHECK(test::shell("h5diff -d 0 " + root + "/clean/sweep.h5 " + dir + "/sweep.h5 /table/values >/dev/null 2>&1") == 0);
}
