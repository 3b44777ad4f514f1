#include "framework/config/config.h"

#include "framework/config/fields.h"

#include "framework/config/default_config.h"
#include "attacks/registry.h"
#include "data/sha256.h"
#include "framework/models/torchscript.h"
#include "framework/toml/toml_reader.h"
#include "framework/training/augment.h"
#include "framework/training/registry.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace robustlab {
namespace {

using config::Field;
using config::Fields;
#define ROBUSTLAB_REF(T, expr) [](T& x) -> decltype(auto) { return (x.expr); }

std::vector<std::string> finetuneModeNames() { return {"full", "linear", "lp-ft"}; }

/// The keys of every stage table: [train], [pretrain], [finetune] and [pretrain.variants.NAME].
Fields<StageConfig> stageFields(const std::string& section) {
  using S = StageConfig;
  Fields<S> f{
      config::integers<S>("classes", ROBUSTLAB_REF(S, classes)),
      config::integer<S>("per_class", ROBUSTLAB_REF(S, perClass), 0),
      config::integer<S>("epochs", ROBUSTLAB_REF(S, train.epochs), 0, 100000),
      config::integer<S>("batch_size", ROBUSTLAB_REF(S, train.batchSize), 1, 1 << 20),
      config::choice<S>("optimizer", ROBUSTLAB_REF(S, train.optim.name), [] { return std::vector<std::string>{"sgd", "adam"}; }),
      config::real<S>("lr", ROBUSTLAB_REF(S, train.optim.lr), 1e-12, 100.0),
      config::real<S>("momentum", ROBUSTLAB_REF(S, train.optim.momentum), 0.0, 0.999999),
      config::boolean<S>("nesterov", ROBUSTLAB_REF(S, train.optim.nesterov)),
      config::real<S>("weight_decay", ROBUSTLAB_REF(S, train.optim.weightDecay), 0.0, 1.0),
      config::choice<S>("schedule", ROBUSTLAB_REF(S, train.optim.schedule), [] { return std::vector<std::string>{"constant", "cosine", "step"}; }),
      config::integer<S>("step_epochs", ROBUSTLAB_REF(S, train.optim.stepEpochs), 0),
      config::real<S>("gamma", ROBUSTLAB_REF(S, train.optim.gamma), 1e-9, 1.0),
      config::real<S>("clip_grad_norm", ROBUSTLAB_REF(S, train.optim.clipGradNorm), 0.0, 1e9),
      config::choice<S>("objective", ROBUSTLAB_REF(S, objective), objectiveNames),
      config::real<S>("adv_eps", ROBUSTLAB_REF(S, adversary.eps), 0.0, 1e6),
      config::enumeration<S, Norm>("adv_norm", ROBUSTLAB_REF(S, adversary.norm), parseNorm, normName, {"linf", "l2"}),
      config::integer<S>("adv_steps", ROBUSTLAB_REF(S, adversary.steps), 1, 100000),
      config::real<S>("adv_step_size", ROBUSTLAB_REF(S, adversary.stepSize), 0.0, 1e6),
      config::real<S>("adv_rel_step_size", ROBUSTLAB_REF(S, adversary.relStepSize), 0.0, 1e6),
      config::real<S>("trades_beta", ROBUSTLAB_REF(S, tradesBeta), 0.0, 1e6),
      config::choice<S>("augment", ROBUSTLAB_REF(S, train.augment), augmentNames),
      config::integer<S>("crop_padding", ROBUSTLAB_REF(S, train.cropPadding), 0, 64),
      config::string<S>("data_source", ROBUSTLAB_REF(S, dataSource)),
      config::string<S>("data_dir", ROBUSTLAB_REF(S, dataDir)),
  };
  if (section.rfind("pretrain", 0) == 0 || section == "variant") {
    f.push_back(config::choice<S>("mode", ROBUSTLAB_REF(S, mode), pretrainModeNames));
    f.push_back(config::integer<S>("mask_patch", ROBUSTLAB_REF(S, maskPatch), 1, 1024));
    f.push_back(config::real<S>("mask_ratio", ROBUSTLAB_REF(S, maskRatio), 0.01, 0.99));
    f.push_back(config::real<S>("temperature", ROBUSTLAB_REF(S, contrastive.temperature), 1e-3, 100.0));
    f.push_back(config::integer<S>("projection_dim", ROBUSTLAB_REF(S, contrastive.projectionDim), 1, 65536));
    f.push_back(config::real<S>("view_min_scale", ROBUSTLAB_REF(S, contrastive.views.minScale), 0.01, 1.0));
    f.push_back(config::boolean<S>("view_flip", ROBUSTLAB_REF(S, contrastive.views.flip)));
    f.push_back(config::real<S>("view_jitter", ROBUSTLAB_REF(S, contrastive.views.jitter), 0.0, 0.99));
    f.push_back(config::boolean<S>("dual_bn", ROBUSTLAB_REF(S, contrastive.dualBatchNorm)));
  }
  if (section == "finetune") {
    f.push_back(config::choice<S>("mode", ROBUSTLAB_REF(S, finetune), finetuneModeNames));
    f.push_back(config::integer<S>("probe_epochs", ROBUSTLAB_REF(S, lpFt.probeEpochs), 0, 100000));
    f.push_back(config::real<S>("probe_lr", ROBUSTLAB_REF(S, lpFt.probeLr), 1e-12, 100.0));
    f.push_back(config::choice<S>("bn_stats", ROBUSTLAB_REF(S, bnStats), [] { return std::vector<std::string>{"update", "frozen"}; }));
    f.push_back(config::string<S>("checkpoint", ROBUSTLAB_REF(S, checkpoint)));
  }
  return f;
}

/// attack.attacks: names from the attack registry, aliases stored under their canonical name.
Field<AttackConfig> attackNamesField() {
  return {"attacks",
          [](TomlReader& r, AttackConfig& c) {
            c.attacks = r.strings("attacks", c.attacks);
            for (auto& a : c.attacks) {
              if (!isAttackName(a)) r.fail("attacks", "unknown attack '" + a + "', valid names: " + attackNameList());
              a = canonicalAttackName(a);
            }
          },
          [](std::ostream& os, const AttackConfig& c) {
            os << config::list<std::string>(c.attacks, [](const std::string& s) { return config::quoted(s); });
          }};
}

Fields<AttackConfig> attackFields() {
  using A = AttackConfig;
  return {
      attackNamesField(),
      config::enumeration<A, Norm>("norm", ROBUSTLAB_REF(A, options.norm), parseNorm, normName, {"linf", "l2"}),
      config::reals<A>("eps", ROBUSTLAB_REF(A, eps)),
      config::integer<A>("steps", ROBUSTLAB_REF(A, options.steps), 1, 100000),
      config::real<A>("step_size", ROBUSTLAB_REF(A, options.stepSize), 0.0, 1e6),
      config::real<A>("rel_step_size", ROBUSTLAB_REF(A, options.relStepSize), 0.0, 1e6),
      config::integer<A>("restarts", ROBUSTLAB_REF(A, options.restarts), 1, 10000),
      config::boolean<A>("random_start", ROBUSTLAB_REF(A, options.randomStart)),
      config::boolean<A>("early_stop", ROBUSTLAB_REF(A, options.earlyStop)),
      config::real<A>("rho", ROBUSTLAB_REF(A, options.rho), 1e-6, 0.999999),
      config::integer<A>("target_classes", ROBUSTLAB_REF(A, options.targetClasses), 1, 1000),
      config::integer<A>("queries", ROBUSTLAB_REF(A, options.queries), 1, 10000000),
      config::real<A>("p_init", ROBUSTLAB_REF(A, options.pInit), 1e-6, 1.0),
      config::integer<A>("autoattack_steps", ROBUSTLAB_REF(A, options.suiteSteps), 1, 100000),
      config::enumeration<A, Targeting>("targeted", ROBUSTLAB_REF(A, options.targeting), parseTargeting, targetingName,
                                        {"none", "random", "least-likely"}),
      config::integer<A>("batch_size", ROBUSTLAB_REF(A, batchSize), 1, 1 << 20),
      config::countOrAll<A>("keep_examples", ROBUSTLAB_REF(A, keepExamples), 0, 100000),
      config::boolean<A>("sanity_checks", ROBUSTLAB_REF(A, sanityChecks)),
  };
}

Fields<DataConfig> dataFields() {
  using D = DataConfig;
  return {
      config::choice<D>("source", ROBUSTLAB_REF(D, source.source), dataSourceNames),
      config::string<D>("dir", ROBUSTLAB_REF(D, source.dir)),
      config::string<D>("train_file", ROBUSTLAB_REF(D, source.trainFile)),
      config::string<D>("test_file", ROBUSTLAB_REF(D, source.testFile)),
      config::integer<D>("train_limit", ROBUSTLAB_REF(D, trainLimit), 0),
      config::integer<D>("test_limit", ROBUSTLAB_REF(D, testLimit), 0),
      config::real<D>("val_fraction", ROBUSTLAB_REF(D, valFraction), 0.0, 0.9),
  };
}

Field<Config> seedField() {
  return {"seed", [](TomlReader& r, Config& c) { c.seed = static_cast<uint64_t>(r.integer("seed", static_cast<int64_t>(c.seed), 0)); },
          [](std::ostream& os, const Config& c) { os << c.seed; }};
}

/// The top-level keys (sections are read and written around them).
Fields<Config> topFields() {
  using C = Config;
  return {
      config::string<C>("name", ROBUSTLAB_REF(C, name)),
      seedField(),
      config::integers<C>("seeds", ROBUSTLAB_REF(C, seeds), 0),
      config::enumeration<C, DeviceChoice>("device", ROBUSTLAB_REF(C, device), parseDeviceChoice, deviceChoiceName, {"auto", "cpu", "cuda"}),
      config::integer<C>("threads", ROBUSTLAB_REF(C, threads), 0, 1024),
      config::enumeration<C, PrecisionChoice>("precision", ROBUSTLAB_REF(C, precision), parsePrecisionChoice, precisionChoiceName,
                                              {"fp32", "bf16", "auto"}),
      config::string<C>("output", ROBUSTLAB_REF(C, output)),
      config::boolean<C>("keep_models", ROBUSTLAB_REF(C, keepModels)),
  };
}

Fields<ArmConfig> armFields() {
  using A = ArmConfig;
  return {
      config::string<A>("name", ROBUSTLAB_REF(A, name)),
      config::string<A>("pretrain", ROBUSTLAB_REF(A, pretrain)),
      // "" (or absent): the [finetune] objective and mode, -1: its per_class.
      config::choice<A>("objective", ROBUSTLAB_REF(A, objective), [] {
        auto v = objectiveNames();
        v.insert(v.begin(), "");
        return v;
      }, true),
      config::choice<A>("mode", ROBUSTLAB_REF(A, mode), [] {
        auto v = finetuneModeNames();
        v.insert(v.begin(), "");
        return v;
      }, true),
      config::integer<A>("per_class", ROBUSTLAB_REF(A, perClass), -1),
      config::string<A>("baseline", ROBUSTLAB_REF(A, baseline)),
  };
}

#undef ROBUSTLAB_REF

/// Reads a stage table into `s` (its current values are the defaults). The base [pretrain] table
/// may hold [pretrain.variants.*], which fromTable() reads afterwards on top of the base.
void readStage(TomlReader r, StageConfig& s, const std::string& section) {
  if (section == "pretrain" && r.has("variants")) r.sub("variants");  // mark it known
  config::readFields(stageFields(section), r, s);
  if (!s.dataSource.empty()) {
    const auto names = dataSourceNames();
    if (std::find(names.begin(), names.end(), s.dataSource) == names.end() || s.dataSource == "hdf5")
      r.fail("data_source", "unknown or unsupported source '" + s.dataSource + "' for a stage, expected fashion-mnist, mnist, idx, cifar10, cifar100 or cifar100-coarse");
  }
  r.rejectUnknown();
}

void readAttack(TomlReader r, AttackConfig& c) {
  config::readFields(attackFields(), r, c);
  r.rejectUnknown();
}

/// Parses an override value as TOML; a bare word that is not TOML becomes a string.
void setPath(toml::table& root, const std::string& key, const std::string& value, const std::string& what) {
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  if (parts.empty() || key.empty()) throw ConfigError(what + ": override '" + key + "=" + value + "' has no key");
  toml::table* t = &root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    auto* n = t->get(parts[i]);
    if (!n) {
      t->insert(parts[i], toml::table{});
      n = t->get(parts[i]);
    }
    if (!n->is_table()) throw ConfigError(what + ": override '" + key + "': '" + parts[i] + "' is not a table");
    t = n->as_table();
  }
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + quoteBareFractions(value));
  } catch (const toml::parse_error&) {
    parsed = toml::table{{"v", value}};
  }
  t->insert_or_assign(parts.back(), *parsed.get("v"));
}

void readArms(TomlReader& r, Config& c) {
  const auto tables = r.tables("arms");
  for (size_t i = 0; i < tables.size(); ++i) {
    TomlReader a(*tables[i], r.file(), "arms[" + std::to_string(i) + "]");
    ArmConfig arm;
    config::readFields(armFields(), a, arm);
    if (arm.name.empty()) a.fail("name", "every arm needs a non-empty name");
    for (const auto& other : c.arms)
      if (other.name == arm.name) a.fail("name", "arm name '" + arm.name + "' used twice");
    a.rejectUnknown();
    c.arms.push_back(arm);
  }
}

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
void validateStage(const StageConfig& s, const std::string& what, const std::string& section) {
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
  if (s.contrastive.dualBatchNorm && s.mode != "adv-contrastive")
    throw ConfigError(what + ": field '" + section + ".dual_bn': needs mode = \"adv-contrastive\" (it keeps the adversarial view's BatchNorm statistics apart), mode is \"" + s.mode + "\"");
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

void validate(const Config& c, const std::string& what) {
  validateNames(c, what);
  validateData(c.data, what);
  validateStage(c.train, what, "train");
  validateStage(c.pretrain, what, "pretrain");
  for (const auto& [n, v] : c.variants) validateStage(v, what, "pretrain.variants." + n);
  validateStage(c.finetune, what, "finetune");
  checkArms(c, what);
  validateAttack(c.attack, c.resolvedPrecision, what);
  validateAttackClasses(c.attack, c.finetune, what);
}

void readVariants(const toml::table& table, const std::string& what, Config& c) {
  const auto* pre = table.get("pretrain");
  if (!pre || !pre->is_table()) return;
  const auto* vars = pre->as_table()->get("variants");
  if (!vars) return;
  if (!vars->is_table()) throw ConfigError(what + ": field 'pretrain.variants': expected a table of named variants");
  for (const auto& [name, node] : *vars->as_table()) {
    const std::string n(name.str());
    if (!node.is_table()) throw ConfigError(what + ": field 'pretrain.variants." + n + "': expected a table");
    StageConfig v = c.pretrain;
    readStage(TomlReader(*node.as_table(), what, "pretrain.variants." + n), v, "variant");
    c.variants.emplace_back(n, v);
  }
}

Config fromTable(const toml::table& table, const std::string& what) {
  Config c;
  TomlReader r(table, what);
  config::readFields(topFields(), r, c);
  c.resolvedPrecision = resolvePrecision(c.precision);  // the one resolution of "auto"
  {
    TomlReader d = r.sub("data");
    config::readFields(dataFields(), d, c.data);
    d.rejectUnknown();
  }
  {
    TomlReader m = r.sub("model");
    c.model = readModelSpec(m);
    // A TorchScript model is known by its bytes: the hash goes into the config text, unit keys and results.
    if (c.model.arch == "torchscript" && c.model.torchscriptSha256.empty()) {
      try {
        c.model.torchscriptSha256 = rememberScriptBytes(readBinaryFile(c.model.torchscript));  // read once: the model is built from these bytes
      } catch (const std::exception& e) {
        throw ConfigError(what + ": model.torchscript: " + e.what());
      }
    }
    if (c.model.arch == "torchscript" && !c.model.cut.empty()) {  // a wrong cut fails here, not mid-run
      try {
        ScriptModel(scriptBytesFor(c.model), c.model.torchscript, c.model.cut, c.model.rangeLo, c.model.rangeHi);
      } catch (const std::invalid_argument& e) {
        const std::string msg = e.what(), head = "model.cut: ";
        if (msg.rfind(head, 0) == 0) throw ConfigError(what + ": field 'model.cut': " + msg.substr(head.size()));
        throw ConfigError(what + ": model.torchscript: " + msg);
      }
    }
    if (!c.model.torchscriptInit.empty() && c.model.torchscriptInitSha256.empty()) {
      try {
        c.model.torchscriptInitSha256 = rememberScriptBytes(readBinaryFile(c.model.torchscriptInit));
      } catch (const std::exception& e) {
        throw ConfigError(what + ": model.torchscript_init: " + e.what());
      }
    }
  }
  readStage(r.sub("train"), c.train, "train");
  readStage(r.sub("pretrain"), c.pretrain, "pretrain");
  readVariants(table, what, c);
  readStage(r.sub("finetune"), c.finetune, "finetune");
  readArms(r, c);
  readAttack(r.sub("attack"), c.attack);
  if (r.has("sweep")) r.sub("sweep");  // read by `robustlab sweep` (sweep.h); `run` runs the base experiment
  r.rejectUnknown();
  validate(c, what);
  return c.withSeed(c.seed);
}

}  // namespace

static void writeStage(std::ostream& os, const std::string& section, const StageConfig& s) {
  os << "\n[" << section << "]\n";
  config::writeFields(stageFields(section), os, s);
}

std::string stageToToml(const std::string& section, const StageConfig& s) {
  std::ostringstream os;
  os.precision(10);
  writeStage(os, section, s);
  return os.str();
}

template <class T>
static std::string sectionToToml(const std::string& section, const config::Fields<T>& fields, const T& v) {
  std::ostringstream os;
  os.precision(10);
  os << "[" << section << "]\n";
  config::writeFields(fields, os, v);
  return os.str();
}

std::string dataToToml(const DataConfig& data) { return sectionToToml("data", dataFields(), data); }
std::string attackToToml(const AttackConfig& attack) { return sectionToToml("attack", attackFields(), attack); }

std::string Config::toToml() const {
  std::ostringstream os;
  os.precision(10);
  config::writeFields(topFields(), os, *this);
  os << "\n" << dataToToml(data);
  // The model table: the spec's own canonical text, nested under [model].
  std::string out;
  std::stringstream ss(model.backboneKey());
  for (std::string line; std::getline(ss, line);) {
    if (line == "[[layers]]") line = "[[model.layers]]";
    out += line + "\n";
  }
  os << "\n[model]\n" << out;
  writeStage(os, "train", train);
  writeStage(os, "pretrain", pretrain);
  for (const auto& [n, v] : variants) writeStage(os, "pretrain.variants." + n, v);
  writeStage(os, "finetune", finetune);
  for (const auto& a : arms) {
    os << "\n[[arms]]\n";
    config::writeFields(armFields(), os, a);
  }
  os << "\n" << attackToToml(attack);
  return os.str();
}

EvalOptions AttackConfig::evalOptions(Precision precision) const {
  EvalOptions e;
  for (const auto& name : attacks) e.attacks.push_back({name, options});
  e.epsGrid = eps;
  e.norm = options.norm;
  e.batchSize = batchSize;
  e.keepExamples = keepExamples;
  e.sanityChecks = sanityChecks;
  e.precision = precision;
  return e;
}

std::string stageName(Stage s) { return s == Stage::kTrain ? "train" : s == Stage::kPretrain ? "pretrain" : "finetune"; }

std::vector<std::pair<std::string, StageConfig>> Config::runVariants() const {
  if (!variants.empty()) return variants;
  return {{"base", pretrain}};
}

std::vector<ArmConfig> Config::runArms() const {
  if (!arms.empty()) return arms;
  ArmConfig scratch;
  scratch.name = "scratch";
  ArmConfig pre;
  pre.name = "pretrained";
  pre.pretrain = runVariants().front().first;
  pre.baseline = "scratch";
  return {scratch, pre};
}

Config Config::withSeed(uint64_t s) const {
  Config c = *this;
  c.seed = s;
  for (auto* st : {&c.train, &c.pretrain, &c.finetune}) {
    st->train.seed = s;
    st->adversary.seed = s;
  }
  for (auto& v : c.variants) {
    v.second.train.seed = s;
    v.second.adversary.seed = s;
  }
  c.attack.options.seed = s;
  return c;
}

const std::string& defaultConfigText() {
  static const std::string kText = kDefaultConfigToml;
  return kText;
}

namespace {

/// An override's "KEY=VALUE" and who gave it: "--set KEY=VALUE", or the flag overrideFrom() named.
std::pair<std::string, std::string> splitOverride(const std::string& o) {
  const auto tag = o.find(kOverrideOrigin);
  if (tag == std::string::npos) return {o, "--set " + o};
  return {o.substr(0, tag), o.substr(tag + 1)};
}

void applyOverrides(toml::table& table, const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) {
    const auto [kv, origin] = splitOverride(o);
    const auto eq = kv.find('=');
    if (eq == std::string::npos) throw ConfigError(origin + ": expected KEY=VALUE, e.g. train.epochs=3");
    setPath(table, kv.substr(0, eq), kv.substr(eq + 1), origin);
  }
}

/// The config; an error about a field an override set names that override (the last to set it), not
/// the file it was merged into.
Config fromTableChecked(const toml::table& table, const std::string& what, const std::vector<std::string>& overrides) {
  try {
    try {
      return fromTable(table, what);
    } catch (const std::invalid_argument& e) {
      throw ConfigError(what + ": " + e.what());
    }
  } catch (const ConfigError& e) {
    const std::string msg = e.what(), head = what + ": field '";
    if (msg.rfind(head, 0) != 0) throw;
    const std::string field = msg.substr(head.size(), msg.find('\'', head.size()) - head.size());
    for (auto it = overrides.rbegin(); it != overrides.rend(); ++it) {
      const auto [kv, origin] = splitOverride(*it);
      const std::string key = kv.substr(0, kv.find('='));
      if (field == key || field.rfind(key + ".", 0) == 0 || field.rfind(key + "[", 0) == 0)
        throw ConfigError(origin + ": field '" + msg.substr(head.size()));
    }
    throw;
  }
}

/// Keys of `top` replace those of `base`; tables merge key by key (arrays of tables are replaced).
void mergeInto(toml::table& base, const toml::table& top) {
  for (const auto& [k, v] : top) {
    auto* mine = base.get(k);
    if (mine && mine->is_table() && v.is_table()) mergeInto(*mine->as_table(), *v.as_table());
    else base.insert_or_assign(k, v);
  }
}

}  // namespace

Config parseConfig(const std::string& text, const std::string& what, const std::vector<std::string>& overrides) {
  toml::table table = parseToml(text, what);
  applyOverrides(table, overrides);
  return fromTableChecked(table, what, overrides);
}

Config loadConfig(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return parseConfig(defaultConfigText(), "<default config>", overrides);
  return parseConfig(readConfigText(path), path, overrides);
}

Config loadConfigOver(const std::string& baseText, const std::string& baseWhat, const std::string& path,
                      const std::vector<std::string>& overrides) {
  toml::table table = parseToml(baseText, baseWhat);
  std::string what = baseWhat;
  if (!path.empty()) {
    mergeInto(table, parseToml(readConfigText(path), path));
    what = path;
  }
  applyOverrides(table, overrides);
  return fromTableChecked(table, what, overrides);
}

std::string overrideFrom(const std::string& origin, const std::string& keyValue) { return keyValue + kOverrideOrigin + origin; }

}  // namespace robustlab
