#include "framework/toml/toml_reader.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace robustlab {
namespace {

std::string typeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::array: return "array";
    case toml::node_type::table: return "table";
    default: return "date/time";
  }
}

const toml::table& emptyTable() {
  static const toml::table kEmpty;
  return kEmpty;
}

}  // namespace

TomlReader::TomlReader(const toml::table& table, std::string file, std::string prefix)
    : table_(table), file_(std::move(file)), prefix_(std::move(prefix)) {}

namespace {

std::string location(const std::string& file, const toml::node* n) {
  if (!n || !n->source().begin) return file;
  return file + ":" + std::to_string(n->source().begin.line);
}

size_t editDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

void TomlReader::fail(const std::string& key, const std::string& what) const {
  throw ConfigError(location(file_, table_.get(key)) + ": field '" + field(key) + "': " + what);
}

const toml::node* TomlReader::node(const std::string& key) {
  used_.insert(key);
  return table_.get(key);
}

std::string TomlReader::str(const std::string& key, const std::string& def) {
  const auto* n = node(key);
  if (!n) return def;
  if (!n->is_string()) fail(key, "expected a string, got " + typeName(*n));
  return n->as_string()->get();
}

int64_t TomlReader::integer(const std::string& key, int64_t def, int64_t lo, int64_t hi) {
  const auto* n = node(key);
  if (!n) return def;
  if (!n->is_integer()) fail(key, "expected an integer, got " + typeName(*n));
  const int64_t v = n->as_integer()->get();
  if (v < lo || v > hi) {
    std::string range = lo == INT64_MIN ? "<= " + std::to_string(hi)
                        : hi == INT64_MAX ? ">= " + std::to_string(lo)
                                          : "in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    fail(key, "value " + std::to_string(v) + " out of range, expected " + range);
  }
  return v;
}

double TomlReader::real(const std::string& key, double def, double lo, double hi) {
  const auto* n = node(key);
  if (!n) return def;
  double v;
  if (n->is_floating_point()) v = n->as_floating_point()->get();
  else if (n->is_integer()) v = static_cast<double>(n->as_integer()->get());
  else fail(key, "expected a number, got " + typeName(*n));
  if (!(v >= lo && v <= hi)) {
    std::ostringstream os;
    os << "value " << v << " out of range, expected in [" << lo << ", " << hi << "]";
    fail(key, os.str());
  }
  return v;
}

bool TomlReader::boolean(const std::string& key, bool def) {
  const auto* n = node(key);
  if (!n) return def;
  if (!n->is_boolean()) fail(key, "expected true or false, got " + typeName(*n));
  return n->as_boolean()->get();
}

std::vector<int64_t> TomlReader::integers(const std::string& key, const std::vector<int64_t>& def) {
  const auto* n = node(key);
  if (!n) return def;
  if (!n->is_array()) fail(key, "expected an array of integers, got " + typeName(*n));
  std::vector<int64_t> out;
  for (const auto& e : *n->as_array()) {
    if (!e.is_integer()) fail(key, "expected an array of integers, found an element of type " + typeName(e));
    out.push_back(e.as_integer()->get());
  }
  return out;
}

std::vector<double> TomlReader::reals(const std::string& key, const std::vector<double>& def) {
  const auto* n = node(key);
  if (!n) return def;
  if (!n->is_array()) fail(key, "expected an array of numbers, got " + typeName(*n));
  std::vector<double> out;
  for (const auto& e : *n->as_array()) {
    if (e.is_floating_point()) out.push_back(e.as_floating_point()->get());
    else if (e.is_integer()) out.push_back(static_cast<double>(e.as_integer()->get()));
    else fail(key, "expected an array of numbers, found an element of type " + typeName(e));
  }
  return out;
}

std::vector<std::string> TomlReader::strings(const std::string& key, const std::vector<std::string>& def) {
  const auto* n = node(key);
  if (!n) return def;
  if (!n->is_array()) fail(key, "expected an array of strings, got " + typeName(*n));
  std::vector<std::string> out;
  for (const auto& e : *n->as_array()) {
    if (!e.is_string()) fail(key, "expected an array of strings, found an element of type " + typeName(e));
    out.push_back(e.as_string()->get());
  }
  return out;
}

std::string TomlReader::choice(const std::string& key, const std::string& def, const std::vector<std::string>& allowed) {
  const std::string v = str(key, def);
  for (const auto& a : allowed)
    if (a == v) return v;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  fail(key, "unknown value '" + v + "', expected one of: " + list);
}

TomlReader TomlReader::sub(const std::string& key) {
  const auto* n = node(key);
  if (!n) return TomlReader(emptyTable(), file_, field(key));
  if (!n->is_table()) fail(key, "expected a table [" + field(key) + "], got " + typeName(*n));
  return TomlReader(*n->as_table(), file_, field(key));
}

std::vector<const toml::table*> TomlReader::tables(const std::string& key) {
  const auto* n = node(key);
  std::vector<const toml::table*> out;
  if (!n) return out;
  if (!n->is_array()) fail(key, "expected an array of tables [[" + field(key) + "]], got " + typeName(*n));
  for (const auto& e : *n->as_array()) {
    if (!e.is_table()) fail(key, "expected an array of tables, found an element of type " + typeName(e));
    out.push_back(e.as_table());
  }
  return out;
}

void TomlReader::rejectUnknown() const {
  for (const auto& [k, v] : table_) {
    const std::string key(k.str());
    if (!used_.count(key)) {
      std::string valid, nearest;
      size_t best = SIZE_MAX;
      for (const auto& u : used_) {
        valid += (valid.empty() ? "" : ", ") + u;
        const size_t d = editDistance(key, u);
        if (d < best) {
          best = d;
          nearest = u;
        }
      }
      const std::string hint = best <= std::max<size_t>(2, key.size() / 3) ? "; did you mean '" + field(nearest) + "'?" : "";
      throw ConfigError(location(file_, &v) + ": unknown key '" + field(key) + "'" + hint + " (valid keys here: " + valid + ")");
    }
  }
}

toml::table parseToml(const std::string& text, const std::string& file) {
  try {
    return toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw ConfigError(file + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) + ": TOML syntax error: " +
                      std::string(e.description()));
  }
}

std::string readConfigText(const std::string& path) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(st)) throw ConfigError(path + ": config file not found");
  if (!std::filesystem::is_regular_file(st)) throw ConfigError(path + ": not a config file (expected a TOML file, got a directory or special file)");
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot read config file");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": cannot read config file");
  return ss.str();
}

toml::table parseTomlFile(const std::string& path) { return parseToml(readConfigText(path), path); }

}  // namespace robustlab
