#include "framework/config/sections.h"

#include "framework/toml/toml_reader.h"

#include <sstream>

namespace robustlab {
namespace {

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
      return config::fromTable(table, what);
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
