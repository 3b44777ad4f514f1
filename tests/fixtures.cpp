#include "fixtures.h"

#include "framework/training/adversarial_training.h"
#include "data/sources.h"
#include "framework/models/checkpoint.h"
#include "framework/models/kernels/conv_kernels.h"
#include "framework/runtime/onednn_check.h"
#include "framework/runtime/progress.h"
#include "framework/runtime/runtime.h"
#include "framework/training/trainer.h"

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <functional>
#include <unistd.h>

namespace robustlab::test {
namespace fs = std::filesystem;

int skipCode() {
  // As robustlab's main does: LibTorch's references here are its convolutions too.
  guardOnednnConvolutions();
  // The AVX2 + FMA run of an AVX-512 CPU (CTest entry as-avx2): nothing to add on a CPU that is AVX2 already.
  if (const char* as = std::getenv("ROBUSTLAB_TEST_AS_AVX2"); as && *as && !kernelPathSupported(KernelPath::kAvx512)) {
    std::fprintf(stderr, "skipped: this CPU has no AVX-512, so the other entries already run its AVX2 paths\n");
    return 77;
  }
  const char* env = std::getenv("ROBUSTLAB_KERNELS");
  if (!env || !*env) return 0;
  try {
    const KernelPath p = parseKernelPath(env);
    if (kernelPathSupported(p)) {
      std::printf("kernel path under test: %s (ROBUSTLAB_KERNELS=%s)\n", kernelPathName(p).c_str(), env);
      return 0;
    }
    std::fprintf(stderr, "skipped: this CPU cannot run the kernel path '%s' (ROBUSTLAB_KERNELS; it runs up to '%s')\n", env,
                 kernelPathName(bestKernelPath()).c_str());
    return 77;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ROBUSTLAB_KERNELS: %s\n", e.what());  // a misnamed path is an error, not a skip
    return 2;
  }
}

namespace {

// Bump when the fixtures' recipe changes, so stale cached models are not reused.
constexpr const char* kCacheVersion = "v5";

std::string cachePath(const std::string& name) {
  fs::create_directories(ROBUSTLAB_TEST_CACHE);
  return std::string(ROBUSTLAB_TEST_CACHE) + "/" + name + "-" + kCacheVersion + ".h5";
}

Classifier trainOrLoad(const std::string& name, const std::function<std::unique_ptr<TrainingObjective>()>& objective, int64_t epochs) {
  const std::string path = cachePath(name);
  if (fs::exists(path)) return loadClassifier(path);
  Progress::setQuiet(true);
  configureThreads(1);
  seedEverything(0);
  Classifier model(smallCnn());
  TrainOptions opt;
  opt.epochs = epochs;
  opt.batchSize = 64;
  opt.optim.lr = 0.05;
  auto obj = objective();
  train(*model, *obj, fashionTrain(), Dataset{}, opt, torch::kCPU);
  saveCheckpoint(path, *model, "");
  return model;
}

}  // namespace

const Dataset& fashionTrain() {
  static const Dataset d = loadSplit(DataSourceSpec{}, "train").head(6000);
  return d;
}

const Dataset& fashionTest() {
  static const Dataset d = loadSplit(DataSourceSpec{}, "test").head(1000);
  return d;
}

ModelSpec smallCnn(int64_t classes, bool batchNorm) {
  ModelSpec s = defaultSmallCnn();
  s.numClasses = classes;
  if (batchNorm) {
    s.layers.insert(s.layers.begin() + 1, LayerSpec{"bn"});
    s.layers.insert(s.layers.begin() + 4, LayerSpec{"bn"});
  }
  return s;
}

Classifier standardModel() {
  return trainOrLoad("standard", [] { return std::make_unique<CrossEntropyObjective>(); }, 8);
}

std::string standardCheckpoint() {
  standardModel();
  return cachePath("standard");
}

Classifier adversarialModel() {
  return trainOrLoad("pgd-at",
                     [] {
                       AttackOptions o;
                       o.eps = 0.1;
                       o.steps = 7;
                       o.stepSize = 0.03;
                       return std::make_unique<PgdTrainingObjective>(o);
                     },
                     4);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string tempDir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("robustlab-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

TEST_CASE("trained fixture models are built and cached", "[fixtures]") {
  CHECK(standardModel()->spec().numClasses == 10);
  CHECK(adversarialModel()->spec().numClasses == 10);
}

std::vector<torch::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (const auto& p : m.parameters()) out.push_back(p.detach().clone());
  for (const auto& b : m.buffers()) out.push_back(b.detach().clone());
  return out;
}

bool sameTensors(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return true;
}

}  // namespace robustlab::test
