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
