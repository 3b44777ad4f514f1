#include "experiments/report/report_answer.h"

#include "experiments/report/report_figures.h"

#include <algorithm>
#include <cmath>

namespace robustlab::report {
namespace {

std::string points(double fraction) { return fmt("%+.1f", 100.0 * fraction); }

std::string seedList(const ReportData& d) {
  std::string s;
  for (auto seed : d.seeds) s += (s.empty() ? "" : ", ") + std::to_string(seed);
  return s;
}

std::string attackList(const ReportData& d) {
  std::string s;
  for (const auto& a : d.attacks) s += (s.empty() ? "" : ", ") + a;
  return s;
}

std::string metaOr(const ReportData& d, const std::string& key, const std::string& fallback) {
  auto it = d.meta.find(key);
  return it == d.meta.end() || it->second.empty() ? fallback : it->second;
}

Finding findingOf(const ReportData& d, const ComparisonReport& c, size_t e) {
  return {c.arm, c.baseline, c.meanDifference[e], c.ciLow[e], c.ciHigh[e], c.pairedP[e],
          std::min(d.arm(c.arm).nSeeds, d.arm(c.baseline).nSeeds)};
}

}  // namespace

std::string headline(const ReportData& d) {
  std::vector<Finding> findings;
  for (const auto& c : d.comparisons) findings.push_back(findingOf(d, c, d.headline));
  return d.eps.empty() ? "" : headlineSentence(findings, d.eps[d.headline]);
}

std::string comparisonSentence(const ReportData& d, const ComparisonReport& c, size_t e) {
  const double diff = c.meanDifference[e], lo = c.ciLow[e], hi = c.ciHigh[e];
  const int64_t seeds = std::min(d.arm(c.arm).nSeeds, d.arm(c.baseline).nSeeds);
  std::string s = c.arm + " against " + c.baseline + ": " + points(diff) + " points of robust accuracy at eps " + fmt("%g", d.eps[e]);
  s += std::isfinite(lo) ? " (95% CI [" + points(lo) + ", " + points(hi) + "]" : " (no interval with one seed";
  auto is = [](double p) { const std::string v = pval(p); return v[0] == '<' ? " " + v : " = " + v; };  // "p < 1e-300", "p = 0.03"
  s += "; paired t-test p" + is(c.pairedP[e]) + "; McNemar p" + is(c.mcnemarP[e]) + "; " + std::to_string(seeds) +
       (seeds == 1 ? " seed)" : " seeds)");
  switch (verdictOf(findingOf(d, c, e))) {
    case Verdict::kTooFewSeeds: s += " — too few seeds for a firm conclusion"; break;
    case Verdict::kMore: s += " — more robust than " + c.baseline; break;
    case Verdict::kLess: s += " — less robust than " + c.baseline; break;
    case Verdict::kUnclear: s += " — no clear difference"; break;
  }
  if (std::isfinite(lo) && lo == hi && diff != 0) s += " (every seed gave the same difference, so the interval has no width)";
  const int64_t failed = d.arm(c.arm).failedChecks + d.arm(c.baseline).failedChecks;
  if (failed > 0) s += "; " + std::to_string(failed) + " sanity check(s) failed in these arms, so robust accuracy may be overstated";
  return s + ".";
}

namespace {

/// One sentence per [robustness] axis the comparison has (calibration, out-of-distribution detection,
/// corruptions): the arm's difference from its baseline, mean over seeds, with the paired t-test's p.
std::vector<std::string> axisSentences(const ComparisonReport& c) {
  std::vector<std::string> out;
  auto diff = [&](const std::string& key) { return fmt("%+.1f", 100.0 * c.axes.at(key).meanDifference) + " points (p = " + fmt("%.3g", c.axes.at(key).pairedP) + ")"; };
  const std::string who = c.arm + " against " + c.baseline + ": ";
  if (c.axes.count("calibration/rms_error"))
    out.push_back(who + "calibration, RMS calibration error " + diff("calibration/rms_error") + ", ECE " + diff("calibration/ece") +
                  " (lower is better calibrated)");
  std::string ood;
  for (const auto& [key, v] : c.axes)
    if (key.rfind("ood/", 0) == 0 && key.size() > 10 && key.compare(key.size() - 10, 10, "/msp/auroc") == 0)
      ood += (ood.empty() ? "" : ", ") + key.substr(4, key.size() - 14) + " " + diff(key);
  if (!ood.empty()) out.push_back(who + "out-of-distribution detection, AUROC of the maximum softmax probability: " + ood + " (higher detects better)");
  if (c.axes.count("corruptions/mean_accuracy"))
    out.push_back(who + "accuracy under common corruptions " + diff("corruptions/mean_accuracy") +
                  (std::isnan(c.mce) ? std::string() : ", mCE " + fmt("%.2f", c.mce) + " (below 1: fewer errors under corruption than the baseline)") +
                  (std::isnan(c.relativeMce) ? std::string() : ", relative mCE " + fmt("%.2f", c.relativeMce) + " (below 1: degrades less from its clean accuracy)"));
  return out;
}

void axesParagraph(Doc& doc, const ReportData& d) {
  std::vector<std::string> all;
  for (const auto& c : d.comparisons)
    for (const auto& s : axisSentences(c)) all.push_back(s);
  if (all.empty()) return;
  doc.html << "<p>Beyond adversarial examples ([robustness]; differences over seeds, paired t-test):</p>\n<ul class=\"answers\">\n";
  doc.md << "Beyond adversarial examples ([robustness]; differences over seeds, paired t-test):\n\n";
  for (const auto& s : all) {
    doc.html << "<li>" << esc(s) << "</li>\n";
    doc.md << "- " << mdEscape(s) << "\n";
  }
  doc.html << "</ul>\n";
  doc.md << "\n";
}

}  // namespace

void answerSection(Doc& doc, const ReportData& d, const std::string& figDir) {
  doc.section("answer", "Does pre-training make the fine-tuned model more robust?");
  const std::string machine = "Measured on " + metaOr(d, "device", "?") + " (" + metaOr(d, "cpu_model", "?") + ", kernel path " +
                              metaOr(d, "kernel_path", "?") + "), precision " + metaOr(d, "precision", "?") + ", robustlab " +
                              metaOr(d, "robustlab_version", "?") + ", config hash " + metaOr(d, "config_hash", "?") + "; seeds " +
                              seedList(d) + "; " + std::to_string(d.testImages) + " test images per arm and seed; attacks " +
                              attackList(d) + " (" + d.norm + ").";
  doc.html << "<p class=\"machine\">" << esc(machine) << "</p>\n";
  doc.md << "*" << mdEscape(machine) << "*\n\n";
  if (d.comparisons.empty()) {
    doc.html << "<p>No arm names a baseline in this experiment, so no arm is compared with another within it.</p>\n";
    doc.md << "No arm names a baseline in this experiment, so no arm is compared with another within it.\n\n";
    doc.end();
    return;
  }
  const std::string verdict = headline(d);
  doc.html << "<p class=\"headline\"><strong>" << esc(verdict) << "</strong></p>\n";
  doc.md << "**" << mdEscape(verdict) << "**\n\n";
  doc.html << "<ul class=\"answers\">\n";
  for (const auto& c : d.comparisons) {
    const std::string sentence = comparisonSentence(d, c, d.headline);
    doc.html << "<li>" << esc(sentence) << "</li>\n";
    doc.md << "- " << mdEscape(sentence) << "\n";
  }
  doc.html << "</ul>\n";
  doc.md << "\n";
  std::vector<ForestRow> rows;
  for (const auto& c : d.comparisons)
    for (size_t e = 0; e < d.eps.size(); ++e) {
      if (d.eps[e] == 0) continue;
      rows.push_back({c.arm + " vs " + c.baseline + ", eps " + fmt("%g", d.eps[e]), c.arm + " vs " + c.baseline, d.eps[e],
                      100.0 * c.meanDifference[e], 100.0 * c.ciLow[e], 100.0 * c.ciHigh[e], c.pairedP[e], c.mcnemarP[e]});
    }
  if (!rows.empty())
    doc.figure(forestSvg(figDir + "/forest.svg", rows, "arm minus baseline: worst-case robust accuracy (points)"),
               "figures/forest.svg", "each arm against its baseline: mean difference over seeds with its 95% interval (Student t over "
                                     "the per-seed paired differences); right of the dashed line = more robust than the baseline");
  const std::string rules = "How the sentences are made: at eps " + fmt("%g", d.eps[d.headline]) +
                            (d.headlineIsTrainingEps ? " (the eps the arms were adversarially fine-tuned at)" : " (the largest of the grid)") +
                            "; with fewer than " + std::to_string(kFirmSeeds) +
                            " seeds there is no verdict (too few for a firm conclusion); otherwise \"more/less robust\" needs the 95% "
                            "interval to exclude 0 and the paired t-test over seeds p < 0.05, else \"no clear difference\"; failed gradient-masking checks in either arm are "
                            "named. Robust accuracy is the worst case per example over the attacks listed, an upper bound on the "
                            "true robust accuracy" + std::string(std::find(d.attacks.begin(), d.attacks.end(), "autoattack") == d.attacks.end()
                                                                     ? " (AutoAttack was not run)." : ".");
  doc.html << "<p class=\"rules\">" << esc(rules) << "</p>\n";
  doc.md << mdEscape(rules) << "\n\n";
  axesParagraph(doc, d);
  doc.end();
}

}  // namespace robustlab::report
