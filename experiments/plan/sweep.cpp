#include "experiments/plan/sweep.h"

#include "data/atomic_write.h"
#include "data/h5io.h"
#include "experiments/plan/experiment.h"
#include "framework/runtime/progress.h"
#include "framework/toml/toml_reader.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

namespace robustlab {
namespace fs = std::filesystem;
namespace {

struct RandomParam {
  std::string key, distribution;
  double low = 0, high = 1;
  bool integer = false;
  std::vector<std::string> values;
};

std::string tomlText(const toml::node& n) {
  if (n.is_floating_point()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.10g", n.as_floating_point()->get());
    std::string s = buf;
    if (s.find_first_of(".eni") == std::string::npos) s += ".0";  // stays a TOML float
    return s;
  }
  std::ostringstream os;
  n.visit([&](const auto& v) { os << v; });
  return os.str();
}

std::string sample(const RandomParam& p, std::mt19937_64& rng) {
  if (p.distribution == "choice") return p.values[std::uniform_int_distribution<size_t>(0, p.values.size() - 1)(rng)];
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  const double v = p.distribution == "uniform" ? p.low + u * (p.high - p.low) : std::exp(std::log(p.low) + u * (std::log(p.high) - std::log(p.low)));
  if (p.integer) return std::to_string(static_cast<int64_t>(std::llround(v)));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  std::string s = buf;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";  // stays a TOML float
  return s;
}

}  // namespace

std::string describe(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string s;
  for (const auto& [k, v] : params) s += (s.empty() ? "" : ", ") + k + "=" + v;
  return s;
}

namespace {

using Params = std::vector<std::pair<std::string, std::string>>;

struct SweepSpec {
  std::string mode, dir;
  int64_t samples = 1;
  uint64_t seed = 0;
  std::vector<std::pair<std::string, std::vector<std::string>>> grid;  ///< key -> TOML values
  std::vector<RandomParam> random;
};

std::vector<std::pair<std::string, std::vector<std::string>>> readGrid(TomlReader& r, const toml::table& sweepTable) {
  std::vector<std::pair<std::string, std::vector<std::string>>> grid;
  if (r.has("grid")) {
    r.sub("grid");
    const auto* g = sweepTable.get("grid")->as_table();
    for (const auto& [k, v] : *g) {
      const std::string key(k.str());
      if (!v.is_array()) r.fail("grid", "'" + key + "' needs a list of values, e.g. [0.05, 0.1]");
      if (v.as_array()->empty()) r.fail("grid", "'" + key + "' has an empty list of values");
      std::vector<std::string> values;
      for (const auto& e : *v.as_array()) values.push_back(tomlText(e));
      grid.emplace_back(key, values);
    }
  }
  return grid;
}

RandomParam readRandomParam(const std::string& key, const toml::node& v, TomlReader& r, const std::string& path) {
  if (!v.is_table()) r.fail("random", "'" + key + "' needs a table, e.g. { distribution = \"uniform\", low = 0.0, high = 1.0 }");
  TomlReader pr(*v.as_table(), path, "sweep.random." + key);
  RandomParam p;
  p.key = key;
  p.distribution = pr.choice("distribution", "", {"uniform", "log-uniform", "choice"});
  p.low = pr.real("low", 0.0);
  p.high = pr.real("high", 1.0);
  p.integer = pr.boolean("integer", false);
  pr.describe("values", "list of values", "[]");
  if (const auto* vals = pr.raw("values")) {
    if (!vals->is_array() || vals->as_array()->empty()) pr.fail("values", "choice needs a non-empty list of values");
    for (const auto& e : *vals->as_array()) p.values.push_back(tomlText(e));
  }
  if (p.distribution == "choice" && p.values.empty()) pr.fail("values", "choice needs a non-empty list of values");
  if (p.distribution != "choice" && !(p.low < p.high)) pr.fail("high", "needs low < high");
  if (p.distribution == "log-uniform" && !(p.low > 0)) pr.fail("low", "log-uniform needs low > 0");
  pr.rejectUnknown();
  return p;
}

SweepSpec readSweepSpec(const toml::table& sweepTable, const std::string& path) {
  TomlReader r(sweepTable, path, "sweep");
  SweepSpec sp;
  sp.mode = r.choice("mode", "grid", {"grid", "random", "both"});
  sp.samples = r.integer("samples", sp.mode == "grid" ? 1 : 0, 0, 100000);
  sp.seed = static_cast<uint64_t>(r.integer("seed", 0, 0));
  sp.dir = r.str("dir", "");
  sp.grid = readGrid(r, sweepTable);
  if (r.has("random")) {
    r.sub("random");
    for (const auto& [k, v] : *sweepTable.get("random")->as_table()) sp.random.push_back(readRandomParam(std::string(k.str()), v, r, path));
  }
  const auto& mode = sp.mode;
  const auto& grid = sp.grid;
  const auto& random = sp.random;
  const auto samples = sp.samples;
  r.rejectUnknown();
  if ((mode == "grid" || mode == "both") && grid.empty()) r.fail("grid", "mode '" + mode + "' needs a [sweep.grid] with at least one key");
  if ((mode == "random" || mode == "both") && (random.empty() || samples < 1))
    r.fail("random", "mode '" + mode + "' needs a [sweep.random] with at least one key and samples >= 1");

  return sp;
}

/// Every point's parameters: grid points row-major over the keys in file order, each with `samples`
/// random draws.
std::vector<Params> expandPoints(const SweepSpec& sp) {
  const auto& mode = sp.mode;
  const auto& grid = sp.grid;
  const auto& random = sp.random;
  const auto samples = sp.samples;
  const auto seed = sp.seed;
  std::vector<std::vector<std::pair<std::string, std::string>>> combos(1);
  if (mode != "random")
    for (const auto& [key, values] : grid) {
      std::vector<std::vector<std::pair<std::string, std::string>>> next;
      for (const auto& c : combos)
        for (const auto& v : values) {
          auto n = c;
          n.emplace_back(key, v);
          next.push_back(n);
        }
      combos = next;
    }
  std::mt19937_64 rng(seed);
  std::vector<std::vector<std::pair<std::string, std::string>>> all;
  for (const auto& c : combos) {
    const int64_t draws = mode == "grid" ? 1 : samples;
    for (int64_t d = 0; d < draws; ++d) {
      auto params = c;
      if (mode != "grid")
        for (const auto& p : random) params.emplace_back(p.key, sample(p, rng));
      all.push_back(params);
    }
  }
  return all;
}

}  // namespace

void checkSweepTable(const toml::table& sweepTable, const std::string& what) { readSweepSpec(sweepTable, what); }

Sweep planSweep(const std::string& path, const std::vector<std::string>& overrides, const std::string& dirOverride) {
  toml::table table = parseTomlFile(path);
  const toml::node* sweepNode = table.get("sweep");
  if (!sweepNode || !sweepNode->is_table()) throw ConfigError(path + ": no [sweep] table: nothing to sweep (see docs/scaling-out.md, Sweeps)");
  const SweepSpec sp = readSweepSpec(*sweepNode->as_table(), path);
  std::string dir = dirOverride.empty() ? sp.dir : dirOverride;
  const std::vector<Params> all = expandPoints(sp);
  table.erase("sweep");
  std::ostringstream base;
  base << table;
  Sweep s;
  s.sourceFile = path;
  for (const auto& [k, _] : sp.grid) s.keys.push_back(k);
  if (sp.mode != "grid")
    for (const auto& p : sp.random) s.keys.push_back(p.key);
  const Config baseConfig = parseConfig(base.str(), path, overrides);
  s.name = baseConfig.name;
  if (dir.empty()) dir = "results/sweep-" + s.name;
  s.dir = dir;
  fs::create_directories(dir + "/configs");
  fs::create_directories(dir + "/points");
  fs::create_directories(dir + "/logs");
  removeStaleTemporaries(dir);
  removeStaleTemporaries(dir + "/points");
  removeStaleTemporaries(dir + "/configs");
  std::set<std::string> seen;
  std::ostringstream manifest;
  for (size_t i = 0; i < all.size(); ++i) {
    std::vector<std::string> sets = overrides;
    for (const auto& [k, v] : all[i]) sets.push_back(k + "=" + v);
    Config pc;
    try {
      pc = parseConfig(base.str(), path, sets);
    } catch (const ConfigError& e) {
      throw ConfigError(path + ": [sweep] point " + describe(all[i]) + ": " + e.what());
    }
    SweepPoint p;
    p.index = static_cast<int64_t>(i);
    p.params = all[i];
    p.hash = experimentHash(pc);
    if (!seen.insert(p.hash).second) continue;  // two draws gave the same config: run it once
    p.configPath = dir + "/configs/" + p.hash + ".toml";
    p.resultPath = dir + "/points/" + p.hash + ".h5";
    p.logPath = dir + "/logs/" + p.hash + ".log";
    pc.output = p.resultPath;
    writeTextAtomically(p.configPath, "# sweep point " + std::to_string(i) + ": " + describe(all[i]) + "\n" + pc.toToml());
    manifest << i << "\t" << p.hash << "\t" << describe(all[i]) << "\n";
    s.points.push_back(p);
  }
  writeTextAtomically(dir + "/points.tsv", manifest.str());
  return s;
}

bool pointDone(const SweepPoint& p) { return h5RootAttrEquals(p.resultPath, "config_hash", p.hash); }

int runSweepLocal(const Sweep& s, int jobs, int threads, const std::string& binary) {
  std::vector<ProcessTask> tasks;
  std::vector<const SweepPoint*> todo;
  for (const auto& p : s.points) {
    if (pointDone(p)) continue;
    todo.push_back(&p);
    tasks.push_back({"point " + std::to_string(p.index) + " (" + describe(p.params) + ")",
                     {binary, "run", p.configPath, "--threads", std::to_string(threads), "-q"}, p.logPath});
  }
  std::fprintf(stderr, "sweep '%s': %zu points, %zu done, %zu to run, %d at a time with %d thread(s) each\n", s.name.c_str(),
               s.points.size(), s.points.size() - todo.size(), todo.size(), jobs, threads);
  RunProcessesOptions o;
  o.ok = [&](size_t i) { return pointDone(*todo[i]); };
  return runProcesses(tasks, jobs, o);
}

namespace {

/// The headline metrics of the finished points: per arm, clean accuracy and worst-case robust accuracy
/// at each eps > 0; the same columns for every point.
struct Headlines {
  std::vector<std::string> columns;
  std::vector<std::vector<double>> rows;  ///< one per finished point, in order
};

Headlines readHeadlines(const std::vector<const SweepPoint*>& done) {
  Headlines h;
  for (const auto* p : done) {
    H5File f(p->resultPath, H5File::Mode::kRead);
    std::vector<std::string> cols;
    std::vector<double> row;
    for (const auto& arm : f.children("/summary")) {
      const auto eps = f.readTensor("/summary/" + arm + "/eps");
      const auto clean = f.readTensor("/summary/" + arm + "/clean_accuracy_mean");
      const auto worst = f.readTensor("/summary/" + arm + "/worst_accuracy_mean");
      cols.push_back(arm + ":clean");
      row.push_back(clean[0].item<double>());
      for (int64_t e = 0; e < eps.size(0); ++e) {
        if (eps[e].item<double>() == 0) continue;
        char buf[64];
        std::snprintf(buf, sizeof buf, "%s:eps=%g", arm.c_str(), eps[e].item<double>());
        cols.push_back(buf);
        row.push_back(worst[e].item<double>());
      }
    }
    if (h.columns.empty()) h.columns = cols;
    if (cols != h.columns) throw std::runtime_error(p->resultPath + ": its arms or eps grid differ from the other points'; cannot tabulate");
    h.rows.push_back(row);
  }
  return h;
}

void writeSweepTable(H5File& f, const Sweep& s, const std::vector<const SweepPoint*>& done, const Headlines& h) {
  f.setAttr("/", "format", std::string("robustlab-sweep-1"));
  f.setAttr("/", "name", s.name);
  f.setAttr("/", "source_config", s.sourceFile);
  f.writeStrings("/table/param_keys", s.keys);
  f.writeStrings("/table/columns", h.columns);
  auto values = torch::zeros({static_cast<int64_t>(h.rows.size()), static_cast<int64_t>(h.columns.size())}, torch::kFloat64);
  std::vector<int64_t> indices;
  for (size_t i = 0; i < h.rows.size(); ++i) {
    for (size_t k = 0; k < h.columns.size(); ++k) values[static_cast<int64_t>(i)][static_cast<int64_t>(k)] = h.rows[i][k];
    indices.push_back(done[i]->index);
  }
  f.writeTensor("/table/values", values);
  f.writeTensor("/table/point", torch::tensor(indices, torch::kInt64));
  for (size_t k = 0; k < s.keys.size(); ++k) {
    std::vector<std::string> col;
    for (const auto* p : done)
      for (const auto& [key, v] : p->params)
        if (key == s.keys[k]) col.push_back(v);
    f.writeStrings("/table/param_" + std::to_string(k), col);
  }
  for (const auto* p : done) {
    H5File src(p->resultPath, H5File::Mode::kRead);
    const std::string g = "/points/" + std::to_string(p->index);
    f.copyFrom(src, "/summary", g + "/summary");
    if (src.has("/comparisons")) f.copyFrom(src, "/comparisons", g + "/comparisons");
    f.setAttr(g, "params", describe(p->params));
    f.setAttr(g, "result", p->resultPath);
    f.setAttr(g, "config_hash", p->hash);
  }
}

}  // namespace

std::string collectSweep(const Sweep& s) {
  std::vector<const SweepPoint*> done;
  for (const auto& p : s.points)
    if (pointDone(p)) done.push_back(&p);
  if (done.empty()) throw std::runtime_error(s.dir + ": no finished points to collect");
  const Headlines h = readHeadlines(done);
  const std::string out = s.dir + "/sweep.h5";
  writeH5Atomically(out, [&](H5File& f) { writeSweepTable(f, s, done, h); });
  std::ostringstream os;
  os << "sweep '" << s.name << "': " << done.size() << " of " << s.points.size() << " points (accuracy %, mean over seeds) -> " << out << "\n";
  os << "point";
  for (const auto& k : s.keys) os << "\t" << k;
  for (const auto& c : h.columns) os << "\t" << c;
  os << "\n";
  for (size_t i = 0; i < h.rows.size(); ++i) {
    os << done[i]->index;
    for (const auto& [k, v] : done[i]->params) os << "\t" << v;
    for (double v : h.rows[i]) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "\t%.2f", 100.0 * v);
      os << buf;
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace robustlab
