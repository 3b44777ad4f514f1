#include "framework/config/config.h"

#include "framework/config/default_config.h"
#include "attacks/registry.h"
#include "framework/toml/toml_reader.h"
#include "framework/training/registry.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace robustlab {
namespace {

/// Reads a stage table into `s` (its current values are the defaults). The base [pretrain] table
/// may hold [pretrain.variants.*], which fromTable() reads afterwards on top of the base.
void readStage(TomlReader r, StageConfig& s, const std::string& section) {
  if (section == "pretrain" && r.has("variants")) r.sub("variants");  // mark it known
  s.classes = r.integers("classes", s.classes);
  s.perClass = r.integer("per_class", s.perClass, 0);
  auto& t = s.train;
  t.epochs = r.integer("epochs", t.epochs, 0, 100000);
  t.batchSize = r.integer("batch_size", t.batchSize, 1, 1 << 20);
  t.optim.name = r.choice("optimizer", t.optim.name, {"sgd", "adam"});
  t.optim.lr = r.real("lr", t.optim.lr, 1e-12, 100.0);
  t.optim.momentum = r.real("momentum", t.optim.momentum, 0.0, 0.999999);
  t.optim.nesterov = r.boolean("nesterov", t.optim.nesterov);
  t.optim.weightDecay = r.real("weight_decay", t.optim.weightDecay, 0.0, 1.0);
  t.optim.schedule = r.choice("schedule", t.optim.schedule, {"constant", "cosine", "step"});
  t.optim.stepEpochs = r.integer("step_epochs", t.optim.stepEpochs, 0);
  t.optim.gamma = r.real("gamma", t.optim.gamma, 1e-9, 1.0);
  t.optim.clipGradNorm = r.real("clip_grad_norm", t.optim.clipGradNorm, 0.0, 1e9);
  s.objective = r.choice("objective", s.objective, objectiveNames());
  auto& a = s.adversary;
  a.eps = r.real("adv_eps", a.eps, 0.0, 1e6);
  a.norm = parseNorm(r.choice("adv_norm", normName(a.norm), {"linf", "l2"}));
  a.steps = r.integer("adv_steps", a.steps, 1, 100000);
  a.stepSize = r.real("adv_step_size", a.stepSize, 0.0, 1e6);
  a.relStepSize = r.real("adv_rel_step_size", a.relStepSize, 0.0, 1e6);
  s.tradesBeta = r.real("trades_beta", s.tradesBeta, 0.0, 1e6);
  if (section == "pretrain" || section == "variant") {
    s.mode = r.choice("mode", s.mode, pretrainModeNames());
    s.maskPatch = r.integer("mask_patch", s.maskPatch, 1, 1024);
    s.maskRatio = r.real("mask_ratio", s.maskRatio, 0.01, 0.99);
  }
  if (section == "finetune") {
    s.finetune = r.choice("mode", s.finetune, {"full", "linear"});
    s.checkpoint = r.str("checkpoint", s.checkpoint);
  }
  if (t.optim.nesterov && t.optim.momentum == 0) r.fail("nesterov", "needs momentum > 0");
  r.rejectUnknown();
}

void readAttack(TomlReader r, AttackConfig& c, uint64_t seed) {
  c.attacks = r.strings("attacks", c.attacks);
  for (auto& a : c.attacks) {
    if (!isAttackName(a)) r.fail("attacks", "unknown attack '" + a + "', valid names: " + attackNameList());
    a = canonicalAttackName(a);
  }
  if (c.attacks.empty()) r.fail("attacks", "needs at least one attack");
  c.norm = r.choice("norm", c.norm, {"linf", "l2"});
  c.eps = r.reals("eps", c.eps);
  if (c.eps.empty()) r.fail("eps", "needs at least one value");
  for (size_t i = 0; i < c.eps.size(); ++i) {
    if (!(c.eps[i] >= 0)) r.fail("eps", "values must be >= 0");
    if (i && !(c.eps[i] > c.eps[i - 1])) r.fail("eps", "values must be strictly increasing");
  }
  auto& o = c.options;
  o.steps = r.integer("steps", o.steps, 1, 100000);
  o.stepSize = r.real("step_size", o.stepSize, 0.0, 1e6);
  o.relStepSize = r.real("rel_step_size", o.relStepSize, 0.0, 1e6);
  o.restarts = r.integer("restarts", o.restarts, 1, 10000);
  o.randomStart = r.boolean("random_start", o.randomStart);
  o.earlyStop = r.boolean("early_stop", o.earlyStop);
  o.rho = r.real("rho", o.rho, 1e-6, 0.999999);
  o.targeting = parseTargeting(r.choice("targeted", targetingName(o.targeting), {"none", "random", "least-likely"}));
  o.seed = seed;
  c.batchSize = r.integer("batch_size", c.batchSize, 1, 1 << 20);
  c.keepExamples = r.integer("keep_examples", c.keepExamples, 0, 100000);
  c.sanityChecks = r.boolean("sanity_checks", c.sanityChecks);
  if (o.restarts > 1 && !o.randomStart) r.fail("restarts", "more than one restart needs random_start = true");
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
    parsed = toml::parse("v = " + value);
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
    arm.name = a.str("name", "");
    if (arm.name.empty()) a.fail("name", "every arm needs a non-empty name");
    for (const auto& other : c.arms)
      if (other.name == arm.name) a.fail("name", "arm name '" + arm.name + "' used twice");
    arm.pretrain = a.str("pretrain", arm.pretrain);
    arm.objective = a.str("objective", "");  // "": the [finetune] objective
    if (!arm.objective.empty()) a.choice("objective", "", objectiveNames());
    arm.mode = a.choice("mode", "", {"", "full", "linear"});
    arm.perClass = a.integer("per_class", -1, -1);
    arm.baseline = a.str("baseline", "");
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
    if (arm.pretrain != "none") {
      bool found = false;
      std::string names;
      for (const auto& v : variants) {
        found |= v.first == arm.pretrain;
        names += (names.empty() ? "" : ", ") + v.first;
      }
      if (!found) throw ConfigError(f + "pretrain': unknown pre-training variant '" + arm.pretrain + "', expected none or one of: " + names);
    }
    if (!arm.baseline.empty()) {
      bool found = false;
      for (const auto& other : arms) found |= other.name == arm.baseline && other.name != arm.name;
      if (!found) throw ConfigError(f + "baseline': no other arm is named '" + arm.baseline + "'");
    }
  }
}

Config fromTable(const toml::table& table, const std::string& what) {
  Config c;
  TomlReader r(table, what);
  c.name = r.str("name", c.name);
  c.seed = static_cast<uint64_t>(r.integer("seed", 0, 0));
  c.seeds = r.integers("seeds", {});
  for (auto sd : c.seeds)
    if (sd < 0) r.fail("seeds", "seeds must be >= 0");
  c.device = parseDeviceChoice(r.choice("device", deviceChoiceName(c.device), {"auto", "cpu", "cuda"}));
  c.threads = r.integer("threads", c.threads, 0, 1024);
  c.precision = parsePrecisionChoice(r.choice("precision", precisionChoiceName(c.precision), {"fp32", "bf16", "auto"}));
  c.resolvedPrecision = resolvePrecision(c.precision);
  c.output = r.str("output", c.output);
  {
    TomlReader d = r.sub("data");
    auto& s = c.data.source;
    s.source = d.choice("source", s.source, dataSourceNames());
    s.dir = d.str("dir", s.dir);
    s.trainFile = d.str("train_file", s.trainFile);
    s.testFile = d.str("test_file", s.testFile);
    c.data.trainLimit = d.integer("train_limit", c.data.trainLimit, 0);
    c.data.testLimit = d.integer("test_limit", c.data.testLimit, 0);
    c.data.valFraction = d.real("val_fraction", c.data.valFraction, 0.0, 0.9);
    if (s.source == "idx" && s.dir.empty()) d.fail("dir", "required when source = \"idx\"");
    if (s.source == "hdf5" && (s.trainFile.empty() || s.testFile.empty()))
      d.fail(s.trainFile.empty() ? "train_file" : "test_file", "required when source = \"hdf5\"");
    d.rejectUnknown();
  }
  {
    TomlReader m = r.sub("model");
    c.model = readModelSpec(m);
  }
  readStage(r.sub("train"), c.train, "train");
  readStage(r.sub("pretrain"), c.pretrain, "pretrain");
  if (const auto* pre = table.get("pretrain"); pre && pre->is_table()) {
    if (const auto* vars = pre->as_table()->get("variants")) {
      if (!vars->is_table()) throw ConfigError(what + ": field 'pretrain.variants': expected a table of named variants");
      for (const auto& [name, node] : *vars->as_table()) {
        const std::string n(name.str());
        if (!node.is_table()) throw ConfigError(what + ": field 'pretrain.variants." + n + "': expected a table");
        StageConfig v = c.pretrain;
        readStage(TomlReader(*node.as_table(), what, "pretrain.variants." + n), v, "variant");
        c.variants.emplace_back(n, v);
      }
    }
  }
  readStage(r.sub("finetune"), c.finetune, "finetune");
  readArms(r, c);
  readAttack(r.sub("attack"), c.attack, c.seed);
  if (r.has("sweep")) r.sub("sweep");  // read by `robustlab sweep` (sweep.h); `run` runs the base experiment
  r.rejectUnknown();
  checkArms(c, what);
  return c.withSeed(c.seed);
}

std::string ints(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

std::string quoted(const std::string& s) {
  std::ostringstream os;
  os << toml::value<std::string>(s);
  return os.str();
}

}  // namespace

static void writeStage(std::ostream& os, const std::string& section, const StageConfig& s) {
  const auto& t = s.train;
  os << "\n[" << section << "]\n";
  os << "classes = " << ints(s.classes) << "\nper_class = " << s.perClass << "\nepochs = " << t.epochs
     << "\nbatch_size = " << t.batchSize << "\noptimizer = \"" << t.optim.name << "\"\nlr = " << t.optim.lr
     << "\nmomentum = " << t.optim.momentum << "\nnesterov = " << (t.optim.nesterov ? "true" : "false")
     << "\nweight_decay = " << t.optim.weightDecay << "\nschedule = \"" << t.optim.schedule << "\"\nstep_epochs = " << t.optim.stepEpochs
     << "\ngamma = " << t.optim.gamma << "\nclip_grad_norm = " << t.optim.clipGradNorm << "\nobjective = \"" << s.objective << "\"\nadv_eps = " << s.adversary.eps
     << "\nadv_norm = \"" << normName(s.adversary.norm) << "\"\nadv_steps = " << s.adversary.steps
     << "\nadv_step_size = " << s.adversary.stepSize << "\nadv_rel_step_size = " << s.adversary.relStepSize
     << "\ntrades_beta = " << s.tradesBeta << "\n";
  if (section.rfind("pretrain", 0) == 0) os << "mode = \"" << s.mode << "\"\nmask_patch = " << s.maskPatch << "\nmask_ratio = " << s.maskRatio << "\n";
  if (section == "finetune") os << "mode = \"" << s.finetune << "\"\ncheckpoint = " << quoted(s.checkpoint) << "\n";
}

std::string stageToToml(const std::string& section, const StageConfig& s) {
  std::ostringstream os;
  os.precision(10);
  writeStage(os, section, s);
  return os.str();
}

std::string dataToToml(const DataConfig& data) {
  std::ostringstream os;
  os.precision(10);
  os << "[data]\nsource = \"" << data.source.source << "\"\ndir = " << quoted(data.source.dir) << "\ntrain_file = " << quoted(data.source.trainFile)
     << "\ntest_file = " << quoted(data.source.testFile) << "\ntrain_limit = " << data.trainLimit << "\ntest_limit = " << data.testLimit
     << "\nval_fraction = " << data.valFraction << "\n";
  return os.str();
}

std::string attackToToml(const AttackConfig& attack) {
  std::ostringstream os;
  os.precision(10);
  const auto& o = attack.options;
  os << "[attack]\nattacks = [";
  for (size_t i = 0; i < attack.attacks.size(); ++i) os << (i ? ", " : "") << quoted(attack.attacks[i]);
  os << "]\nnorm = \"" << attack.norm << "\"\neps = [";
  for (size_t i = 0; i < attack.eps.size(); ++i) os << (i ? ", " : "") << attack.eps[i];
  os << "]\nsteps = " << o.steps << "\nstep_size = " << o.stepSize << "\nrel_step_size = " << o.relStepSize << "\nrestarts = " << o.restarts
     << "\nrandom_start = " << (o.randomStart ? "true" : "false") << "\nearly_stop = " << (o.earlyStop ? "true" : "false")
     << "\nrho = " << o.rho << "\ntargeted = \"" << targetingName(o.targeting) << "\"\nbatch_size = " << attack.batchSize
     << "\nkeep_examples = " << attack.keepExamples << "\nsanity_checks = " << (attack.sanityChecks ? "true" : "false") << "\n";
  return os.str();
}



std::string Config::toToml() const {
  std::ostringstream os;
  os.precision(10);
  os << "name = " << quoted(name) << "\nseed = " << seed << "\nseeds = " << ints(seeds) << "\ndevice = \"" << deviceChoiceName(device)
     << "\"\nthreads = " << threads << "\nprecision = \"" << precisionChoiceName(precision) << "\"\noutput = " << quoted(output) << "\n";
  os << "\n" << dataToToml(data);
  // The model table: the spec's own canonical text, nested under [model].
  std::string spec = model.backboneKey();
  std::string out;
  std::stringstream ss(spec);
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
    os << "\n[[arms]]\nname = " << quoted(a.name) << "\npretrain = " << quoted(a.pretrain) << "\nobjective = " << quoted(a.objective)
       << "\nmode = " << quoted(a.mode) << "\nper_class = " << a.perClass << "\nbaseline = " << quoted(a.baseline) << "\n";
  }
  os << "\n" << attackToToml(attack);
  return os.str();
}

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

void applyOverrides(toml::table& table, const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    if (eq == std::string::npos) throw ConfigError("--set " + o + ": expected KEY=VALUE, e.g. train.epochs=3");
    setPath(table, o.substr(0, eq), o.substr(eq + 1), "--set");
  }
}

Config fromTableChecked(const toml::table& table, const std::string& what) {
  try {
    return fromTable(table, what);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(what + ": " + e.what());
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
  return fromTableChecked(table, what);
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
  return fromTableChecked(table, what);
}

}  // namespace robustlab
