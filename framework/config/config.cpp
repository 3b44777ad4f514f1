// The config read from a TOML table and written back: the sections in order, through the field tables
// of sections.cpp; the validation is validation.cpp's, the overrides and files loading.cpp's.
#include "framework/config/config.h"

#include "attacks/corruptions/corruptions.h"

#include "framework/config/default_config.h"
#include "framework/config/sections.h"
#include "data/sha256.h"
#include "framework/models/torchscript.h"
#include "framework/training/registry.h"
#include "framework/toml/toml_reader.h"

#include <algorithm>
#include <sstream>

namespace robustlab {
namespace config {
namespace {

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

}  // namespace

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
      std::string bytes;
      try {
        bytes = readBinaryFile(c.model.torchscript);  // read once: the model is built from these bytes
      } catch (const std::exception& e) {
        throw ConfigError(what + ": model.torchscript: " + e.what());
      }
      c.model.torchscriptSha256 = rememberScriptBytes(bytes);
      // A wrong cut fails here, not mid-run. A stored config (a checkpoint's, a results file's) comes
      // with its hash pinned and its cut checked when it was made: its file need not exist any more.
      if (!c.model.cut.empty()) {
        try {
          ScriptModel(bytes, c.model.torchscript, c.model.cut, c.model.rangeLo, c.model.rangeHi);
        } catch (const std::invalid_argument& e) {
          const std::string msg = e.what(), head = "model.cut: ";
          if (msg.rfind(head, 0) == 0) throw ConfigError(what + ": field 'model.cut': " + msg.substr(head.size()));
          throw ConfigError(what + ": model.torchscript: " + msg);
        }
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
  {
    TomlReader rb = r.sub("robustness");
    config::readFields(robustnessFields(), rb, c.robustness);
    rb.rejectUnknown();
  }
  if (r.has("sweep")) r.sub("sweep");  // read by `robustlab sweep` (sweep.h); `run` runs the base experiment
  r.rejectUnknown();
  validate(c, what);
  return c.withSeed(c.seed);
}

}  // namespace config

static void writeStage(std::ostream& os, const std::string& section, const StageConfig& s) {
  os << "\n[" << section << "]\n";
  config::writeFields(config::stageFields(section), os, s);
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

ObjectiveParams objectiveParams(const StageConfig& s) {
  ObjectiveParams p;
  p.adversary = s.adversary;
  p.tradesBeta = s.tradesBeta;
  p.martBeta = s.martBeta;
  p.advFraction = s.advFraction;
  p.overfitCheck = s.overfitCheck;
  p.awpGamma = s.awpGamma;
  p.awpWarmup = s.awpWarmup;
  p.maskPatch = s.maskPatch;
  p.maskRatio = s.maskRatio;
  p.contrastive = s.contrastive;
  return p;
}

std::vector<std::string> stageKeysJoinedWhenSet() {
  return {"adv_random_start", "adv_fraction", "mart_beta", "overfit_check", "awp_gamma", "awp_warmup", "sync_batchnorm"};
}

std::string dataToToml(const DataConfig& data) { return sectionToToml("data", config::dataFields(), data); }
std::string attackToToml(const AttackConfig& attack) { return sectionToToml("attack", config::attackFields(), attack); }
std::string robustnessToToml(const RobustnessConfig& r) { return sectionToToml("robustness", config::robustnessFields(), r); }

std::vector<std::string> syntheticOodSources() { return {"gaussian", "uniform", "blobs"}; }

std::vector<std::string> RobustnessConfig::corruptionList() const {
  if (std::find(corruptions.begin(), corruptions.end(), "all") != corruptions.end()) return corruptionNames();
  return corruptions;
}

RobustnessConfig Config::robustnessFor(const ArmConfig& arm) const {
  RobustnessConfig r = robustness;
  if (arm.labelNoise >= 0) r.labelNoise = arm.labelNoise;
  if (arm.imbalance >= 0) r.imbalance = arm.imbalance;
  return r;
}

StageConfig Config::finetuneFor(const ArmConfig& a) const {
  StageConfig s = finetune;
  if (!a.objective.empty()) s.objective = a.objective;
  if (!a.mode.empty()) s.finetune = a.mode;
  if (a.perClass >= 0) s.perClass = a.perClass;
  if (a.advFraction >= 0) s.advFraction = a.advFraction;
  if (a.awpGamma >= 0) s.awpGamma = a.awpGamma;
  if (a.awpWarmup >= 0) s.awpWarmup = a.awpWarmup;
  return s;
}

bool RobustnessConfig::isDefault() const { return robustnessToToml(*this) == robustnessToToml(RobustnessConfig{}); }

std::string Config::toToml() const {
  std::ostringstream os;
  os.precision(10);
  config::writeFields(config::topFields(), os, *this);
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
    config::writeFields(config::armFields(), os, a);
  }
  os << "\n" << attackToToml(attack);
  os << "\n" << robustnessToToml(robustness);
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

}  // namespace robustlab
