#pragma once
// Training objectives and pre-training modes by name: the lists configs read ([*].objective,
// [pretrain].mode). A new objective is one file (a TrainingObjective) plus one line in registry.cpp;
// code outside the library adds its own with a static ObjectiveRegistration.
#include "attacks/attack.h"
#include "framework/training/contrastive.h"
#include "framework/training/objectives.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace robustlab {

/// What the registered objectives may read from their stage's config.
struct ObjectiveParams {
  AttackOptions adversary;   ///< the training attack (pgd, trades, adversarial pretext modes)
  double tradesBeta = 6.0;
  int64_t maskPatch = 7;     ///< masked: patch side in pixels
  double maskRatio = 0.5;    ///< masked: share of patches blanked
  ContrastiveOptions contrastive;  ///< simclr, adv-contrastive (the adversary is `adversary`)
};

using ObjectiveFactory = std::function<std::unique_ptr<TrainingObjective>(const ObjectiveParams&, ClassifierImpl&)>;

struct ObjectiveEntry {
  std::string name;
  std::string summary;
  ObjectiveFactory make;
};

/// Supervised objectives ([train|pretrain|finetune].objective): standard, pgd, trades.
std::vector<std::string> objectiveNames();
/// Pre-training modes ([pretrain].mode): supervised (the stage's objective), rotation, masked, simclr,
/// adv-contrastive.
std::vector<std::string> pretrainModeNames();
/// Builds a supervised objective; an unknown name throws std::invalid_argument listing the valid ones.
std::unique_ptr<TrainingObjective> makeObjective(const std::string& name, const ObjectiveParams& p, ClassifierImpl& model);
/// Builds a pre-training mode's objective ("supervised" builds `objective`).
std::unique_ptr<TrainingObjective> makePretrainObjective(const std::string& mode, const std::string& objective,
                                                         const ObjectiveParams& p, ClassifierImpl& model);

void registerObjective(ObjectiveEntry entry);
void registerPretrainMode(ObjectiveEntry entry);

struct ObjectiveRegistration {
  explicit ObjectiveRegistration(ObjectiveEntry entry) { registerObjective(std::move(entry)); }
};
struct PretrainModeRegistration {
  explicit PretrainModeRegistration(ObjectiveEntry entry) { registerPretrainMode(std::move(entry)); }
};

}  // namespace robustlab
