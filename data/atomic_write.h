#pragma once
// The one way robustlab writes a file that someone may be reading or may rely on: into a temporary
// beside it, flushed to disk, then renamed over it. A run killed halfway (SIGKILL included) or a full
// disk never leaves a truncated file where a complete one was, and never replaces a good file with
// a broken one.
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace robustlab {

/// A temporary name beside `path`, unique to this process and call: "<path>.tmp-<pid>-<n>@<host>".
std::string temporaryPathFor(const std::string& path);

/// Creates `path`'s parent folders, calls `fill(tmp)` to write the whole file at `tmp`, syncs it and
/// renames it over `path`. Any failure (thrown by `fill`, or from sync or rename) removes the
/// temporary, leaves `path` as it was and throws one line naming `path`.
void writeAtomically(const std::string& path, const std::function<void(const std::string& tmp)>& fill);

/// Removes the temporaries (files or folders named by temporaryPathFor) in `dir` whose process, on
/// this machine, is gone: what a killed run left. Temporaries of live processes, and of other
/// machines sharing the folder, are kept. Returns how many were removed.
int removeStaleTemporaries(const std::string& dir);

/// writeAtomically for text or any bytes; a short write (a full disk) is an error naming the file.
void writeTextAtomically(const std::string& path, const std::string& text);

/// Throws one line naming `flag` and `path` when a file cannot be written there: a folder, a parent
/// that is not a folder or not writable (checked by creating and removing a temporary beside it).
/// Creates missing parent folders, as writing would.
void checkOutputTarget(const std::string& path, const std::string& flag);

/// A command's outputs, all or none: every target is declared and checked before the work starts
/// (the same file named twice, under any spelling, is an error naming both flags); each file is then
/// written complete to a synced temporary beside its target, and commit() moves them all into place at
/// the end. A failure before commit(), or an OutputSet destroyed without one, leaves every target as
/// it was.
class OutputSet {
 public:
  OutputSet() = default;
  OutputSet(const OutputSet&) = delete;
  OutputSet& operator=(const OutputSet&) = delete;
  ~OutputSet();
  /// Declares and checks a target (checkOutputTarget); `flag` names it in errors ("-o", "--json").
  void declare(const std::string& path, const std::string& flag);
  /// Writes `bytes` for a declared target into its temporary.
  void stage(const std::string& path, const std::string& bytes);
  /// Renames every staged temporary over its target.
  void commit();

 private:
  struct Target {
    std::string path, flag, key, tmp;
  };
  std::vector<Target> targets_;
};

}  // namespace robustlab
