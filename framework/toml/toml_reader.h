#pragma once
// Strict, typed access to a TOML table: every error names the file, the field and what was
// expected; keys nobody asked for are reported as unknown. Used for configs and model specs.
#include <toml++/toml.h>

#include <cstdint>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace robustlab {

/// A configuration error: message is one line "FILE: field KEY: what is wrong (expected ...)".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A number written as text: "0.1", or a fraction "8/255" (as papers and RobustBench write eps); nullopt
/// for anything else.
std::optional<double> numberFromText(const std::string& text);
/// `value` (TOML text of a --set override) with every bare fraction outside strings quoted, so that
/// "[0, 8/255]" parses as [0, "8/255"], which numeric fields read as 8/255.
std::string quoteBareFractions(const std::string& value);

/// One key as a reader asked for it: its dotted path ("finetune.epochs", "arms[0].name"), what it
/// takes and its default, as TOML writes it ("" when it has none).
struct KeyRecord {
  std::string path, type, def;
};

/// While one lives, every typed read of a TomlReader on this thread is recorded, once per path (the
/// configuration reference is generated this way: reading a config records every key it can hold).
class KeyRecorder {
 public:
  KeyRecorder();
  ~KeyRecorder();
  KeyRecorder(const KeyRecorder&) = delete;
  KeyRecorder& operator=(const KeyRecorder&) = delete;
  const std::vector<KeyRecord>& keys() const { return keys_; }
  /// Records a key with the live recorder of this thread, if any.
  static void note(const std::string& path, const std::string& type, const std::string& def);

 private:
  std::vector<KeyRecord> keys_;
  KeyRecorder* previous_;
};

class TomlReader {
 public:
  /// `file` is used in messages; `prefix` is the dotted path of `table` ("" for the root).
  TomlReader(const toml::table& table, std::string file, std::string prefix = "");

  std::string str(const std::string& key, const std::string& def);
  int64_t integer(const std::string& key, int64_t def, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX);
  double real(const std::string& key, double def, double lo = -1e300, double hi = 1e300);
  bool boolean(const std::string& key, bool def);
  std::vector<int64_t> integers(const std::string& key, const std::vector<int64_t>& def);
  std::vector<double> reals(const std::string& key, const std::vector<double>& def);
  std::vector<std::string> strings(const std::string& key, const std::vector<std::string>& def);
  /// A string that must be one of `allowed`.
  std::string choice(const std::string& key, const std::string& def, const std::vector<std::string>& allowed);

  bool has(const std::string& key) const { return table_.contains(key); }
  /// The node at `key` of any type (nullptr when absent); marks the key used. A caller that reads a
  /// key this way says what it takes with describe(), for the configuration reference.
  const toml::node* raw(const std::string& key) { return node(key); }
  void describe(const std::string& key, const std::string& type, const std::string& def) const { KeyRecorder::note(field(key), type, def); }
  /// A sub-table reader (an empty table when absent); marks the key used.
  TomlReader sub(const std::string& key);
  /// The array of tables at `key` (empty when absent); marks the key used.
  std::vector<const toml::table*> tables(const std::string& key);

  /// Throws ConfigError for the first key that was never read.
  void rejectUnknown() const;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  std::string field(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  const std::string& file() const { return file_; }

 private:
  const toml::node* node(const std::string& key);
  std::string text(const std::string& key, const std::string& def);
  const toml::table& table_;
  std::string file_, prefix_;
  std::set<std::string> used_;
};

/// Parses TOML text; a syntax error becomes a ConfigError "FILE:LINE:COL: message".
toml::table parseToml(const std::string& text, const std::string& file);
/// The text of a config file; a missing, unreadable or non-regular path is a ConfigError naming it.
std::string readConfigText(const std::string& path);
toml::table parseTomlFile(const std::string& path);

}  // namespace robustlab
