#pragma once
// The one resolved configuration of a run: embedded defaults, then the TOML file, then --set
// overrides, then one validation. Printable (--dump-config) and stored with every result and
// checkpoint, so a run can be reproduced from its output alone.
#include "attacks/attack.h"
#include "attacks/evaluation/evaluation.h"
#include "data/sources.h"
#include "framework/models/model_spec.h"
#include "framework/runtime/runtime.h"
#include "framework/training/contrastive.h"
#include "framework/training/trainer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace robustlab {

struct DataConfig {
  DataSourceSpec source;
  int64_t trainLimit = 0;    ///< examples used from the training split after class selection (0: all)
  int64_t testLimit = 0;     ///< examples evaluated from the test split (0: all)
  double valFraction = 0.1;  ///< held-out share of the training examples, stratified
};

/// The training attack's defaults: as the evaluation's, but 10 steps (training pays for every step).
inline AttackOptions trainingAttackDefaults() {
  AttackOptions o;
  o.steps = 10;
  return o;
}

/// The three kinds of training stage, as their config sections are named.
enum class Stage { kTrain, kPretrain, kFinetune };
std::string stageName(Stage s);  ///< "train" | "pretrain" | "finetune"

/// One training stage: [train], [pretrain] or [finetune].
struct StageConfig {
  std::vector<int64_t> classes;  ///< task classes, relabelled 0..k-1 in this order (empty: all)
  int64_t perClass = 0;          ///< label budget per class (0: all)
  TrainOptions train;
  std::string objective = "standard";  ///< standard | pgd (Madry AT) | trades
  AttackOptions adversary = trainingAttackDefaults();  ///< eps, norm, steps, step size of the training attack
  double tradesBeta = 6.0;
  double martBeta = 6.0;               ///< mart: weight of the misclassification-aware KL
  double advFraction = 1.0;            ///< pgd, fgsm-rs: share of each batch made adversarial
  bool overfitCheck = true;            ///< fgsm-rs: catastrophic-overfitting check each epoch
  double awpGamma = 0.0;               ///< > 0: adversarial weight perturbation of this size
  int64_t awpWarmup = 0;               ///< epochs before the weight perturbation starts
  std::string mode = "supervised";     ///< pretrain: supervised | rotation | masked | simclr | adv-contrastive
  int64_t maskPatch = 7;               ///< pretrain masked: patch side in pixels
  double maskRatio = 0.5;              ///< pretrain masked: share of patches blanked
  /// pretrain simclr, adv-contrastive: temperature, projection width, views, dual BatchNorm (the
  /// adversary of adv-contrastive is `adversary`).
  ContrastiveOptions contrastive;
  std::string finetune = "full";       ///< finetune: full | linear (head only) | lp-ft (head, then all)
  LpFtOptions lpFt;                    ///< finetune lp-ft: the probe's epochs and learning rate
  std::string bnStats = "update";      ///< finetune: update | frozen (BatchNorm running statistics)
  std::string checkpoint;              ///< finetune: pre-trained backbone to start from
  std::string dataSource, dataDir;     ///< this stage's own data (data.source names; "": the experiment's [data])
};

struct ObjectiveParams;
/// What the stage's objective reads (framework/training/registry.h).
ObjectiveParams objectiveParams(const StageConfig& s);
/// Stage keys added after units were first keyed: part of a unit's key only where a stage sets them
/// to other than their default, so units computed before they existed keep their keys.
std::vector<std::string> stageKeysJoinedWhenSet();

/// Robustness beyond adversarial examples (Hendrycks, Lee and Mazeika 2019): the fine-tuning training
/// set's labels corrupted and its classes imbalanced (every arm alike), and the clean model's
/// calibration and out-of-distribution detection measured with every evaluation. All off by default.
/// The out-of-distribution sources that are generated, not read: gaussian, uniform, blobs.
std::vector<std::string> syntheticOodSources();

struct RobustnessConfig {
  double labelNoise = 0.0;                   ///< share of fine-tuning training labels made wrong
  std::string labelNoiseKind = "uniform";    ///< uniform | flip (data/task_shifts.h)
  double imbalance = 1.0;                    ///< largest / smallest fine-tuning class (1: as the task is)
  bool calibration = false;                  ///< RMS calibration error, ECE, NLL, Brier, reliability bins
  int64_t calibrationBins = 15;              ///< equal-mass bins
  std::vector<std::string> oodSources;       ///< gaussian | uniform | blobs | a data source of the same image shape
  int64_t oodLimit = 1000;                   ///< out-of-distribution images per source
  std::vector<std::string> corruptions;      ///< common corruptions (attacks/corruptions), or ["all"]; every severity 1..5
  bool isDefault() const;
  /// `corruptions` with "all" expanded, in registry order.
  std::vector<std::string> corruptionList() const;
};

struct AttackConfig {
  std::vector<std::string> attacks{"fgsm", "pgd", "apgd-ce"};  ///< registry names (attacks/registry.h)
  std::vector<double> eps{0.0, 0.05, 0.1, 0.2};
  /// norm, steps, step sizes, restarts, random start, targeting, seed; `options.eps` is not a
  /// setting: the evaluation sets it to each value of `eps` in turn.
  AttackOptions options;
  int64_t batchSize = 500;
  int64_t keepExamples = 8;  ///< -1: all ("all" in configs)
  bool sanityChecks = true;
  /// The evaluation this section describes, in `precision`.
  EvalOptions evalOptions(Precision precision) const;
};

/// One arm of an experiment: how the compared model is made.
struct ArmConfig {
  std::string name;
  std::string pretrain = "none";  ///< "none" (from scratch) or a pre-training variant's name
  std::string objective;          ///< fine-tuning objective; "" = [finetune].objective
  std::string mode;               ///< full | linear | lp-ft; "" = [finetune].mode
  int64_t perClass = -1;          ///< label budget; -1 = [finetune].per_class
  std::string baseline;           ///< arm compared against in the summary ("" = none)
  double labelNoise = -1;         ///< -1 = [robustness].label_noise
  double imbalance = -1;          ///< -1 = [robustness].imbalance
  double advFraction = -1;        ///< -1 = [finetune].adv_fraction
  double awpGamma = -1;           ///< -1 = [finetune].awp_gamma
  int64_t awpWarmup = -1;         ///< -1 = [finetune].awp_warmup
};

struct Config {
  std::string name = "default";
  uint64_t seed = 0;
  std::vector<int64_t> seeds;  ///< run: seeds of every arm (empty = [seed])
  DeviceChoice device = DeviceChoice::kAuto;  ///< resolved by setUpRuntime (experiments/plan/pipeline.h)
  int64_t threads = 0;       ///< 0: the measured default (1 on CPU)
  PrecisionChoice precision = PrecisionChoice::kFp32;
  /// `precision` resolved once, when the config is read ("auto": what this machine computes natively);
  /// every stage, evaluation, cache key and results file uses this one.
  Precision resolvedPrecision = Precision::kFp32;
  std::string output = "results/default.h5";
  /// run: keep each arm x seed's trained model as a checkpoint beside its unit file (<unit>.model.h5).
  bool keepModels = true;
  DataConfig data;
  ModelSpec model;
  StageConfig train, pretrain, finetune;
  /// run: named pre-training variants, each [pretrain] with its own overrides
  /// ([pretrain.variants.NAME]); empty = one variant "base" = [pretrain].
  std::vector<std::pair<std::string, StageConfig>> variants;
  /// run: the arms compared; empty = "scratch" and "pretrained" (variant base, baseline scratch).
  std::vector<ArmConfig> arms;
  AttackConfig attack;
  RobustnessConfig robustness;

  /// The seeds `run` uses.
  std::vector<int64_t> runSeeds() const { return seeds.empty() ? std::vector<int64_t>{static_cast<int64_t>(seed)} : seeds; }
  /// The variants and arms `run` uses (defaults filled in).
  std::vector<std::pair<std::string, StageConfig>> runVariants() const;
  std::vector<ArmConfig> runArms() const;
  /// [robustness] with an arm's own label_noise and imbalance in place.
  RobustnessConfig robustnessFor(const ArmConfig& arm) const;
  /// [finetune] with the arm's own objective, mode, label budget and objective keys.
  StageConfig finetuneFor(const ArmConfig& arm) const;
  /// A copy with `seed` set everywhere it is used.
  Config withSeed(uint64_t s) const;

  /// Full TOML of every key, defaults included.
  std::string toToml() const;
};

/// TOML of one section, as Config::toToml writes it (used to hash what a unit of work depends on).
std::string stageToToml(const std::string& section, const StageConfig& s);
std::string dataToToml(const DataConfig& data);
std::string attackToToml(const AttackConfig& attack);
std::string robustnessToToml(const RobustnessConfig& r);

/// An override ("key=value") given by a command's flag: errors about it name `origin` ("--eps 0.1,0.05")
/// instead of "--set key=value". What it returns goes where a "key=value" override goes.
std::string overrideFrom(const std::string& origin, const std::string& keyValue);
inline constexpr char kOverrideOrigin = '\x1f';

/// The embedded default experiment.
const std::string& defaultConfigText();

/// Resolves a config: embedded defaults, then `path` (empty: none), then each "key=value" override
/// (key dotted, value in TOML syntax; bare words are taken as strings). Errors are ConfigError with
/// one line naming the file, the field and what was expected.
Config loadConfig(const std::string& path, const std::vector<std::string>& overrides = {});
/// Resolves a config on top of a stored one (a checkpoint's): `baseText` (named `baseWhat` in
/// errors), then the keys of `path` (empty: none) merged in table by table, then the overrides.
Config loadConfigOver(const std::string& baseText, const std::string& baseWhat, const std::string& path,
                      const std::vector<std::string>& overrides = {});
/// Parses config text (used for checkpoints' stored configs and tests).
Config parseConfig(const std::string& text, const std::string& what, const std::vector<std::string>& overrides = {});

}  // namespace robustlab
