#include "experiments/plan/pipeline.h"

#include "framework/distributed/communicator.h"

#include "data/h5io.h"
#include "data/task_shifts.h"
#include "data/tasks.h"
#include "framework/models/checkpoint.h"
#include "framework/models/torchscript.h"
#include "framework/training/augment.h"
#include "framework/training/registry.h"
#include "framework/runtime/progress.h"
#include "framework/runtime/runtime.h"

#include <cstdio>
#include <map>
#include <set>
#include <memory>
#include <stdexcept>
#include <thread>

namespace robustlab {

Dataset cachedSplit(const DataSourceSpec& spec, const std::string& split) {
  static std::map<std::string, Dataset> cache;
  const std::string key = spec.source + "|" + spec.dir + "|" + spec.trainFile + "|" + spec.testFile + "|" + split;
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, loadSplit(spec, split)).first;
  return it->second;
}

namespace {

std::unique_ptr<TrainingObjective> objectiveFor(const StageConfig& s, Stage section, ClassifierImpl& model) {
  const ObjectiveParams p = objectiveParams(s);
  if (section == Stage::kPretrain) return makePretrainObjective(s.mode, s.objective, p, model);
  return makeObjective(s.objective, p, model);
}

/// The architecture and its parameter count, once per process and model shape (stderr, not in quiet runs).
void announceModel(ClassifierImpl& model) {
  static std::set<std::string> seen;
  const ModelSpec& s = model.spec();
  if (Progress::quiet() || !seen.insert(s.toToml()).second) return;
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  std::string arch = s.arch;
  if (s.arch == "wrn") arch = "WRN-" + std::to_string(s.wrnDepth) + "-" + std::to_string(s.wrnWidth);
  if (s.arch == "resnet") arch = "pre-activation ResNet (width " + std::to_string(s.resnetWidth) + ", " + std::to_string(s.resnetBlocks.size()) + " stages)";
  if (s.arch == "torchscript") arch = "TorchScript " + s.torchscript;
  std::fprintf(stderr, "model: %s on %lld x %lld x %lld inputs, %lld classes: %lld parameters\n", arch.c_str(), static_cast<long long>(s.inChannels),
               static_cast<long long>(s.height), static_cast<long long>(s.width), static_cast<long long>(s.numClasses), static_cast<long long>(n));
}

uint64_t stageSeed(const Config& c, Stage section) {
  // Distinct but fixed seeds per stage, all derived from the one config seed.
  const uint64_t salt = section == Stage::kPretrain ? 1 : section == Stage::kFinetune ? 2 : 3;
  return c.seed * 1000003ULL + salt;
}

/// Sets up the model's starting weights (see runStage) and says what they are; `seed` is the config's
/// (the stage's own generator seed is derived from it).
std::string startModel(ClassifierImpl& m, const std::string& backbone, bool scriptWeights, uint64_t seed) {
  const bool script = m.spec().arch == "torchscript";
  if (!backbone.empty()) {
    loadWeights(backbone, m, /*backboneOnly=*/true);
    // A cut script's head came from its own (trained) last layer: a new task's head starts fresh.
    if (script && m.head()) m.head()->reset_parameters();
    return "pre-trained: the backbone of " + backbone;
  }
  if (scriptWeights) {
    if (!script) throw std::invalid_argument("the TorchScript file's own weights were asked for, but model.arch is '" + m.spec().arch + "'");
    return "the TorchScript file's own weights (" + m.spec().torchscript + ")";
  }
  return m.initialiseFresh() + ", seed " + std::to_string(seed);
}

}  // namespace

void checkFreshStart(const Config& c) {
  if (c.model.arch != "torchscript") return;
  const ModelSpec& s = c.model;
  ScriptModel script(scriptBytesFor(s), s.torchscript, s.cut, s.rangeLo, s.rangeHi);
  // What ClassifierImpl::initialiseFresh will do, on a throwaway copy: the untrained model must fit the
  // script, or every module holding parameters must have a rule.
  if (!s.torchscriptInit.empty()) script->copyWeightsFrom(scriptInitBytesFor(s), s.torchscriptInit);
  else script->requireInitRules();
}

const StageConfig& stageOf(const Config& c, Stage section) {
  return section == Stage::kTrain ? c.train : section == Stage::kPretrain ? c.pretrain : c.finetune;
}

TaskData loadTask(const Config& c, const StageConfig& stage, bool withTest) {
  TaskData t;
  // A stage may read its own data set (pre-train on one, fine-tune on another).
  DataSourceSpec source = c.data.source;
  if (!stage.dataSource.empty()) source = DataSourceSpec{stage.dataSource, stage.dataDir, "", ""};
  Dataset full = selectClasses(cachedSplit(source, "train"), stage.classes);
  full = limitPerClass(full, stage.perClass, c.seed + 11);
  full = sampleSubset(full, c.data.trainLimit, c.seed + 13);
  std::tie(t.train, t.val) = splitValidation(full, c.data.valFraction, c.seed + 17);
  if (withTest) {
    t.test = selectClasses(cachedSplit(source, "test"), stage.classes);
    t.test = sampleSubset(t.test, c.data.testLimit, c.seed + 19);
  }
  return t;
}

ModelSpec specFor(const Config& c, const Dataset& d) {
  ModelSpec s = c.model;
  const auto& shape = c.model.inputShape;
  if (!shape.empty() && (shape[0] != d.channels() || shape[1] != d.height() || shape[2] != d.width()))
    throw std::invalid_argument("model.input_shape: declared [" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + ", " +
                                std::to_string(shape[2]) + "] but data.source '" + c.data.source.source + "' has " +
                                std::to_string(d.channels()) + " x " + std::to_string(d.height()) + " x " +
                                std::to_string(d.width()) + " images");
  s.inChannels = d.channels();
  s.height = d.height();
  s.width = d.width();
  s.numClasses = d.numClasses;
  return s;
}

int coresPerRank() {
  const int cores = usableCores();
  const auto comm = worldCommunicator();
  // Ranks on one host share its cores, unless a launcher (srun's binding) gave each its own already.
  return comm ? std::max(1, cores / ranksSharingCpus(comm->info(), cores)) : cores;
}

torch::Device setUpRuntime(const Config& c) {
  // threads = N: N everywhere; 0: the measured defaults, with the attack steps' batches split across
  // every core (framework/runtime/chunks.h), which is what makes 1-thread fp32 training use them.
  const auto comm = worldCommunicator();
  if (comm) comm->checkSame("config", c.toToml());  // every rank must train the same thing
  if (c.threads > 0) configureThreads(static_cast<int>(c.threads));
  else configureThreads(defaultTrainThreads(c.resolvedPrecision), coresPerRank());
  return resolveDevice(c.device);
}

void useEvalThreads(const Config& c) {
  if (c.threads > 0) configureThreads(static_cast<int>(c.threads));
  else configureThreads(defaultEvalThreads(), coresPerRank());
}

bool writesResults() {
  const auto comm = worldCommunicator();
  return !comm || comm->rank() == 0;
}

bool rankZeroSays(bool value) {
  const auto comm = worldCommunicator();
  if (!comm) return value;
  auto flag = torch::tensor({value ? 1 : 0}, torch::kInt32);
  comm->broadcast({flag}, 0);
  return flag.item<int>() != 0;
}

StageResult runStage(const Config& c, Stage section, const std::string& backbone, const std::string& label,
                     torch::Device device, bool scriptWeights) {
  return runStage(c, stageOf(c, section), section, backbone, label, device, scriptWeights);
}

StageResult runStage(const Config& c, const StageConfig& stage, Stage section, const std::string& backbone,
                     const std::string& label, torch::Device device, bool scriptWeights) {
  StageResult r;
  r.data = loadTask(c, stage, /*withTest=*/true);
  if (section == Stage::kFinetune) {
    // [robustness]: the fine-tuning training split made imbalanced, then its labels corrupted (the
    // validation and test splits keep their clean labels).
    const RobustnessConfig& rb = c.robustness;
    if (rb.imbalance != 1.0) r.data.train = imbalance(r.data.train, rb.imbalance, c.seed + 23);
    r.trainClassCounts = torch::bincount(r.data.train.labels, {}, r.data.train.numClasses);
    if (rb.labelNoise > 0) std::tie(r.data.train, r.corruptedLabels) = corruptLabels(r.data.train, rb.labelNoise, parseLabelNoise(rb.labelNoiseKind), c.seed + 29);
  }
  seedEverything(stageSeed(c, section));
  r.model = Classifier(specFor(c, r.data.train));
  announceModel(*r.model);
  r.initialisation = startModel(*r.model, backbone, scriptWeights, c.seed);
  r.model->to(device);
  // Every random number of the stage comes from the config's seed, whatever the stage table says.
  StageConfig seeded = stage;
  seeded.adversary.seed = c.seed;
  auto objective = objectiveFor(seeded, section, *r.model);
  TrainOptions opt = stage.train;
  opt.seed = stageSeed(c, section);
  opt.comm = worldCommunicator();
  const bool finetuning = section == Stage::kFinetune;
  opt.headOnly = finetuning && stage.finetune == "linear";
  opt.freezeBatchNorm = finetuning && stage.bnStats == "frozen";
  if (opt.freezeBatchNorm && r.model->spec().arch == "torchscript")
    throw std::invalid_argument("finetune.bn_stats: \"frozen\" is not available for a TorchScript model (its BatchNorm layers are inside the script), expected \"update\"");
  opt.label = label;
  opt.precision = c.resolvedPrecision;
  // The contrastive modes draw their own views (crop, flip, jitter): "auto" adds nothing on top.
  const bool ownViews = section == Stage::kPretrain && (stage.mode == "simclr" || stage.mode == "adv-contrastive");
  opt.augment = ownViews && stage.train.augment == "auto"
                    ? "none"
                    : resolveAugment(stage.train.augment, stage.dataSource.empty() ? c.data.source.source : stage.dataSource);
  if (finetuning && stage.finetune == "lp-ft") r.history = trainLpFt(*r.model, *objective, r.data.train, r.data.val, opt, stage.lpFt, device);
  else r.history = train(*r.model, *objective, r.data.train, r.data.val, opt, device);
  r.valAccuracy = r.data.val.size() ? sharedAccuracy(*r.model, r.data.val, device, worldCommunicator().get()) : NAN;
  r.testAccuracy = sharedAccuracy(*r.model, r.data.test, device, worldCommunicator().get());
  return r;
}

void saveStage(const std::string& path, StageResult& s, const Config& c, const StageConfig& stage, Stage section,
               const std::function<void(H5File&)>& extra) {
  saveCheckpoint(path, *s.model, c.toToml(), [&](H5File& f) {
    f.setAttr("/", "stage", stageName(section));
    f.writeTensor("/task/classes", torch::tensor(stage.classes.empty() ? std::vector<int64_t>{} : stage.classes, torch::kInt64));
    f.setAttr("/task", "data_source", c.data.source.source);
    f.setAttr("/task", "val_accuracy", s.valAccuracy);
    f.setAttr("/task", "test_accuracy", s.testAccuracy);
    f.setAttr("/task", "initialisation", s.initialisation);
    writeHistory(f, "/history", s.history);
    // Trained as data-parallel ranks: how many (their numbers depend on it; absent: one process).
    if (const auto comm = worldCommunicator(); comm && comm->size() > 1) f.setAttr("/", "ranks", static_cast<int64_t>(comm->size()));
    if (extra) extra(f);
  });
}

EvalOptions evalOptionsFrom(const Config& c) {
  EvalOptions e = c.attack.evalOptions(c.resolvedPrecision);
  e.comm = worldCommunicator();
  return e;
}

}  // namespace robustlab
