#pragma once
// From a resolved config to data, models, trained stages and evaluations: the pieces the
// subcommands and the `run` experiment are made of.
#include "attacks/evaluation/evaluation.h"
#include "framework/config/config.h"
#include "framework/models/model.h"
#include "framework/training/trainer.h"

#include <functional>
#include <string>

namespace robustlab {

class H5File;

struct TaskData {
  Dataset train, val, test;
};

/// A data source's split, loaded once per process: a run of many units reads each file once.
Dataset cachedSplit(const DataSourceSpec& spec, const std::string& split);

/// The stage's task: its classes (relabelled), label budget, validation split and test examples.
TaskData loadTask(const Config& c, const StageConfig& stage, bool withTest);

/// The config's architecture, sized for `d` (input shape, class count).
ModelSpec specFor(const Config& c, const Dataset& d);

struct StageResult {
  Classifier model{nullptr};
  TrainHistory history;
  TaskData data;
  double valAccuracy = NAN;   ///< clean, on the validation split (NaN when there is none)
  double testAccuracy = NAN;  ///< clean, on the test split
  std::string initialisation;  ///< what the model started from ("fresh: ...", "pre-trained: ...", ...)
  torch::Tensor corruptedLabels;  ///< fine-tuning with [robustness] label_noise: which training labels were made wrong
  torch::Tensor trainClassCounts; ///< fine-tuning: training examples per class, true labels (after any imbalance)
};

/// Trains one stage. `kind` picks the objective family (pre-training modes apply to kPretrain only),
/// linear probing (kFinetune) and the seed stream; `backbone` (may be empty) is a checkpoint whose backbone initialises the model.
/// `label` names the progress bar. Without a backbone the model starts from scratch, whatever its kind
/// (a TorchScript model freshly initialised: ClassifierImpl::initialiseFresh), unless `scriptWeights`
/// asks for a TorchScript model's own weights, the file's.
StageResult runStage(const Config& c, const StageConfig& stage, Stage kind, const std::string& backbone,
                     const std::string& label, torch::Device device, bool scriptWeights = false);
/// The same for the config's own [train], [pretrain] or [finetune] section.
StageResult runStage(const Config& c, Stage section, const std::string& backbone, const std::string& label,
                     torch::Device device, bool scriptWeights = false);

/// The reserved arm `pretrain` value (and `--from-script`): a TorchScript model's own weights.
inline constexpr const char* kScriptWeights = "torchscript";
/// Throws std::invalid_argument, before any work, when a stage of `c`'s model cannot start from scratch
/// (a TorchScript module holding parameters with no initialisation rule, and no model.torchscript_init).
void checkFreshStart(const Config& c);

/// Writes the model, the resolved config, the task classes and the curves (atomically).
void saveStage(const std::string& path, StageResult& s, const Config& c, const StageConfig& stage, Stage kind,
               const std::function<void(H5File&)>& extra = nullptr);

/// The config's own section of a stage.
const StageConfig& stageOf(const Config& c, Stage section);

/// The evaluation the config's [attack] section describes.
EvalOptions evalOptionsFrom(const Config& c);

/// This process's share of the usable cores: all of them, or as one of several data-parallel ranks on
/// one host, an equal share (unless the launcher bound each rank to its own cores).
int coresPerRank();
/// Whether this process writes results: always, unless it is a data-parallel rank other than 0.
bool writesResults();
/// Rank 0's `value`, on every data-parallel rank (`value` itself without ranks).
bool rankZeroSays(bool value);
/// Applies the config's device and thread choices for training; returns the device. As one of several
/// data-parallel ranks, first checks that every rank resolved the same config.
torch::Device setUpRuntime(const Config& c);
/// Switches to the evaluation thread count (the config's, else the measured default).
void useEvalThreads(const Config& c);

}  // namespace robustlab
