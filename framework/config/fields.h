#pragma once
// The config's field tables: each key of a section once, with its type, its range or its valid
// names, how it is read (TomlReader: errors name the file, the key and what was expected) and how
// it is written (Config::toToml, --dump-config, the hashes of units and experiments). Reading and
// writing a section are the same loop over the same table, so they cannot drift apart.
#include "framework/toml/toml_reader.h"

#include <cstdint>
#include <functional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace robustlab::config {

template <class T>
struct Field {
  std::string key;
  std::function<void(TomlReader&, T&)> read;
  std::function<void(std::ostream&, const T&)> write;
};

template <class T>
using Fields = std::vector<Field<T>>;

template <class T>
void readFields(const Fields<T>& fields, TomlReader& r, T& v) {
  for (const auto& f : fields) f.read(r, v);
}

template <class T>
void writeFields(const Fields<T>& fields, std::ostream& os, const T& v) {
  for (const auto& f : fields) {
    os << f.key << " = ";
    f.write(os, v);
    os << "\n";
  }
}

/// A TOML string literal (always called qualified: an unqualified call on a std::string& finds
/// std::quoted by argument-dependent lookup).
inline std::string quoted(const std::string& s) {
  std::ostringstream os;
  os << toml::value<std::string>(s);
  return os.str();
}

template <class V>
std::string list(const std::vector<V>& v, const std::function<std::string(const V&)>& item) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + item(v[i]);
  return s + "]";
}

// Builders. `ref` picks the field out of the section struct: [](StageConfig& s) -> int64_t& { ... }.
template <class T>
Field<T> integer(std::string key, int64_t& (*ref)(T&), int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) {
  return {key, [=](TomlReader& r, T& v) { ref(v) = r.integer(key, ref(v), lo, hi); },
          [=](std::ostream& os, const T& v) { os << ref(const_cast<T&>(v)); }};
}

/// A count in [lo, hi], or the string "all" (stored as -1).
template <class T>
Field<T> countOrAll(std::string key, int64_t& (*ref)(T&), int64_t lo, int64_t hi) {
  return {key,
          [=](TomlReader& r, T& v) {
            const int64_t def = ref(v);
            r.describe(key, "integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "] or \"all\"", def < 0 ? "\"all\"" : std::to_string(def));
            const toml::node* n = r.raw(key);
            if (!n) return;
            if (n->is_string() && n->as_string()->get() == "all") ref(v) = -1;
            else if (n->is_integer() && n->as_integer()->get() >= lo && n->as_integer()->get() <= hi) ref(v) = n->as_integer()->get();
            else r.fail(key, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "] or \"all\"");
          },
          [=](std::ostream& os, const T& v) {
            const int64_t x = ref(const_cast<T&>(v));
            if (x < 0) os << "\"all\"";
            else os << x;
          }};
}

template <class T>
Field<T> real(std::string key, double& (*ref)(T&), double lo, double hi) {
  return {key, [=](TomlReader& r, T& v) { ref(v) = r.real(key, ref(v), lo, hi); },
          [=](std::ostream& os, const T& v) { os << ref(const_cast<T&>(v)); }};
}

template <class T>
Field<T> boolean(std::string key, bool& (*ref)(T&)) {
  return {key, [=](TomlReader& r, T& v) { ref(v) = r.boolean(key, ref(v)); },
          [=](std::ostream& os, const T& v) { os << (ref(const_cast<T&>(v)) ? "true" : "false"); }};
}

template <class T>
Field<T> string(std::string key, std::string& (*ref)(T&)) {
  return {key, [=](TomlReader& r, T& v) { ref(v) = r.str(key, ref(v)); },
          [=](std::ostream& os, const T& v) { os << config::quoted(ref(const_cast<T&>(v))); }};
}

/// A string that must be one of `names()` (a registry's list, read when the config is read).
/// `tomlQuoted`: written as TOML writes strings (as free strings are) rather than in double quotes.
template <class T>
Field<T> choice(std::string key, std::string& (*ref)(T&), std::function<std::vector<std::string>()> names, bool tomlQuoted = false) {
  return {key, [=](TomlReader& r, T& v) { ref(v) = r.choice(key, ref(v), names()); },
          [=](std::ostream& os, const T& v) {
            const std::string& x = ref(const_cast<T&>(v));
            if (tomlQuoted) os << config::quoted(x);
            else os << '"' << x << '"';  // registry names need no escaping
          }};
}

/// An enum read and written through its names.
template <class T, class E>
Field<T> enumeration(std::string key, E& (*ref)(T&), E (*parse)(const std::string&), std::string (*name)(E), std::vector<std::string> names) {
  return {key, [=](TomlReader& r, T& v) { ref(v) = parse(r.choice(key, name(ref(v)), names)); },
          [=](std::ostream& os, const T& v) { os << '"' << name(ref(const_cast<T&>(v))) << '"'; }};
}

template <class T>
Field<T> integers(std::string key, std::vector<int64_t>& (*ref)(T&), int64_t lo = INT64_MIN) {
  return {key,
          [=](TomlReader& r, T& v) {
            ref(v) = r.integers(key, ref(v));
            for (auto x : ref(v))
              if (x < lo) r.fail(key, "values must be >= " + std::to_string(lo));
          },
          [=](std::ostream& os, const T& v) { os << list<int64_t>(ref(const_cast<T&>(v)), [](const int64_t& x) { return std::to_string(x); }); }};
}

template <class T>
Field<T> reals(std::string key, std::vector<double>& (*ref)(T&)) {
  return {key, [=](TomlReader& r, T& v) { ref(v) = r.reals(key, ref(v)); },
          [=](std::ostream& os, const T& v) {
            const auto& xs = ref(const_cast<T&>(v));
            os << "[";
            for (size_t i = 0; i < xs.size(); ++i) os << (i ? ", " : "") << xs[i];  // the stream's precision
            os << "]";
          }};
}

template <class T>
Field<T> strings(std::string key, std::vector<std::string>& (*ref)(T&)) {
  return {key, [=](TomlReader& r, T& v) { ref(v) = r.strings(key, ref(v)); },
          [=](std::ostream& os, const T& v) { os << list<std::string>(ref(const_cast<T&>(v)), [](const std::string& s) { return config::quoted(s); }); }};
}

}  // namespace robustlab::config
