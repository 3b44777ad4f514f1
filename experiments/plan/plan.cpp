#include "experiments/plan/plan.h"

#include "attacks/evaluation/evaluation.h"
#include "data/atomic_write.h"
#include "data/h5io.h"
#include "experiments/plan/experiment_summary.h"
#include "experiments/plan/file_lock.h"
#include "experiments/plan/pipeline.h"
#include "experiments/plan/results_io.h"
#include "experiments/plan/robustness_eval.h"
#include "experiments/plan/robustbench.h"
#include "experiments/plan/version.h"
#include "framework/distributed/communicator.h"
#include "framework/models/kernels/conv_kernels.h"
#include "framework/models/kernels/direct_conv.h"
#include "framework/runtime/cpu_info.h"
#include "framework/runtime/progress.h"

#include <torch/version.h>

#include <chrono>
#include <memory>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <sstream>
#include <stdexcept>

namespace robustlab {
namespace fs = std::filesystem;
namespace {

// Part of every cache key. Bump when what a unit file holds changes, or when a code change alters
// the numbers a unit computes, so old units are recomputed instead of reused.
// 2: input gradients of one-channel first convolutions by im2col (adversarial examples differ at
//    float rounding level).
// 3: one-channel first convolutions by robustlab's own kernels on AVX-512 CPUs, forward and input
//    gradient (the same sums in another order: trained weights and examples differ at rounding level).
// 4: keys hold the resolved precision ("auto" resolved), the device and the CPU kernel path, so units
//    computed in bf16 and fp32, or on different kernel paths, never share a key (numbers unchanged).
constexpr const char* kUnitFormat = "robustlab-unit-4";

/// Everything a unit's numbers depend on, besides its own stage.
std::string commonKey(const Config& c, const std::string& device) {
  std::string key = std::string(kUnitFormat) + "\nprecision = " + precisionName(c.resolvedPrecision) + "\ndevice = " + device + "\n";
  if (device == "cpu") key += "kernel_path = " + (singleChannelKernelsAvailable() ? kernelPathName(kernelPath()) : std::string("libtorch")) + "\n";
  // The avx2 path's multi-channel fp32 kernels sum in another order than oneDNN's: units computed with
  // and without them are kept apart (keys on other paths are unchanged).
  if (device == "cpu" && kernelPath() == KernelPath::kAvx2) key += std::string("multi_channel_kernels = ") + (directConvKernelsOn() ? "direct-1" : "off") + "\n";
  // A TorchScript model's scratch stages start from a fresh initialisation, no longer from the file's
  // weights: units computed before that are not reused (other models' keys are unchanged).
  if (c.model.arch == "torchscript") key += "torchscript_start = fresh-1\n";
  return key + dataToToml(c.data) + c.model.backboneKey();
}

/// A stage's part of a unit key. TRADES and the L2 adversarial contrastive view run in Pgd's loop: the
/// TRADES step projects onto the ulp-exact box and its L2 step adds as the attacks do, the L2 view
/// starts uniformly in the ball; units computed before that are not reused (other stages' keys unchanged).
/// `text` without the lines of `keys` that read as they do in `defaults`: keys added after units were
/// first keyed join a unit's key only where they are set, so units computed before keep their keys.
std::string withoutDefaultLines(const std::string& text, const std::string& defaults, const std::vector<std::string>& keys) {
  std::istringstream in(text);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    bool skip = false;
    for (const auto& k : keys) skip |= line.rfind(k + " = ", 0) == 0 && defaults.find("\n" + line + "\n") != std::string::npos;
    if (!skip) out += line + "\n";
  }
  return out;
}

std::string stageKey(const std::string& section, const StageConfig& s) {
  const bool moved = s.objective == "trades" || (s.mode == "adv-contrastive" && s.adversary.norm == Norm::kL2);
  return withoutDefaultLines(stageToToml(section, s), stageToToml(section, StageConfig{}), stageKeysJoinedWhenSet()) +
         (moved ? "training_attack = pgd-loop-1\n" : "");
}

/// The evaluation's part of a unit key: [attack], eot_iter only where set.
std::string attackKey(const AttackConfig& a) { return withoutDefaultLines(attackToToml(a), "\n" + attackToToml(AttackConfig{}), {"eot_iter"}); }

void planPretrainings(Plan& p, const std::string& key) {
  const Config& c = p.config;
  const auto variants = c.runVariants();
  for (const auto& arm : c.runArms()) {
    if (arm.pretrain == "none" || arm.pretrain == kScriptWeights) continue;
    for (int64_t seed : c.runSeeds()) {
      bool have = false;
      for (const auto& u : p.units) have |= u.name == arm.pretrain && u.seed == seed;
      if (have) continue;
      Unit u;
      u.kind = Unit::Kind::kPretrain;
      u.name = arm.pretrain;
      for (const auto& [n, v] : variants)
        if (n == arm.pretrain) u.stage = v;
      u.seed = seed;
      u.hash = stableHash(key + stageKey("pretrain", u.stage) + "seed=" + std::to_string(seed));
      u.path = p.cacheDir + "/pretrain-" + u.name + "-" + u.hash + ".h5";
      p.units.push_back(u);
    }
  }
}

void planArms(Plan& p, const std::string& key) {
  const Config& c = p.config;
  const size_t pretrainings = p.units.size();
  for (const auto& arm : c.runArms()) {
    for (int64_t seed : c.runSeeds()) {
      Unit u;
      u.kind = Unit::Kind::kArm;
      u.name = arm.name;
      u.arm = arm;
      u.stage = c.finetuneFor(arm);
      u.seed = seed;
      for (size_t i = 0; i < pretrainings; ++i)
        if (p.units[i].name == arm.pretrain && p.units[i].seed == seed) u.pretrain = static_cast<int64_t>(i);
      const std::string pre = u.pretrain >= 0 ? p.units[static_cast<size_t>(u.pretrain)].hash : arm.pretrain == kScriptWeights ? std::string("torchscript-weights") : std::string("none");
      // [robustness] joins the key only when set, so the keys of experiments without it are unchanged.
      const RobustnessConfig rb = c.robustnessFor(arm);
      const std::string robustness = rb.isDefault() ? "" : robustnessToToml(rb);
      u.hash = stableHash(key + stageKey("finetune", u.stage) + attackKey(c.attack) + robustness + "pretrain=" + pre + "\nseed=" + std::to_string(seed));
      u.path = p.unitsDir + "/" + arm.name + "-seed" + std::to_string(seed) + "-" + u.hash + ".h5";
      p.units.push_back(u);
    }
  }
}

/// The config of one seed, with the training runtime (threads) set up for it.
Config forSeed(const Config& c, int64_t seed) {
  const Config cs = c.withSeed(static_cast<uint64_t>(seed));
  setUpRuntime(cs);
  return cs;
}

void computePretraining(const Plan& p, const Unit& u, torch::Device device) {
  const auto t0 = std::chrono::steady_clock::now();
  const Config cs = forSeed(p.config, u.seed);
  StageResult r = runStage(cs, u.stage, Stage::kPretrain, "", "pretrain " + u.name, device);
  const double secs = secondsSince(t0);
  if (!writesResults()) return;
  saveStage(u.path, r, cs, u.stage, Stage::kPretrain, [&](H5File& f) {
    f.setAttr("/", "unit_hash", u.hash);
    f.setAttr("/", "variant", u.name);
    f.setAttr("/", "seed", u.seed);
    f.setAttr("/", "seconds", secs);
  });
}

void writeArmUnit(const Unit& u, const std::string& pretrainPath, const StageResult& r, const EvalResult& ev, const RobustnessResult& rb,
                  const RobustnessConfig& rbConfig, double trainSecs, double evalSecs) {
  writeH5Atomically(u.path, [&](H5File& f) {
    f.setAttr("/", "unit_hash", u.hash);
    // Which test images were evaluated: their places in the data source's test split, in order.
    if (r.data.test.sourceIndex.defined()) f.writeTensor("/test_indices", r.data.test.sourceIndex.contiguous());
    f.createGroup("/unit");
    f.setAttr("/unit", "arm", u.arm.name);
    f.setAttr("/unit", "seed", u.seed);
    f.setAttr("/unit", "pretrain", u.arm.pretrain);
    f.setAttr("/unit", "pretrain_checkpoint", pretrainPath);
    f.setAttr("/unit", "initialisation", r.initialisation);
    f.setAttr("/unit", "objective", u.stage.objective);
    f.setAttr("/unit", "mode", u.stage.finetune);
    f.setAttr("/unit", "per_class", u.stage.perClass);
    f.setAttr("/unit", "train_images", r.data.train.size());
    f.setAttr("/unit", "val_accuracy", r.valAccuracy);
    f.setAttr("/unit", "train_seconds", trainSecs);
    f.setAttr("/unit", "eval_seconds", evalSecs);
    // Computed as data-parallel ranks: how many (absent: one process). Not part of the unit's key.
    if (const auto comm = worldCommunicator(); comm && comm->size() > 1) f.setAttr("/unit", "ranks", static_cast<int64_t>(comm->size()));
    writeHistory(f, "/unit/train", r.history);
    writeEvaluation(f, "/unit/eval", ev);
    writeRobustness(f, "/unit/robustness", rbConfig, rb);
  });
}

std::string computeArm(const Plan& p, const Unit& u, torch::Device device) {
  std::string pretrainPath;
  if (u.pretrain >= 0) {
    const Unit& pre = p.units[static_cast<size_t>(u.pretrain)];
    if (!unitDone(pre)) throw std::runtime_error(u.label() + ": its pre-training (" + pre.label() + ") is not done: " + pre.path);
    pretrainPath = pre.path;
  }
  const auto t0 = std::chrono::steady_clock::now();
  Config cs = forSeed(p.config, u.seed);
  cs.robustness = cs.robustnessFor(u.arm);  // the arm's own label noise and imbalance
  StageResult r = runStage(cs, u.stage, Stage::kFinetune, pretrainPath, u.arm.name, device, u.arm.pretrain == kScriptWeights);
  const double trainSecs = secondsSince(t0);
  useEvalThreads(cs);
  const auto e0 = std::chrono::steady_clock::now();
  const EvalResult ev = evaluate(*r.model, r.data.test, evalOptionsFrom(cs), device);
  // Data-parallel: the ranks share the corruptions; every write is rank 0's alone.
  const RobustnessResult rb = evaluateRobustness(*r.model, r.data.test, r.corruptedLabels, r.trainClassCounts, cs, device, severalRanks(worldCommunicator()));
  if (!writesResults()) return "";
  // The model first, then the unit file: a done unit's model is there (when kept).
  if (p.config.keepModels) saveStage(modelPathOf(u), r, cs, u.stage, Stage::kFinetune, [&](H5File& f) { f.setAttr("/", "unit_hash", u.hash); });
  writeArmUnit(u, pretrainPath, r, ev, rb, cs.robustness, trainSecs, secondsSince(e0));
  char how[96];
  std::snprintf(how, sizeof how, "clean %.2f%%, worst at eps %g: %.2f%%, %lld failed checks", 100.0 * ev.cleanAccuracy, ev.epsGrid.back(),
                100.0 * ev.worstAccuracy.back(), static_cast<long long>(ev.failedChecks()));
  return how;
}

}  // namespace

std::string modelPathOf(const Unit& u) { return u.path.substr(0, u.path.size() - 3) + ".model.h5"; }

std::string Unit::label() const {
  return std::string(kind == Kind::kPretrain ? "pretrain " : "arm ") + name + " seed " + std::to_string(seed);
}

std::vector<size_t> Plan::indicesOf(Unit::Kind kind) const {
  std::vector<size_t> out;
  for (size_t i = 0; i < units.size(); ++i)
    if (units[i].kind == kind) out.push_back(i);
  return out;
}

Plan makePlan(const Config& c, torch::Device device) {
  Plan p;
  p.config = c;
  p.device = device.is_cuda() ? "cuda" : "cpu";
  const fs::path out(c.output);
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  p.stem = (out.parent_path() / out.stem()).string();
  p.unitsDir = p.stem + ".units";
  p.cacheDir = (out.parent_path() / "cache").string();
  fs::create_directories(p.unitsDir);
  fs::create_directories(p.cacheDir);
  removeStaleTemporaries(p.unitsDir);  // left by a killed run
  removeStaleTemporaries(p.cacheDir);
  const std::string key = commonKey(c, p.device);
  planPretrainings(p, key);
  planArms(p, key);
  bool fresh = !p.indicesOf(Unit::Kind::kPretrain).empty();
  for (const auto& arm : c.runArms()) fresh |= arm.pretrain == "none";
  if (fresh) checkFreshStart(c);  // before any unit runs
  checkOodSources(c);             // so is a missing or misshapen out-of-distribution data source
  return p;
}

bool unitDone(const Unit& u) { return h5RootAttrEquals(u.path, "unit_hash", u.hash); }

double computeUnit(const Plan& p, size_t i, torch::Device device, std::string* how) {
  const Unit& u = p.units.at(i);
  if (unitDone(u)) return 0;
  // Data-parallel ranks: rank 0 takes the lock and decides for all (the others would wait for it forever).
  const bool writer = writesResults();
  std::unique_ptr<FileLock> lock;
  if (writer) lock = std::make_unique<FileLock>(u.path + ".lock", FileLock::Wait::kYes);  // a second process waits, then finds it done
  if (rankZeroSays(writer && unitDone(u))) return 0;  // another process computed it while we waited
  const auto t0 = std::chrono::steady_clock::now();
  if (u.kind == Unit::Kind::kPretrain) {
    computePretraining(p, u, device);
    if (how) *how = "trained";
  } else {
    const std::string h = computeArm(p, u, device);
    if (how) *how = h;
  }
  return std::max(secondsSince(t0), 1e-9);
}

/// <stem>.robustbench.json: a RobustBench-style entry per arm x seed, from the unit files.
void writeRunEntries(const Plan& p, const ArmData& data) {
  const Config& c = p.config;
  const std::string arch = entryArchitecture(c.model);
  std::vector<std::pair<EvalNumbers, ModelEntry>> entries;
  for (const auto& arm : c.runArms()) {
    for (const ArmSeedData& d : data.at(arm.name)) {
      EvalNumbers n;
      n.norm = c.attack.options.norm;
      n.precision = precisionName(c.resolvedPrecision);
      n.eps = c.attack.eps;
      n.worst = d.worst;
      n.perAttack = d.perAttack;
      n.clean = d.clean;
      n.examples = d.worstRobust.size(0);
      n.failedChecks = d.failedChecks;
      const std::string name = c.name + "/" + arm.name + "/seed_" + std::to_string(d.seed);
      entries.emplace_back(n, ModelEntry{name, c.data.source.source, arch, experimentHash(c), entryPreprocessing(c.model)});
    }
  }
  writeRobustBenchJson(p.stem + ".robustbench.json", entries);
}

void mergeResults(const Plan& p, const std::string& command, const std::string& started, double seconds) {
  const Config& c = p.config;
  for (const auto& u : p.units)
    if (!unitDone(u)) throw std::runtime_error(c.output + ": cannot merge, " + u.label() + " is not done (" + u.path + ")");
  ArmData data;
  for (const auto& u : p.units)
    if (u.kind == Unit::Kind::kArm) data[u.arm.name].push_back(readUnit(u.path));
  std::vector<Comparison> comparisons;
  for (const auto& arm : c.runArms())
    if (!arm.baseline.empty()) comparisons.push_back(compareArms(arm.name, data.at(arm.name), arm.baseline, data.at(arm.baseline)));

  writeH5Atomically(c.output, [&](H5File& f) {
    f.setAttr("/", "format", std::string(kExperimentFormat));
    f.setAttr("/", "config", c.toToml());
    f.setAttr("/", "config_hash", experimentHash(c));
    f.setAttr("/", "robustlab_version", std::string(kGitDescribe));
    f.setAttr("/", "libtorch_version", std::string(TORCH_VERSION));
    f.setAttr("/", "device", p.device);
    f.setAttr("/", "precision", precisionName(c.resolvedPrecision));
    f.setAttr("/", "precision_requested", precisionChoiceName(c.precision));
    writeMachineFacts(f, "/");
    f.setAttr("/", "command", command);
    f.setAttr("/", "started", started);
    f.setAttr("/", "finished", utcNow());
    f.setAttr("/", "seconds", seconds);
    f.writeTensor("/seeds", torch::tensor(c.runSeeds(), torch::kInt64));
    for (const auto& u : p.units) {
      H5File src(u.path, H5File::Mode::kRead);
      if (u.kind == Unit::Kind::kArm) {
        const std::string g = "/arms/" + u.arm.name + "/seed_" + std::to_string(u.seed);
        f.copyFrom(src, "/unit", g);
        // What a cross-check needs, outside /arms (the experiment's numbers): the images and the model.
        const std::string e = "/evaluated/" + u.arm.name + "/seed_" + std::to_string(u.seed);
        f.createGroup(e);
        if (src.has("/test_indices")) f.copyFrom(src, "/test_indices", e + "/test_indices");
        if (h5RootAttrEquals(modelPathOf(u), "unit_hash", u.hash)) f.setAttr(e, "model_checkpoint", modelPathOf(u));
        continue;
      }
      const std::string g = "/pretrain/" + u.name + "/seed_" + std::to_string(u.seed);
      f.copyFrom(src, "/history", g + "/history");
      f.setAttr(g, "test_accuracy", src.attrDouble("/task", "test_accuracy"));
      f.setAttr(g, "checkpoint", u.path);
      f.setAttr(g, "seconds", src.attrDouble("/", "seconds"));
    }
    writeSummaries(f, c, data, comparisons);
  });
  const std::string text = summaryText(c, data, comparisons);
  std::printf("\n%s", text.c_str());
  writeTextAtomically(p.stem + ".summary.txt", text);
  writeRunEntries(p, data);
}

std::string workerConfigText(const Plan& p) {
  Config c = p.config;
  c.precision = c.resolvedPrecision == Precision::kBf16 ? PrecisionChoice::kBf16 : PrecisionChoice::kFp32;
  c.device = p.device == "cuda" ? DeviceChoice::kCuda : DeviceChoice::kCpu;
  c.output = fs::absolute(c.output).string();
  // The output name is the user's text: in the comment its control characters are escaped, so a
  // newline cannot start a line of TOML.
  std::string name;
  for (unsigned char ch : p.config.output) {
    if (ch >= 0x20 && ch != 0x7f) {
      name += static_cast<char>(ch);
      continue;
    }
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", ch);
    name += buf;
  }
  return "# written by robustlab for the worker processes of " + name + "\n" + c.toToml();
}

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

std::string utcNow() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return buf;
}

}  // namespace robustlab
