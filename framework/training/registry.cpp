#include "framework/training/registry.h"

#include "framework/training/adversarial_training.h"
#include "framework/training/pretext.h"

#include <algorithm>
#include <stdexcept>

namespace robustlab {
namespace {

std::vector<ObjectiveEntry>& objectives() {
  static std::vector<ObjectiveEntry> e{
      {"standard", "cross-entropy on clean inputs",
       [](const ObjectiveParams&, ClassifierImpl&) { return std::make_unique<CrossEntropyObjective>(); }},
      {"pgd", "PGD adversarial training (Madry et al. 2018) with the stage's adv_* attack",
       [](const ObjectiveParams& p, ClassifierImpl&) { return std::make_unique<PgdTrainingObjective>(p.adversary, p.advFraction); }},
      {"fgsm-rs", "FGSM from a random start, step 1.25 eps (Wong et al. 2020), with their catastrophic-overfitting check",
       [](const ObjectiveParams& p, ClassifierImpl&) { return std::make_unique<FgsmRsObjective>(p.adversary, p.advFraction, p.overfitCheck); }},
      {"trades", "TRADES (Zhang et al. 2019): CE + beta * KL on the adv_* attack",
       [](const ObjectiveParams& p, ClassifierImpl&) { return std::make_unique<TradesObjective>(p.adversary, p.tradesBeta); }},
      {"mart", "MART (Wang et al. 2020): boosted CE + beta * KL weighted by misclassification, on PGD-CE examples",
       [](const ObjectiveParams& p, ClassifierImpl&) { return std::make_unique<MartObjective>(p.adversary, p.martBeta); }},
  };
  return e;
}

/// "supervised" is not a factory of its own: it is the stage's objective.
std::vector<ObjectiveEntry>& modes() {
  static std::vector<ObjectiveEntry> e{
      {"supervised", "the stage's objective on the source task's labels", nullptr},
      {"rotation", "rotation prediction (Gidaris et al. 2018), labels never read",
       [](const ObjectiveParams&, ClassifierImpl& m) { return std::make_unique<RotationObjective>(m.featureDim()); }},
      {"masked", "masked-patch reconstruction, labels never read",
       [](const ObjectiveParams& p, ClassifierImpl& m) {
         const auto& s = m.spec();
         return std::make_unique<MaskedReconstructionObjective>(m.featureDim(), s.inChannels, s.height, s.width, p.maskPatch, p.maskRatio);
       }},
      {"simclr", "SimCLR (Chen et al. 2020): NT-Xent on two augmented views through a projection head, labels never read",
       [](const ObjectiveParams& p, ClassifierImpl& m) {
         auto o = p.contrastive;
         o.adversarial = false;
         return std::make_unique<ContrastiveObjective>(m, o);
       }},
      {"adv-contrastive", "adversarial contrastive (RoCL, ACL): SimCLR plus a PGD view on the contrastive loss (adv_*), labels never read",
       [](const ObjectiveParams& p, ClassifierImpl& m) {
         auto o = p.contrastive;
         o.adversarial = true;
         o.adversary = p.adversary;
         return std::make_unique<ContrastiveObjective>(m, o);
       }},
  };
  return e;
}

std::vector<std::string> names(const std::vector<ObjectiveEntry>& list) {
  std::vector<std::string> out;
  for (const auto& e : list) out.push_back(e.name);
  return out;
}

const ObjectiveEntry& find(const std::vector<ObjectiveEntry>& list, const std::string& name, const char* what) {
  for (const auto& e : list)
    if (e.name == name) return e;
  std::string valid;
  for (const auto& e : list) valid += (valid.empty() ? "" : ", ") + e.name;
  throw std::invalid_argument(std::string("unknown ") + what + " '" + name + "', valid names: " + valid);
}

void add(std::vector<ObjectiveEntry>& list, ObjectiveEntry entry, const char* what) {
  for (const auto& e : list)
    if (e.name == entry.name) throw std::invalid_argument(std::string(what) + " '" + entry.name + "' is registered twice");
  list.push_back(std::move(entry));
}

}  // namespace

std::vector<std::string> objectiveNames() { return names(objectives()); }
std::vector<std::string> pretrainModeNames() { return names(modes()); }

std::string unusedObjectiveKey(const std::string& objective, const ObjectiveParams& p) {
  if (p.advFraction != 1.0 && objective != "pgd" && objective != "fgsm-rs")
    return "adv_fraction: only objectives pgd and fgsm-rs train on part-adversarial batches, not " + objective;
  const auto known = objectiveNames();
  if (p.awpGamma > 0 && (objective == "standard" || std::find(known.begin(), known.end(), objective) == known.end()))
    return "awp_gamma: weight perturbation needs an adversarial objective (pgd, fgsm-rs, trades, mart), not " + objective;
  return "";
}

std::unique_ptr<TrainingObjective> makeObjective(const std::string& name, const ObjectiveParams& p, ClassifierImpl& model) {
  auto objective = find(objectives(), name, "objective").make(p, model);
  if (const auto why = unusedObjectiveKey(name, p); !why.empty()) throw std::invalid_argument(why);
  if (p.awpGamma == 0) return objective;
  auto* adversarial = dynamic_cast<AdversarialObjective*>(objective.get());
  if (!adversarial) throw std::invalid_argument("awp_gamma: objective '" + name + "' has no adversarial examples to perturb the weights on");
  objective.release();
  return std::make_unique<AwpObjective>(std::unique_ptr<AdversarialObjective>(adversarial), p.awpGamma, p.awpWarmup);
}

std::unique_ptr<TrainingObjective> makePretrainObjective(const std::string& mode, const std::string& objective,
                                                         const ObjectiveParams& p, ClassifierImpl& model) {
  const auto& e = find(modes(), mode, "pre-training mode");
  return e.make ? e.make(p, model) : makeObjective(objective, p, model);
}

void registerObjective(ObjectiveEntry entry) { add(objectives(), std::move(entry), "objective"); }
void registerPretrainMode(ObjectiveEntry entry) { add(modes(), std::move(entry), "pre-training mode"); }

}  // namespace robustlab
