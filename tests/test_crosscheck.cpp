// Cross-checking an arm: run keeps every arm x seed's trained model and names the test images it
// evaluated; python/robustlab_io.py gets them back, and python/robustlab_crosscheck.py re-evaluates
// them with an independent implementation (here a minimal PGD written for the test in plain PyTorch).
#include "fixtures.h"

#include "data/h5io.h"
#include "experiments/plan/results_io.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

using namespace robustlab;
namespace fs = std::filesystem;

namespace {

constexpr const char* kCrosscheckConfig = R"(name = "xc"
seeds = [0]
[data]
test_limit = 300
[finetune]
classes = [5, 6, 7, 8, 9]
per_class = 40
epochs = 4
lr = 0.05
[[arms]]
name = "scratch"
pretrain = "none"
objective = "standard"
[attack]
attacks = ["pgd"]
eps = [0, 0.05, 0.1]
steps = 10
random_start = false
)";

int runIn(const std::string& dir, const std::string& command) {
  return test::shell("cd " + dir + " && " + command + " >" + dir + "/out 2>" + dir + "/err");
}

}  // namespace

TEST_CASE("run keeps each arm's model and its test images; an independent PGD in PyTorch agrees with robustlab per example", "[experiment]") {
  const std::string dir = test::tempDir("crosscheck");
  std::ofstream(dir + "/xc.toml") << kCrosscheckConfig;
  REQUIRE(runIn(dir, std::string(ROBUSTLAB_BINARY) + " run -q xc.toml -o results/xc.h5") == 0);
  std::string model;
  torch::Tensor indices;
  {
    H5File f(dir + "/results/xc.h5", H5File::Mode::kRead);
    REQUIRE(f.hasAttr("/evaluated/scratch/seed_0", "model_checkpoint"));
    model = f.attrString("/evaluated/scratch/seed_0", "model_checkpoint");
    indices = f.readTensor("/evaluated/scratch/seed_0/test_indices");
  }
  INFO("the kept model is a checkpoint beside the unit, relative to where the run ran");
  CHECK(model.rfind("results/xc.units/scratch-seed0-", 0) == 0);
  REQUIRE(fs::exists(dir + "/" + model));
  INFO("the evaluated images: 300 distinct places in Fashion-MNIST's test split, in order");
  REQUIRE(indices.numel() == 300);
  CHECK((indices.slice(0, 1) - indices.slice(0, 0, -1)).gt(0).all().item<bool>());  // increasing: distinct, in order
  CHECK(indices.max().item<int64_t>() < 10000);

  INFO("attack --checkpoint on the kept model evaluates the same images to the same numbers");
  REQUIRE(runIn(dir, std::string(ROBUSTLAB_BINARY) + " attack -q --checkpoint " + model +
                         " --attack pgd --eps 0,0.05,0.1 --steps 10 --no-random-start --limit 300 --no-sanity -o again.h5") == 0);
  const StoredEval run = readEvaluation(dir + "/results/xc.h5", "/arms/scratch/seed_0/eval");
  const StoredEval again = readEvaluation(dir + "/again.h5", "/eval/model");
  CHECK(again.cleanAccuracy == run.cleanAccuracy);
  CHECK(torch::equal(again.worstAccuracy, run.worstAccuracy));
  {
    H5File f(dir + "/again.h5", H5File::Mode::kRead);
    CHECK(torch::equal(f.readTensor("/test_indices"), indices));
  }

  INFO("robustlab_io.evaluated gives back the very images (robustlab's stored examples, bit for bit) and labels");
  const std::string py = "import sys; sys.path.insert(0, sys.argv[1]); import robustlab_io as rl, h5py, numpy as np\n"
                         "ev = rl.evaluated(sys.argv[2], 'scratch', 0)\n"
                         "g = h5py.File(sys.argv[2])[ev['eval']]\n"
                         "assert np.array_equal(ev['images'][:8].numpy(), np.array(g['example_inputs'])), 'images'\n"
                         "assert np.array_equal(ev['labels'].numpy(), np.array(g['labels'])), 'labels'\n"
                         "print('images ok')\n";
  std::ofstream(dir + "/check.py") << py;
  REQUIRE(runIn(dir, "/usr/bin/python3 check.py " + std::string(ROBUSTLAB_SOURCE_DIR) + "/python results/xc.h5") == 0);
  CHECK(test::readFile(dir + "/out").find("images ok") != std::string::npos);

  INFO("the cross-check: clean predictions equal, and per example the same robust verdicts. Both sides take the "
       "same steps from the clean image (no random start); they can part only where a gradient component's sign "
       "flips under another summation order (robustlab's kernels against PyTorch's autograd), which this test "
       "measured on no example of 300 at either eps; 2% is the allowance");
  REQUIRE(runIn(dir, "/usr/bin/python3 " + std::string(ROBUSTLAB_SOURCE_DIR) + "/python/robustlab_crosscheck.py results/xc.h5 --arm scratch --seed 0 --with " +
                         std::string(ROBUSTLAB_SOURCE_DIR) + "/tests/minimal_pgd.py --json xc.json") == 0);
  const std::string out = test::readFile(dir + "/out");
  INFO(out << test::readFile(dir + "/err"));
  CHECK(out.find("clean predictions equal to robustlab's: 300 of 300") != std::string::npos);
  const std::string check = "import json,sys; d=json.load(open(sys.argv[1])); r=d['per_eps']; "
                            "assert [x['eps'] for x in r]==[0.05,0.1], r; assert all(x['agreement']>=0.98 for x in r), r; "
                            "assert all(abs(x['robustlab']-x['other'])<=0.02 for x in r), r";
  CHECK(test::shell("/usr/bin/python3 -c \"" + check + "\" " + dir + "/xc.json >" + dir + "/json.log 2>&1") == 0);
  INFO(test::readFile(dir + "/json.log"));
}
