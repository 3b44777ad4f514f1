#include "framework/runtime/progress.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>

namespace robustlab {
namespace {
std::atomic<bool> gQuiet{false};
constexpr double kLogIntervalSeconds = 10.0;
constexpr double kTtyIntervalSeconds = 0.1;
}  // namespace

void Progress::setQuiet(bool quiet) { gQuiet = quiet; }
bool Progress::quiet() { return gQuiet; }

std::string formatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  const long total = std::lround(s);
  if (total >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", total / 3600, (total / 60) % 60);
  else if (total >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", total / 60, total % 60);
  else std::snprintf(buf, sizeof buf, "%.1fs", s);
  return buf;
}

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total > 0 ? total : 1), enabled_(enabled && !gQuiet), tty_(isatty(STDERR_FILENO) != 0) {
  start_ = lastDraw_ = std::chrono::steady_clock::now();
}

Progress::~Progress() {
  if (!finished_) finish();
}

void Progress::advance(int64_t n, const std::string& status) {
  done_ += n;
  if (!status.empty()) status_ = status;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - lastDraw_).count();
  if (since >= (tty_ ? kTtyIntervalSeconds : kLogIntervalSeconds)) {
    lastDraw_ = now;
    draw(false);
  }
}

void Progress::advanceTo(int64_t done, const std::string& status) { advance(std::max<int64_t>(0, done - done_), status); }

void Progress::finish(const std::string& status) {
  if (finished_) return;
  finished_ = true;
  if (!status.empty()) status_ = status;
  if (enabled_) draw(true);
}

void Progress::draw(bool final) {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
  const double eta = frac > 0 ? elapsed * (1.0 - frac) / frac : NAN;
  if (tty_) {
    constexpr int kWidth = 28;
    const int filled = static_cast<int>(frac * kWidth);
    std::string bar(filled, '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r%-18s [%s] %3.0f%% %s %s %s\033[K", label_.c_str(), bar.c_str(), frac * 100.0,
                 final ? formatDuration(elapsed).c_str() : ("ETA " + formatDuration(eta)).c_str(), status_.c_str(), final ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s: %3.0f%% elapsed %s%s %s\n", label_.c_str(), frac * 100.0, formatDuration(elapsed).c_str(),
                 final ? "" : (" ETA " + formatDuration(eta)).c_str(), status_.c_str());
  }
  std::fflush(stderr);
}

}  // namespace robustlab
