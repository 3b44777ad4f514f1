// The robustlab executable on bad input: one clear line on stderr, a non-zero exit, and results
// written earlier left intact. Also one small end-to-end train -> attack run on real data.
#include "fixtures.h"

#include "data/h5io.h"
#include "data/idx.h"
#include "data/sources.h"
#include "experiments/plan/results_io.h"

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace robustlab;
namespace fs = std::filesystem;

namespace {

struct CliResult {
  int code = -1;
  std::string out, err;
};


CliResult runCli(const std::string& args) {
  static int counter = 0;
  const std::string dir = test::tempDir("cli-" + std::to_string(counter++));
  const std::string cmd = std::string(ROBUSTLAB_BINARY) + " " + args + " >" + dir + "/out 2>" + dir + "/err";
  CliResult r;
  r.code = test::shell(cmd);
  r.out = test::readFile(dir + "/out");
  r.err = test::readFile(dir + "/err");
  return r;
}

/// A directory laid out like MNIST whose training images are broken by `mutate`.
std::string brokenIdxDir(const std::string& name, const std::function<std::string(const std::string&)>& mutate) {
  const std::string dir = test::tempDir(name);
  for (const std::string stem : {"train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"})
    fs::copy_file(std::string(kFashionMnistDir) + "/" + stem + ".gz", dir + "/" + stem + ".gz");
  // The uncompressed images, broken, then stored plain (the reader takes plain or gzip).
  auto images = readIdx(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz").contiguous();
  std::string bytes = {0, 0, 8, 3, 0, 0, char(0xea), 0x60, 0, 0, 0, 28, 0, 0, 0, 28};
  bytes += std::string(reinterpret_cast<const char*>(images.data_ptr<uint8_t>()), images.numel());
  std::ofstream(dir + "/train-images-idx3-ubyte", std::ios::binary) << mutate(bytes);
  return dir;
}

void checkOneLineError(const CliResult& r, const std::vector<std::string>& parts) {
  INFO("stderr: " << r.err);
  CHECK(r.code == 1);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  for (const auto& p : parts) CHECK(r.err.find(p) != std::string::npos);
}

}  // namespace

TEST_CASE("every subcommand has --help", "[cli]") {
  for (const std::string cmd : {"run", "train", "pretrain", "finetune", "attack", "convert", "bench"}) {
    const auto r = runCli(cmd + " --help");
    INFO(cmd);
    CHECK(r.code == 0);
    CHECK(r.out.find("Usage:") != std::string::npos);
  }
  CHECK(runCli("frobnicate").code == 2);
}

TEST_CASE("bad input gets one clear line and a non-zero exit", "[cli]") {
  const std::string quick = " -q --set train.epochs=1 --set data.train_limit=500 ";
  SECTION("missing data directory") {
    checkOneLineError(runCli("train" + quick + "--set data.source=idx --set data.dir=/nonexistent/fmnist"),
                      {"/nonexistent/fmnist", "data directory not found"});
  }
  SECTION("truncated IDX file") {
    const auto dir = brokenIdxDir("cli-trunc", [](const std::string& b) { return b.substr(0, b.size() - 1000); });
    checkOneLineError(runCli("train" + quick + "--set data.source=idx --set data.dir=" + dir),
                      {dir + "/train-images-idx3-ubyte", "truncated", "47040000"});
  }
  SECTION("wrong magic number") {
    const auto dir = brokenIdxDir("cli-magic", [](std::string b) {
      b[2] = 0x0d;  // float data instead of unsigned bytes
      return b;
    });
    checkOneLineError(runCli("train" + quick + "--set data.source=idx --set data.dir=" + dir), {"wrong magic number 0x00000d03"});
  }
  SECTION("unknown model layer type") {
    const std::string cfg = test::tempDir("cli-layer") + "/bad.toml";
    std::ofstream(cfg) << "[[model.layers]]\ntype = \"transformer\"\n";
    checkOneLineError(runCli("train -q -c " + cfg), {cfg, "model.layers[0].type", "'transformer'"});
  }
  SECTION("negative epochs") {
    checkOneLineError(runCli("pretrain -q --set pretrain.epochs=-3"), {"pretrain.epochs", "out of range"});
  }
  SECTION("checkpoint of another architecture") {
    const std::string cfg = test::tempDir("cli-arch") + "/wide.toml";
    std::ofstream(cfg) << "[[model.layers]]\ntype = \"conv\"\nchannels = 8\nkernel = 3\n[[model.layers]]\ntype = \"relu\"\n"
                       << "[finetune]\nclasses = [0, 1]\nepochs = 1\n";
    checkOneLineError(runCli("finetune -q -c " + cfg + " --checkpoint " + test::standardCheckpoint()),
                      {test::standardCheckpoint(), "architecture differs"});
  }
  SECTION("corrupt checkpoint") {
    const std::string bad = test::tempDir("cli-corrupt") + "/model.h5";
    std::ofstream(bad) << "not a model";
    checkOneLineError(runCli("attack -q --checkpoint " + bad), {bad, "not an HDF5 file"});
  }
  SECTION("bad attack flags") {
    checkOneLineError(runCli("attack -q --checkpoint " + test::standardCheckpoint() + " --attack pgd --eps 0.1,0.05"),
                      {"strictly increasing"});
    checkOneLineError(runCli("attack -q --checkpoint " + test::standardCheckpoint() + " --attack deepfool"), {"unknown attack 'deepfool'"});
  }
}

TEST_CASE("train then attack on real data end to end, and a killed run leaves earlier results intact", "[cli]") {
  const std::string dir = test::tempDir("cli-e2e");
  const auto t = runCli("train -q --set train.epochs=2 --set data.train_limit=3000 --set data.test_limit=500 -o " + dir + "/m.h5");
  INFO(t.err);
  REQUIRE(t.code == 0);
  CHECK(t.out.find("test accuracy") != std::string::npos);
  // eps as papers write it: 1/10 is the double 0.1
  const auto a = runCli("attack -q --checkpoint " + dir + "/m.h5 --attack fgsm,pgd --eps 0,0.05,1/10 --steps 10 --limit 300 -o " + dir +
                        "/r.h5");
  INFO(a.out << a.err);
  REQUIRE(a.code == 0);
  CHECK(a.out.find("sanity checks: 7 of 7 passed") != std::string::npos);
  const StoredEval before = readEvaluation(dir + "/r.h5", "/eval/model");
  CHECK(before.attacks == std::vector<std::string>{"fgsm", "pgd"});
  CHECK(before.worstAccuracy[2].item<double>() < before.cleanAccuracy);
  CHECK(torch::equal(before.eps.to(torch::kFloat64), torch::tensor({0.0, 0.05, 0.1}, torch::kFloat64)));

  INFO("the stored command is the one that ran, subcommand included: run again as stored, it gives the same numbers");
  std::string stored;
  {
    H5File f(dir + "/r.h5", H5File::Mode::kRead);
    stored = f.attrString("/", "command");
  }
  REQUIRE(stored.rfind("robustlab attack -q --checkpoint ", 0) == 0);
  REQUIRE(test::shell(std::string(ROBUSTLAB_BINARY) + stored.substr(std::string("robustlab").size()) + " >/dev/null 2>&1") == 0);
  const StoredEval rerun = readEvaluation(dir + "/r.h5", "/eval/model");
  CHECK(rerun.cleanAccuracy == before.cleanAccuracy);
  CHECK(torch::equal(rerun.worstAccuracy, before.worstAccuracy));

  // Kill a run that would write to the same file, halfway through its training.
  const std::string cmd = "timeout -s KILL 3 " + std::string(ROBUSTLAB_BINARY) + " run -q -o " + dir + "/r.h5 >/dev/null 2>&1";
  CHECK(test::shell(cmd) != 0);
  const StoredEval after = readEvaluation(dir + "/r.h5", "/eval/model");
  CHECK(after.cleanAccuracy == before.cleanAccuracy);
  CHECK(torch::equal(after.worstAccuracy, before.worstAccuracy));
}
