// The experiment runner: a tiny real-data experiment run whole, killed with SIGKILL and resumed,
// locked against a second writer, and refusing bad configs without touching earlier results.
#include "fixtures.h"
#include "tiny_experiment.h"

#include "data/h5io.h"
#include "experiments/plan/plan.h"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace robustlab;
namespace fs = std::filesystem;

namespace {




/// Every dataset under `group` in both files, compared exactly (timings excluded).
void compareTrees(H5File& a, H5File& b, const std::string& group, int& compared) {
  const auto names = a.children(group);
  REQUIRE(names == b.children(group));
  for (const auto& n : names) {
    const std::string p = group + "/" + n;
    if (a.isGroup(p)) {
      compareTrees(a, b, p, compared);
    } else if (n != "seconds" && n.find("names") == std::string::npos && n != "details") {
      INFO(p);
      CHECK(torch::equal(a.readTensor(p), b.readTensor(p)));
      ++compared;
    }
  }
}

}  // namespace

TEST_CASE("a run killed with SIGKILL and started again gives the numbers of an uninterrupted run", "[experiment]") {
  const std::string bin = ROBUSTLAB_BINARY;
  const std::string a = test::tempDir("exp-a"), b = test::tempDir("exp-b");
  const std::string cfgA = test::writeTiny(a), cfgB = test::writeTiny(b);
  REQUIRE(test::shell(bin + " run -q " + cfgA + " -o " + a + "/r.h5 >" + a + "/out 2>" + a + "/err") == 0);

  // Kill the second run as soon as its first arm unit is on disk (a unit file ends in its hash; the
  // kept model beside it, written first, in .model.h5).
  const std::string killer = "bash -c '" + bin + " run -q " + cfgB + " -o " + b + "/r.h5 >/dev/null 2>&1 & pid=$!; " +
                             "for i in $(seq 1 1200); do ls " + b + "/r.units/*[0-9a-f].h5 >/dev/null 2>&1 && break; sleep 0.05; done; " +
                             "kill -9 $pid; wait $pid; true'";
  test::shell(killer);
  CHECK_FALSE(fs::exists(b + "/r.h5"));
  int unitsBefore = 0;
  for (const auto& e : fs::directory_iterator(b + "/r.units"))
    unitsBefore += e.path().extension() == ".h5" && e.path().stem().extension() != ".model";
  CHECK(unitsBefore >= 1);
  CHECK(unitsBefore < 4);

  REQUIRE(test::shell(bin + " run " + cfgB + " -o " + b + "/r.h5 >" + b + "/out 2>" + b + "/err") == 0);
  const std::string log = test::readFile(b + "/err");
  INFO(log);
  CHECK(log.find("cached") != std::string::npos);  // the finished units were not recomputed

  H5File fa(a + "/r.h5", H5File::Mode::kRead), fb(b + "/r.h5", H5File::Mode::kRead);
  CHECK(fa.attrString("/", "format") == "robustlab-experiment-1");
  CHECK(fa.attrString("/", "config_hash") == fb.attrString("/", "config_hash"));
  int compared = 0;
  for (const std::string g : {"/arms", "/summary", "/comparisons"}) compareTrees(fa, fb, g, compared);
  CHECK(compared > 100);
  // The summary really summarises two seeds.
  CHECK(fa.attrInt("/summary/pre-adv", "n_seeds") == 2);
  CHECK(fa.readTensor("/summary/pre-adv/worst_accuracy_mean").size(0) == 3);
  CHECK(fa.has("/comparisons/pre-adv_vs_scratch/mcnemar_p"));
  // And the models learned their task (5 classes: chance is 20%).
  CHECK(fa.readTensor("/summary/scratch/clean_accuracy_mean")[0].item<double>() > 0.6);
  CHECK(fa.readTensor("/summary/pre-adv/clean_accuracy_mean")[0].item<double>() > 0.3);  // adversarial, 40 labels/class
  CHECK(fa.has("/pretrain/clean/seed_1/history/loss"));
  // The documented layout, read by h5py without robustlab.
  CHECK(test::shell("/usr/bin/python3 " + std::string(ROBUSTLAB_SOURCE_DIR) + "/tests/h5py_layout.py " + a + "/r.h5 >" + a + "/h5py.out 2>&1") == 0);
  INFO(test::readFile(a + "/h5py.out"));
  CHECK(test::readFile(a + "/h5py.out").find("layout ok (2 arms, 2 seeds)") != std::string::npos);
}

TEST_CASE("worker processes (the local backend, auto's choice for fp32 on a multi-core CPU) give one process's numbers exactly", "[experiment]") {
  // Both compute every unit on 1 thread, so the arithmetic is the same, operation for operation.
  const std::string bin = ROBUSTLAB_BINARY;
  const std::string a = test::tempDir("exp-one"), b = test::tempDir("exp-workers");
  const std::string cfgA = test::writeTiny(a), cfgB = test::writeTiny(b);
  REQUIRE(test::shell(bin + " run " + cfgA + " --backend inprocess --threads 1 -o " + a + "/r.h5 >" + a + "/out 2>" + a + "/err") == 0);
  REQUIRE(test::shell(bin + " run " + cfgB + " --backend local -j 2 -o " + b + "/r.h5 >" + b + "/out 2>" + b + "/err") == 0);
  const std::string log = test::readFile(b + "/err");
  INFO(log);
  // Each finished unit's line carries what its worker reported (accuracies), not just "done".
  CHECK(log.find("arm pre-adv seed 1: clean ") != std::string::npos);
  H5File fa(a + "/r.h5", H5File::Mode::kRead), fb(b + "/r.h5", H5File::Mode::kRead);
  int compared = 0;
  for (const std::string g : {"/arms", "/summary", "/comparisons"}) compareTrees(fa, fb, g, compared);
  CHECK(compared > 100);
  INFO("a unit that fails stops the run with its own error line, once");
  const std::string c = test::tempDir("exp-workers-bad");
  const std::string cfgC = test::writeTiny(c);
  // The data file is opened by the workers, not when the config is read: the error comes from a unit.
  const int code = test::shell(bin + " run -q " + cfgC + " --backend local -j 2 --set data.source=hdf5 --set data.train_file=" + c +
                               "/none.h5 --set data.test_file=" + c + "/none.h5 -o " + c + "/r.h5 >/dev/null 2>" + c + "/err");
  const std::string err = test::readFile(c + "/err");
  INFO(err);
  CHECK(code == 1);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);
  CHECK(err.find(c + "/none.h5: file not found") != std::string::npos);
  CHECK(err.find("(unit '") != std::string::npos);
  CHECK_FALSE(fs::exists(c + "/r.h5"));
}

TEST_CASE("a second run on the same results stops with a clear error", "[experiment]") {
  const std::string dir = test::tempDir("exp-lock");
  const std::string cfg = test::writeTiny(dir);
  const int fd = ::open((dir + "/r.h5.lock").c_str(), O_CREAT | O_RDWR, 0644);
  REQUIRE(::flock(fd, LOCK_EX | LOCK_NB) == 0);
  const int code = test::shell(std::string(ROBUSTLAB_BINARY) + " run -q " + cfg + " -o " + dir + "/r.h5 >/dev/null 2>" + dir + "/err");
  ::close(fd);
  CHECK(code == 1);
  CHECK(test::readFile(dir + "/err").find("another robustlab run is writing these results") != std::string::npos);
}

TEST_CASE("bad configs for run: one line, non-zero exit, earlier results untouched", "[experiment]") {
  const std::string dir = test::tempDir("exp-bad");
  std::ofstream(dir + "/r.h5") << "earlier results";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"seed = 1\n[train\n", "TOML syntax error"},
      {"[attack]\nepz = [0.1]\n", "did you mean 'attack.eps'"},
      {"seeds = \"zero\"\n", "expected an array of integers"},
      {"[attack]\neps = [0.0, -0.5]\n", "attack.eps"},
      {"[data]\nsource = \"idx\"\ndir = \"/nonexistent/data\"\n", "/nonexistent/data: data directory not found"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string cfg = dir + "/bad" + std::to_string(i) + ".toml";
    std::ofstream(cfg) << cases[i].first;
    const int code = test::shell(std::string(ROBUSTLAB_BINARY) + " run -q " + cfg + " -o " + dir + "/r.h5 >/dev/null 2>" + dir + "/err");
    const std::string err = test::readFile(dir + "/err");
    INFO(cases[i].first << " -> " << err);
    CHECK(code == 1);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
    CHECK(err.find(cases[i].second) != std::string::npos);
    CHECK(test::readFile(dir + "/r.h5") == "earlier results");
  }
}

TEST_CASE("the workers' config carries any output name, a newline included, and parses to the same config", "[experiment]") {
  Plan p;
  p.config = loadConfig("");
  p.config.output = "/tmp/a\nname\twith \"quotes\" and a # sign.h5";
  p.device = "cpu";
  const std::string text = workerConfigText(p);
  INFO(text.substr(0, 200));
  CHECK(text.substr(0, text.find('\n')).find("a\\x0aname\\x09with") != std::string::npos);  // the comment: escaped
  const Config back = parseConfig(text, "worker.toml");
  CHECK(back.output == p.config.output);
  CHECK(back.runArms().size() == p.config.runArms().size());
}
