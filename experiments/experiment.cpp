#include "experiments/experiment.h"

#include "framework/cpu_info.h"

#include "attacks/evaluation.h"
#include "data/h5io.h"
#include "experiments/pipeline.h"
#include "experiments/results_io.h"
#include "experiments/experiment_summary.h"
#include "experiments/version.h"
#include "framework/checkpoint.h"
#include "framework/progress.h"

#include <fcntl.h>
#include <sys/file.h>
#include <torch/version.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace robustlab {
namespace fs = std::filesystem;
namespace {

// Part of every cache key. Bump when what a unit file holds changes, or when a code change alters
// the numbers a unit computes, so old units are recomputed instead of reused.
// 2: input gradients of one-channel first convolutions by im2col (adversarial examples differ at
//    float rounding level).
// 3: one-channel first convolutions by robustlab's own kernels on AVX-512 CPUs, forward and input
//    gradient (the same sums in another order: trained weights and examples differ at rounding level).
constexpr const char* kUnitFormat = "robustlab-unit-3";

std::string utcNow() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return buf;
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Holds an exclusive lock on a file for the life of the run; the kernel drops it if we die.
class RunLock {
 public:
  RunLock(const std::string& lockPath, const std::string& output) {
    fd_ = ::open(lockPath.c_str(), O_CREAT | O_RDWR, 0644);
    if (fd_ < 0) throw std::runtime_error(lockPath + ": cannot create the run lock");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      throw std::runtime_error(output + ": another robustlab run is writing these results now (lock " + lockPath + " is held)");
    }
  }
  ~RunLock() { ::close(fd_); }
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;

 private:
  int fd_ = -1;
};

struct PretrainUnit {
  std::string variant;
  StageConfig stage;
  int64_t seed;
  std::string hash, path;
};

struct ArmUnit {
  ArmConfig arm;
  StageConfig stage;  // the effective fine-tuning stage
  int64_t seed;
  const PretrainUnit* pretrain = nullptr;
  std::string hash, path;
};

bool unitDone(const std::string& path, const std::string& hash) {
  if (!fs::exists(path)) return false;
  try {
    H5File f(path, H5File::Mode::kRead);
    return f.hasAttr("/", "unit_hash") && f.attrString("/", "unit_hash") == hash;
  } catch (const std::exception&) {
    return false;  // unreadable: recompute it
  }
}

StageConfig effectiveFinetune(const Config& c, const ArmConfig& a) {
  StageConfig s = c.finetune;
  if (!a.objective.empty()) s.objective = a.objective;
  if (!a.mode.empty()) s.finetune = a.mode;
  if (a.perClass >= 0) s.perClass = a.perClass;
  return s;
}

/// Everything a unit's numbers depend on, besides its own stage.
std::string commonKey(const Config& c) {
  return std::string(kUnitFormat) + "\nprecision = " + c.precision + "\n" + dataToToml(c.data) + c.model.backboneKey();
}

}  // namespace

std::string stableHash(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char ch : text) {
    h ^= ch;
    h *= 1099511628211ULL;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string experimentHash(const Config& c) {
  Config hashed = c;
  hashed.output.clear();
  hashed.threads = 0;
  return stableHash(hashed.toToml());
}

void runExperiment(const Config& c, const std::string& command, torch::Device device) {
  const std::string started = utcNow();
  const auto t0 = std::chrono::steady_clock::now();
  const fs::path out(c.output);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  const std::string stem = (out.parent_path() / out.stem()).string();
  const std::string unitsDir = stem + ".units", cacheDir = (out.parent_path() / "cache").string();
  fs::create_directories(unitsDir);
  fs::create_directories(cacheDir);
  RunLock lock(c.output + ".lock", c.output);

  // Plan every unit.
  const auto seeds = c.runSeeds();
  const auto variants = c.runVariants();
  const auto arms = c.runArms();
  std::vector<PretrainUnit> pres;
  for (const auto& arm : arms) {
    if (arm.pretrain == "none") continue;
    for (int64_t seed : seeds) {
      bool have = false;
      for (const auto& p : pres) have |= p.variant == arm.pretrain && p.seed == seed;
      if (have) continue;
      PretrainUnit p;
      p.variant = arm.pretrain;
      for (const auto& [n, v] : variants)
        if (n == arm.pretrain) p.stage = v;
      p.seed = seed;
      p.hash = stableHash(commonKey(c) + stageToToml("pretrain", p.stage) + "seed=" + std::to_string(seed));
      p.path = cacheDir + "/pretrain-" + p.variant + "-" + p.hash + ".h5";
      pres.push_back(p);
    }
  }
  std::vector<ArmUnit> units;
  for (const auto& arm : arms) {
    for (int64_t seed : seeds) {
      ArmUnit u;
      u.arm = arm;
      u.stage = effectiveFinetune(c, arm);
      u.seed = seed;
      for (const auto& p : pres)
        if (p.variant == arm.pretrain && p.seed == seed) u.pretrain = &p;
      u.hash = stableHash(commonKey(c) + stageToToml("finetune", u.stage) + attackToToml(c.attack) +
                          "pretrain=" + (u.pretrain ? u.pretrain->hash : std::string("none")) + "\nseed=" + std::to_string(seed));
      u.path = unitsDir + "/" + arm.name + "-seed" + std::to_string(seed) + "-" + u.hash + ".h5";
      units.push_back(u);
    }
  }

  const int64_t total = static_cast<int64_t>(pres.size() + units.size());
  int64_t done = 0, computed = 0;
  double computedSeconds = 0;
  const bool quiet = Progress::quiet();
  if (!quiet)
    std::fprintf(stderr, "experiment '%s': %zu arms x %zu seeds, %zu pre-trainings, %lld units\n", c.name.c_str(), arms.size(),
                 seeds.size(), pres.size(), static_cast<long long>(total));
  auto logUnit = [&](const std::string& what, const std::string& how, double secs) {
    ++done;
    if (secs > 0) {
      ++computed;
      computedSeconds += secs;
    }
    if (quiet) return;
    // ETA from the units computed so far (cached ones cost nothing and say nothing about the rest).
    const double eta = computed ? computedSeconds / static_cast<double>(computed) * static_cast<double>(total - done) : NAN;
    std::fprintf(stderr, "[%lld/%lld] %s: %s (%s) elapsed %s ETA %s\n", static_cast<long long>(done), static_cast<long long>(total),
                 what.c_str(), how.c_str(), formatDuration(secs).c_str(), formatDuration(since(t0)).c_str(),
                 done == total ? "0s" : formatDuration(eta).c_str());
  };

  // The config of one seed, with the training runtime (threads) set up for it.
  auto forSeed = [&](int64_t seed) {
    const Config cs = c.withSeed(static_cast<uint64_t>(seed));
    setUpRuntime(cs);
    return cs;
  };

  for (const auto& p : pres) {
    const std::string what = "pretrain " + p.variant + " seed " + std::to_string(p.seed);
    if (unitDone(p.path, p.hash)) {
      logUnit(what, "cached", 0);
      continue;
    }
    const auto u0 = std::chrono::steady_clock::now();
    const Config cs = forSeed(p.seed);
    StageResult r = runStage(cs, p.stage, "pretrain", "", "pretrain " + p.variant, device);
    const double secs = since(u0);
    saveStage(p.path, r, cs, p.stage, "pretrain", [&](H5File& f) {
      f.setAttr("/", "unit_hash", p.hash);
      f.setAttr("/", "variant", p.variant);
      f.setAttr("/", "seed", p.seed);
      f.setAttr("/", "seconds", secs);
    });
    logUnit(what, "trained", secs);
  }

  for (const auto& u : units) {
    const std::string what = "arm " + u.arm.name + " seed " + std::to_string(u.seed);
    if (unitDone(u.path, u.hash)) {
      logUnit(what, "cached", 0);
      continue;
    }
    const auto u0 = std::chrono::steady_clock::now();
    const Config cs = forSeed(u.seed);
    StageResult r = runStage(cs, u.stage, "finetune", u.pretrain ? u.pretrain->path : "", u.arm.name, device);
    const double trainSecs = since(u0);
    useEvalThreads(cs);
    const auto e0 = std::chrono::steady_clock::now();
    const EvalResult ev = evaluate(*r.model, r.data.test, evalOptionsFrom(cs), device);
    const double evalSecs = since(e0);
    writeH5Atomically(u.path, [&](H5File& f) {
      f.setAttr("/", "unit_hash", u.hash);
      f.createGroup("/unit");
      f.setAttr("/unit", "arm", u.arm.name);
      f.setAttr("/unit", "seed", u.seed);
      f.setAttr("/unit", "pretrain", u.arm.pretrain);
      f.setAttr("/unit", "pretrain_checkpoint", u.pretrain ? u.pretrain->path : std::string());
      f.setAttr("/unit", "objective", u.stage.objective);
      f.setAttr("/unit", "mode", u.stage.finetune);
      f.setAttr("/unit", "per_class", u.stage.perClass);
      f.setAttr("/unit", "train_images", r.data.train.size());
      f.setAttr("/unit", "val_accuracy", r.valAccuracy);
      f.setAttr("/unit", "train_seconds", trainSecs);
      f.setAttr("/unit", "eval_seconds", evalSecs);
      writeHistory(f, "/unit/train", r.history);
      writeEvaluation(f, "/unit/eval", ev);
    });
    char how[96];
    std::snprintf(how, sizeof how, "clean %.2f%%, worst at eps %g: %.2f%%, %lld failed checks", 100.0 * ev.cleanAccuracy,
                  ev.epsGrid.back(), 100.0 * ev.worstAccuracy.back(), static_cast<long long>(ev.failedChecks()));
    logUnit(what, how, since(u0));
  }

  ArmData data;
  for (const auto& u : units) data[u.arm.name].push_back(readUnit(u.path));
  std::vector<Comparison> comparisons;
  for (const auto& arm : arms)
    if (!arm.baseline.empty()) comparisons.push_back(compareArms(arm.name, data.at(arm.name), arm.baseline, data.at(arm.baseline)));

  writeH5Atomically(c.output, [&](H5File& f) {
    f.setAttr("/", "format", std::string(kExperimentFormat));
    f.setAttr("/", "config", c.toToml());
    f.setAttr("/", "config_hash", experimentHash(c));
    f.setAttr("/", "robustlab_version", std::string(kGitDescribe));
    f.setAttr("/", "libtorch_version", std::string(TORCH_VERSION));
    f.setAttr("/", "device", device.str());
    writeMachineFacts(f, "/");
    f.setAttr("/", "command", command);
    f.setAttr("/", "started", started);
    f.setAttr("/", "finished", utcNow());
    f.setAttr("/", "seconds", since(t0));
    f.writeTensor("/seeds", torch::tensor(seeds, torch::kInt64));
    for (const auto& p : pres) {
      H5File src(p.path, H5File::Mode::kRead);
      const std::string g = "/pretrain/" + p.variant + "/seed_" + std::to_string(p.seed);
      f.copyFrom(src, "/history", g + "/history");
      f.setAttr(g, "test_accuracy", src.attrDouble("/task", "test_accuracy"));
      f.setAttr(g, "checkpoint", p.path);
      f.setAttr(g, "seconds", src.attrDouble("/", "seconds"));
    }
    for (const auto& u : units) {
      H5File src(u.path, H5File::Mode::kRead);
      f.copyFrom(src, "/unit", "/arms/" + u.arm.name + "/seed_" + std::to_string(u.seed));
    }
    writeSummaries(f, c, data, comparisons);
  });

  const std::string text = summaryText(c, data, comparisons);
  std::printf("\n%s", text.c_str());
  {
    const std::string summaryPath = stem + ".summary.txt";
    std::ofstream(summaryPath + ".tmp") << text;
    fs::rename(summaryPath + ".tmp", summaryPath);
  }
  std::printf("wrote %s (%s)\n", c.output.c_str(), formatDuration(since(t0)).c_str());
}

}  // namespace robustlab
