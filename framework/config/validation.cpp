#include "framework/config/sections.h"

#include "attacks/registry.h"
#include "attacks/corruptions/corruptions.h"
#include "data/sources.h"
#include "framework/toml/toml_reader.h"
#include "framework/training/registry.h"

#include <algorithm>
#include <cctype>

namespace robustlab::config {
namespace {

void checkArms(const Config& c, const std::string& what) {
  const auto variants = c.runVariants();
  const auto arms = c.runArms();
  for (size_t i = 0; i < arms.size(); ++i) {
    const auto& arm = arms[i];
    const std::string f = what + ": field 'arms[" + std::to_string(i) + "].";
    if (arm.pretrain == "torchscript" && c.model.arch != "torchscript")
      throw ConfigError(f + "pretrain': \"torchscript\" (the TorchScript file's own weights) needs model.arch = \"torchscript\"");
    if (arm.pretrain != "none" && arm.pretrain != "torchscript") {
      bool found = false;
      std::string names;
      for (const auto& v : variants) {
        found |= v.first == arm.pretrain;
        names += (names.empty() ? "" : ", ") + v.first;
      }
      if (!found) throw ConfigError(f + "pretrain': unknown pre-training variant '" + arm.pretrain + "', expected none" +
                                    (c.model.arch == "torchscript" ? ", torchscript" : "") + " or one of: " + names);
    }
    if (arm.advFraction != -1 && !(arm.advFraction > 0)) throw ConfigError(f + "adv_fraction': expected a share in (0, 1], or -1 for [finetune]'s");
    const StageConfig stage = c.finetuneFor(arm);
    if (const auto why = unusedObjectiveKey(stage.objective, objectiveParams(stage)); !why.empty())
      throw ConfigError(f + why.substr(0, why.find(':')) + "' (or [finetune]'s): " + why.substr(why.find(':') + 2));
    if (arm.labelNoise != -1 && !(arm.labelNoise >= 0)) throw ConfigError(f + "label_noise': expected a share in [0, 1], or -1 for [robustness]'s");
    if (arm.imbalance != -1 && !(arm.imbalance >= 1)) throw ConfigError(f + "imbalance': expected a ratio >= 1, or -1 for [robustness]'s");
    if (!arm.baseline.empty()) {
      bool found = false;
      for (const auto& other : arms) found |= other.name == arm.baseline && other.name != arm.name;
      if (!found) throw ConfigError(f + "baseline': no other arm is named '" + arm.baseline + "'");
    }
  }
}

/// A library rule's "key: message" (std::invalid_argument) as a config error naming `section.key`.
[[noreturn]] void asConfigError(const std::invalid_argument& e, const std::string& what, const std::string& section,
                                const std::string& keyPrefix = "") {
  const std::string msg = e.what();
  const auto colon = msg.find(": ");
  if (colon == std::string::npos) throw ConfigError(what + ": [" + section + "]: " + msg);
  throw ConfigError(what + ": field '" + section + "." + keyPrefix + msg.substr(0, colon) + "': " + msg.substr(colon + 2));
}

/// Each section's rules beyond a field's own type and range, in one place: the training options'
/// and attack options' own validate() (one rule each, shared with code that builds them directly),
/// the data source's required keys, the arms' references.
void validateStage(const StageConfig& s, const std::string& what, const std::string& section, const std::string& arch) {
  try {
    s.train.validate();
  } catch (const std::invalid_argument& e) {
    asConfigError(e, what, section);
  }
  try {
    s.adversary.validate();
  } catch (const std::invalid_argument& e) {
    asConfigError(e, what, section, "adv_");
  }
  const bool supervised = section.rfind("pretrain", 0) != 0 || s.mode == "supervised";
  if (const auto why = unusedObjectiveKey(supervised ? s.objective : "pre-training mode " + s.mode, objectiveParams(s)); !why.empty())
    asConfigError(std::invalid_argument(why), what, section);
  if (s.contrastive.dualBatchNorm && s.mode != "adv-contrastive")
    throw ConfigError(what + ": field '" + section + ".dual_bn': needs mode = \"adv-contrastive\" (it keeps the adversarial view's BatchNorm statistics apart), mode is \"" + s.mode + "\"");
  // sync_batchnorm reaches the BatchNorm layers robustlab builds; a TorchScript model's are inside its script.
  if (s.train.syncBatchNorm && arch == "torchscript")
    throw ConfigError(what + ": field '" + section + ".sync_batchnorm': not available for model.arch = \"torchscript\" (its BatchNorm layers are inside the script), expected false");
}

void validateData(const DataConfig& d, const std::string& what) {
  const auto& s = d.source;
  if (s.source == "idx" && s.dir.empty()) throw ConfigError(what + ": field 'data.dir': required when source = \"idx\"");
  if (s.source == "hdf5" && (s.trainFile.empty() || s.testFile.empty()))
    throw ConfigError(what + ": field 'data." + (s.trainFile.empty() ? "train_file" : "test_file") + "': required when source = \"hdf5\"");
}

/// Attacks whose loss needs more classes than the evaluated ([finetune]) task has: one line at
/// config time, not a failure after training (DLR reads the third-largest logit).
void validateAttackClasses(const AttackConfig& a, const StageConfig& evaluated, const std::string& what) {
  const int64_t classes = evaluated.classes.empty() ? 0 : static_cast<int64_t>(evaluated.classes.size());  // 0: all, checked at run time
  for (const auto& name : a.attacks)
    if (classes > 0 && classes < attackMinClasses(name))
      throw ConfigError(what + ": field 'attack.attacks': " + name + " needs at least " + std::to_string(attackMinClasses(name)) +
                        " classes, but [finetune].classes has " + std::to_string(classes));
}

void validateAttack(const AttackConfig& a, Precision precision, const std::string& what) {
  try {
    a.evalOptions(precision).validate();
    for (const auto& name : a.attacks)
      if (!makeAttack(name, a.options)->supportsNorm(a.options.norm))
        throw std::invalid_argument("norm: " + name + " does not attack in " + normName(a.options.norm) +
                                    "; the l1 attacks are apgd-ce, apgd-dlr, apgd-t and autoattack");
  } catch (const std::invalid_argument& e) {
    asConfigError(e, what, "attack");
  }
}

/// Names become file names (units, caches, reports) and figure titles: letters, digits and . _ + -,
/// not starting with . or -, at most 64 characters. So no path separator, no "..", nothing a shell or
/// a plotting script could read as code.
void validateName(const std::string& name, const std::string& what, const std::string& field) {
  auto fail = [&](const std::string& why) {
    throw ConfigError(what + ": field '" + field + "': name '" + name + "' " + why +
                      " (expected letters, digits and . _ + -, not starting with . or -, at most 64 characters)");
  };
  if (name.empty()) fail("is empty");
  if (name.size() > 64) fail("is too long");
  if (name[0] == '.' || name[0] == '-') fail("starts with '" + std::string(1, name[0]) + "'");
  for (char ch : name)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '+' || ch == '-'))
      fail("holds a character that is not allowed");
}

void validateNames(const Config& c, const std::string& what) {
  validateName(c.name, what, "name");
  for (const auto& [n, v] : c.variants) {
    validateName(n, what, "pretrain.variants." + n);
    if (n == "none" || n == "torchscript")
      throw ConfigError(what + ": field 'pretrain.variants." + n + "': the name '" + n + "' is reserved (an arm's pretrain = \"" + n + "\" means " +
                        (n == "none" ? "from scratch" : "the TorchScript file's own weights") + ")");
  }
  for (size_t i = 0; i < c.arms.size(); ++i) validateName(c.arms[i].name, what, "arms[" + std::to_string(i) + "].name");
  for (size_t i = 1; i < c.seeds.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (c.seeds[i] == c.seeds[j])
        throw ConfigError(what + ": field 'seeds': seed " + std::to_string(c.seeds[i]) +
                          " is listed twice (a repeated seed repeats the same numbers and fakes agreement)");
}

void validateRobustness(const RobustnessConfig& r, const std::string& what) {
  auto valid = syntheticOodSources();
  for (const auto& n : dataSourceNames())
    if (n != "hdf5" && n != "idx") valid.push_back(n);
  std::string list;
  for (const auto& v : valid) list += (list.empty() ? "" : ", ") + v;
  for (size_t i = 0; i < r.oodSources.size(); ++i) {
    const auto& s = r.oodSources[i];
    if (std::find(valid.begin(), valid.end(), s) == valid.end())
      throw ConfigError(what + ": field 'robustness.ood_sources': unknown source '" + s + "', expected one of " + list);
    if (std::find(r.oodSources.begin(), r.oodSources.begin() + static_cast<long>(i), s) != r.oodSources.begin() + static_cast<long>(i))
      throw ConfigError(what + ": field 'robustness.ood_sources': '" + s + "' listed twice");
  }
  const auto names = corruptionNames();
  for (const auto& s : r.corruptions)
    if (s != "all" && std::find(names.begin(), names.end(), s) == names.end()) {
      std::string all = "all";
      for (const auto& n : names) all += ", " + n;
      throw ConfigError(what + ": field 'robustness.corruptions': unknown corruption '" + s + "', expected " + all);
    }
}

}  // namespace

void validate(const Config& c, const std::string& what) {
  validateNames(c, what);
  validateData(c.data, what);
  validateStage(c.train, what, "train", c.model.arch);
  validateStage(c.pretrain, what, "pretrain", c.model.arch);
  for (const auto& [n, v] : c.variants) validateStage(v, what, "pretrain.variants." + n, c.model.arch);
  validateStage(c.finetune, what, "finetune", c.model.arch);
  checkArms(c, what);
  validateAttack(c.attack, c.resolvedPrecision, what);
  validateAttackClasses(c.attack, c.finetune, what);
  validateRobustness(c.robustness, what);
}

}  // namespace robustlab::config
