#include "framework/toml/toml_reader.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
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

namespace {

thread_local KeyRecorder* liveRecorder = nullptr;

std::string numberText(double v) {
  std::ostringstream os;
  os.precision(10);
  os << v;
  return os.str();
}

std::string quotedText(const std::string& v) {
  if (v.find_first_of("\"\\") == std::string::npos && std::all_of(v.begin(), v.end(), [](char c) { return c >= ' '; })) return "\"" + v + "\"";
  std::ostringstream os;
  os << toml::value<std::string>(v);
  return os.str();
}

template <class T, class F>
std::string listText(const std::vector<T>& v, F item) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + item(v[i]);
  return s + "]";
}

/// "integer", "integer >= 1", "integer in [0, 64]" (the bounds that are set).
template <class T>
std::string rangeText(const std::string& kind, T lo, T hi, T noLo, T noHi, std::string (*text)(T)) {
  if (lo == noLo && hi == noHi) return kind;
  if (hi == noHi) return kind + " >= " + text(lo);
  if (lo == noLo) return kind + " <= " + text(hi);
  return kind + " in [" + text(lo) + ", " + text(hi) + "]";
}

std::string intText(int64_t v) { return std::to_string(v); }

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}
std::string realText(double v) { return numberText(v); }

}  // namespace

// Every typed read below describes its key only while a recorder lives (`if (liveRecorder)`), so
// ordinary config reading builds none of the reference's strings.
KeyRecorder::KeyRecorder() : previous_(liveRecorder) { liveRecorder = this; }
KeyRecorder::~KeyRecorder() { liveRecorder = previous_; }

void KeyRecorder::note(const std::string& path, const std::string& type, const std::string& def) {
  if (!liveRecorder) return;
  for (const auto& k : liveRecorder->keys_)
    if (k.path == path) return;
  liveRecorder->keys_.push_back({path, type, def});
}

std::string TomlReader::text(const std::string& key, const std::string& def) {
  const auto* n = node(key);
  if (!n) return def;
  if (!n->is_string()) fail(key, "expected a string, got " + typeName(*n));
  return n->as_string()->get();
}

std::string TomlReader::str(const std::string& key, const std::string& def) {
  if (liveRecorder) describe(key, "string", quotedText(def));
  return text(key, def);
}

int64_t TomlReader::integer(const std::string& key, int64_t def, int64_t lo, int64_t hi) {
  if (liveRecorder) describe(key, rangeText<int64_t>("integer", lo, hi, INT64_MIN, INT64_MAX, intText), std::to_string(def));
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

std::optional<double> numberFromText(const std::string& text) {
  auto number = [](const std::string& s) -> std::optional<double> {
    const auto b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
    if (b == std::string::npos) return std::nullopt;
    const std::string t = s.substr(b, e - b + 1);
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(t, &used);
    } catch (const std::exception&) {
      return std::nullopt;
    }
    if (used != t.size() || !std::isfinite(v)) return std::nullopt;
    return v;
  };
  const auto slash = text.find('/');
  if (slash == std::string::npos) return number(text);
  const auto num = number(text.substr(0, slash)), den = number(text.substr(slash + 1));
  if (!num || !den || *den == 0) return std::nullopt;
  return *num / *den;
}

std::string quoteBareFractions(const std::string& value) {
  std::string out;
  char quote = 0;
  for (size_t i = 0; i < value.size(); ++i) {
    const char ch = value[i];
    if (quote) {
      out += ch;
      if (ch == '\\' && quote == '"' && i + 1 < value.size()) out += value[++i];
      else if (ch == quote) quote = 0;
      continue;
    }
    if (ch == '"' || ch == '\'') {
      quote = ch;
      out += ch;
      continue;
    }
    // A run of number characters holding one '/': a fraction.
    const size_t end = value.find_first_not_of("0123456789.eE+-/", i);
    const std::string run = value.substr(i, end == std::string::npos ? std::string::npos : end - i);
    if (!run.empty() && std::isdigit(static_cast<unsigned char>(run[0]) ) && run.find('/') != std::string::npos && numberFromText(run)) {
      out += "\"" + run + "\"";
      i += run.size() - 1;
      continue;
    }
    out += ch;
  }
  return out;
}

double TomlReader::real(const std::string& key, double def, double lo, double hi) {
  if (liveRecorder) describe(key, rangeText<double>("number", lo, hi, -1e300, 1e300, realText), numberText(def));
  const auto* n = node(key);
  if (!n) return def;
  double v = 0;
  if (n->is_floating_point()) v = n->as_floating_point()->get();
  else if (n->is_integer()) v = static_cast<double>(n->as_integer()->get());
  else if (n->is_string() && numberFromText(n->as_string()->get())) v = *numberFromText(n->as_string()->get());
  else fail(key, "expected a number (0.1, or a fraction as a string: \"8/255\"), got " + typeName(*n));
  if (!(v >= lo && v <= hi)) {
    std::ostringstream os;
    os << "value " << v << " out of range, expected in [" << lo << ", " << hi << "]";
    fail(key, os.str());
  }
  return v;
}

bool TomlReader::boolean(const std::string& key, bool def) {
  if (liveRecorder) describe(key, "true or false", def ? "true" : "false");
  const auto* n = node(key);
  if (!n) return def;
  if (!n->is_boolean()) fail(key, "expected true or false, got " + typeName(*n));
  return n->as_boolean()->get();
}

std::vector<int64_t> TomlReader::integers(const std::string& key, const std::vector<int64_t>& def) {
  if (liveRecorder) describe(key, "list of integers", listText(def, intText));
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
  if (liveRecorder) describe(key, "list of numbers", listText(def, realText));
  const auto* n = node(key);
  if (!n) return def;
  if (!n->is_array()) fail(key, "expected an array of numbers, got " + typeName(*n));
  std::vector<double> out;
  for (const auto& e : *n->as_array()) {
    if (e.is_floating_point()) out.push_back(e.as_floating_point()->get());
    else if (e.is_integer()) out.push_back(static_cast<double>(e.as_integer()->get()));
    else if (e.is_string() && numberFromText(e.as_string()->get())) out.push_back(*numberFromText(e.as_string()->get()));
    else fail(key, "expected an array of numbers (0.1, or a fraction as a string: \"8/255\"), found an element of type " + typeName(e));
  }
  return out;
}

std::vector<std::string> TomlReader::strings(const std::string& key, const std::vector<std::string>& def) {
  if (liveRecorder) describe(key, "list of strings", listText(def, quotedText));
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
  if (liveRecorder) describe(key, "one of: " + joined(allowed), quotedText(def));
  const std::string v = text(key, def);
  for (const auto& a : allowed)
    if (a == v) return v;
  fail(key, "unknown value '" + v + "', expected one of: " + joined(allowed));
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

namespace {

/// " in 'section.key'" for the key written on `line` of `text` (under the last [table] header above
/// it), with a hint when the value is a bare fraction; "" when the line names no key.
std::string keyAtLine(const std::string& text, size_t line) {
  std::istringstream in(text);
  std::string l, section, here;
  for (size_t i = 1; std::getline(in, l) && i <= line; ++i) {
    const auto b = l.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    if (l[b] == '[') {
      const auto open = l.find_first_not_of("[", b), close = l.find(']', b);
      if (close != std::string::npos && open < close) section = l.substr(open, close - open);
    }
    if (i == line) here = l;
  }
  const auto eq = here.find('=');
  if (eq == std::string::npos) return "";
  std::string key = here.substr(0, eq);
  key.erase(0, key.find_first_not_of(" \t"));
  key.erase(key.find_last_not_of(" \t") + 1);
  if (key.empty() || key[0] == '#' || key[0] == '[') return "";
  std::string s = " in '" + (section.empty() ? key : section + "." + key) + "'";
  const std::string value = here.substr(eq + 1);
  for (size_t i = 1; i + 1 < value.size(); ++i)
    if (value[i] == '/' && std::isdigit(static_cast<unsigned char>(value[i - 1])) && std::isdigit(static_cast<unsigned char>(value[i + 1])))
      return s + " (write a fraction as a string: \"8/255\")";
  return s;
}

}  // namespace

toml::table parseToml(const std::string& text, const std::string& file) {
  try {
    return toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw ConfigError(file + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) + ": TOML syntax error" +
                      keyAtLine(text, b.line) + ": " + std::string(e.description()));
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
