#include "experiments/plan/verdict.h"

#include <cmath>
#include <cstdio>

namespace robustlab {
namespace {

std::string points(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f", 100.0 * fraction);
  return buf;
}

/// "a (+1.0), b (-2.0)"
std::string listed(const std::vector<const Finding*>& fs) {
  std::string s;
  for (const auto* f : fs) s += (s.empty() ? "" : ", ") + f->arm + " (" + points(f->difference) + ")";
  return s;
}

}  // namespace

Verdict verdictOf(const Finding& f) {
  if (f.seeds < kFirmSeeds) return Verdict::kTooFewSeeds;
  const bool excludesZero = std::isfinite(f.ciLow) && f.ciLow < f.ciHigh && (f.ciLow > 0 || f.ciHigh < 0);
  if (!excludesZero || !(f.pairedP < 0.05)) return Verdict::kUnclear;
  return f.difference > 0 ? Verdict::kMore : Verdict::kLess;
}

std::string headlineSentence(const std::vector<Finding>& findings, double eps) {
  if (findings.empty()) return "";
  std::vector<const Finding*> more, less, unclear;
  int64_t seeds = findings.front().seeds;
  for (const auto& f : findings) {
    seeds = std::min(seeds, f.seeds);
    const Verdict v = verdictOf(f);
    (v == Verdict::kMore ? more : v == Verdict::kLess ? less : unclear).push_back(&f);
  }
  char at[64];
  std::snprintf(at, sizeof at, "at eps %g", eps);
  const std::string over = std::to_string(seeds) + (seeds == 1 ? " seed" : " seeds");
  std::vector<const Finding*> all;
  for (const auto& f : findings) all.push_back(&f);
  if (seeds < kFirmSeeds)
    return "No verdict yet: " + over + " are too few for a firm conclusion (at least " + std::to_string(kFirmSeeds) + "); " + at +
           ", robust accuracy minus the baseline's, in points: " + listed(all) + ".";
  std::string parts;
  auto add = [&](const std::string& what, const std::vector<const Finding*>& fs) {
    if (!fs.empty()) parts += (parts.empty() ? "" : "; ") + what + ": " + listed(fs);
  };
  add("more robust than the baseline", more);
  add("less robust", less);
  add("no clear difference", unclear);
  std::string lead;
  if (!more.empty() && less.empty() && unclear.empty()) lead = "Yes: every pre-trained arm was more robust than its baseline";
  else if (!more.empty()) lead = "Partly: " + std::to_string(more.size()) + " of " + std::to_string(findings.size()) + " pre-trained arms were more robust than their baselines";
  else if (unclear.empty()) lead = "No: every pre-trained arm was less robust than its baseline";
  else if (less.empty()) lead = "No clear answer: no pre-trained arm differed clearly from its baseline";
  else lead = "Not shown: no pre-trained arm was clearly more robust than its baseline";
  return lead + " " + at + " (worst-case robust accuracy, " + over + ", points; a difference counts when its 95% interval excludes 0 and the paired t-test gives p < 0.05): " +
         parts + ".";
}

}  // namespace robustlab
