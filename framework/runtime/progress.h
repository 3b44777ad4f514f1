#pragma once
// Progress reporting for long work: a bar with ETA on a terminal, periodic plain lines otherwise
// (logs, CI). Writes to stderr so tables on stdout stay clean.
#include <chrono>
#include <cstdint>
#include <string>

namespace robustlab {

class Progress {
 public:
  /// `total` units of work; `label` prefixes every line. Quiet when `enabled` is false.
  Progress(std::string label, int64_t total, bool enabled = true);
  ~Progress();
  /// Adds `n` done units; `status` is a short text shown after the bar (e.g. "loss 0.41").
  void advance(int64_t n, const std::string& status = "");
  /// Sets the done units to `done` (never backwards): progress within a unit of work reported as it goes.
  void advanceTo(int64_t done, const std::string& status = "");
  int64_t done() const { return done_; }
  void finish(const std::string& status = "");

  /// Globally silences progress output (tests, --quiet).
  static void setQuiet(bool quiet);
  static bool quiet();

 private:
  void draw(bool final);
  std::string label_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::string status_;
  std::chrono::steady_clock::time_point start_, lastDraw_;
};

/// "1m23s" style durations.
std::string formatDuration(double seconds);

/// Seconds of wall time since `t0` (steady clock).
inline double secondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace robustlab
