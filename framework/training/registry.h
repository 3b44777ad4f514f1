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
  double martBeta = 6.0;        ///< Wang et al.'s beta
  double advFraction = 1.0;     ///< pgd, fgsm-rs: share of each batch made adversarial
  bool overfitCheck = true;     ///< fgsm-rs: the catastrophic-overfitting check each epoch
  double awpGamma = 0.0;        ///< > 0: adversarial weight perturbation around the objective
  int64_t awpWarmup = 0;        ///< epochs before the weight perturbation starts
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

/// Supervised objectives ([train|pretrain|finetune].objective): standard, pgd, fgsm-rs, trades, mart.
std::vector<std::string> objectiveNames();
/// Pre-training modes ([pretrain].mode): supervised (the stage's objective), rotation, masked, simclr,
/// adv-contrastive.
std::vector<std::string> pretrainModeNames();
/// Builds a supervised objective, wrapped in adversarial weight perturbation when p.awpGamma > 0; an
/// unknown name throws std::invalid_argument listing the valid ones, a key the objective does not take
/// (adv_fraction, awp_gamma) one naming the key.
std::unique_ptr<TrainingObjective> makeObjective(const std::string& name, const ObjectiveParams& p, ClassifierImpl& model);
/// Builds a pre-training mode's objective ("supervised" builds `objective`).
std::unique_ptr<TrainingObjective> makePretrainObjective(const std::string& mode, const std::string& objective,
                                                         const ObjectiveParams& p, ClassifierImpl& model);

/// The "key: message" of the first ObjectiveParams key that `objective` does not take (empty: none).
std::string unusedObjectiveKey(const std::string& objective, const ObjectiveParams& p);

void registerObjective(ObjectiveEntry entry);
void registerPretrainMode(ObjectiveEntry entry);

struct ObjectiveRegistration {
  explicit ObjectiveRegistration(ObjectiveEntry entry) { registerObjective(std::move(entry)); }
};
struct PretrainModeRegistration {
  explicit PretrainModeRegistration(ObjectiveEntry entry) { registerPretrainMode(std::move(entry)); }
};

}  // namespace robustlab
