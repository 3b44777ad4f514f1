#include "experiments/report/report.h"

#include "experiments/report/report_answer.h"
#include "experiments/report/report_data.h"
#include "experiments/report/report_latex.h"
#include "experiments/report/report_robustness.h"
#include "experiments/report/report_doc.h"
#include "experiments/report/report_figures.h"
#include "experiments/report/report_sweep.h"
#include "data/atomic_write.h"
#include "experiments/plan/statistics.h"
#include "data/h5io.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace robustlab {
namespace fs = std::filesystem;
namespace {
using namespace report;

std::string epsHead(double e) { return "eps " + fmt("%g", e); }

void summarySection(Doc& doc, const ReportData& d, const std::string& id, const std::string& title) {
  doc.section(id, title);
  doc.html << "<p>Robust accuracy (%) over all evaluated test examples (clean mistakes count as not robust), mean ± 95% "
              "confidence half-width over seeds. <b>worst</b> = worst case over all attacks and all smaller eps, per example.</p>\n";
  std::vector<std::string> head = {"arm", "pre-training", "fine-tuning", "labels/class", "attack", "clean"};
  for (size_t e = 1; e < d.eps.size(); ++e) head.push_back(epsHead(d.eps[e]));
  std::vector<std::vector<std::string>> rows;
  for (const auto& a : d.arms) {
    std::vector<std::pair<std::string, const SeriesCi*>> lines = {{"worst", &a.worst}};
    for (const auto& [name, s] : a.perAttack) lines.emplace_back(name, &s);
    for (const auto& [name, s] : lines) {
      std::vector<std::string> row = {a.name, a.pretrain, a.objective + ", " + a.mode, std::to_string(a.perClass), name, pct(a.clean, 0)};
      for (size_t e = 1; e < d.eps.size(); ++e) row.push_back(pct(*s, e));
      rows.push_back(row);
    }
  }
  doc.table(head, rows);
  doc.end();
}

void curvesSection(Doc& doc, const ReportData& d, const std::string& figDir) {
  doc.section("curves", "Accuracy against eps");
  std::vector<Panel> panels;
  for (const auto& a : d.arms) {
    Panel p{a.name, {}, a.seedWorst, a.worst.mean};
    for (auto seed : d.seeds) p.seedNames.push_back("seed " + std::to_string(seed));
    panels.push_back(std::move(p));
  }
  doc.figure(smallMultiplesSvg(figDir + "/arms-worst.svg", d.eps, panels, "eps (" + d.norm + ")", "robust accuracy (%)"),
             "figures/arms-worst.svg", "worst-case robust accuracy against eps, one panel per arm on the same scales: each seed a thin grey "
                                       "line, their mean black");
  std::vector<std::string> attacks = {"worst"};
  for (const auto& [name, _] : d.arms.front().perAttack) attacks.push_back(name);
  for (const auto& attack : attacks) {
    std::vector<PlotSeries> series;
    for (const auto& a : d.arms) {
      const SeriesCi& s = attack == "worst" ? a.worst : a.perAttack.at(attack);
      series.push_back({a.name, d.eps, s.mean, {}, {}});  // bands of every arm on one plot would hide each other: small multiples show the seeds
    }
    const std::string file = "figures/curve-" + attack + ".svg";
    const std::string svg = plotSvg(figDir + "/curve-" + attack + ".svg", "eps (" + d.norm + ")", "robust accuracy (%)", series, true);
    doc.figure(svg, file, attack + ": robust accuracy against eps, mean over seeds (the summary table has the 95% intervals)");
  }
  doc.end();
}

void comparisonSection(Doc& doc, const ReportData& d) {
  doc.section("comparison", "Pre-trained against from scratch");
  doc.html << "<p>Difference in robust accuracy (worst case, percentage points) of each arm against its baseline: mean over "
              "seeds, paired two-sided t-test over seeds (training randomness), Cohen's d, and an exact McNemar test on the "
              "per-example results pooled over seeds (test-set sampling).</p>\n";
  if (d.comparisons.empty()) doc.html << "<p>No arm names a baseline in this experiment.</p>\n";
  std::vector<std::string> head = {"arm", "baseline", "eps", "difference (points)", "paired t-test p", "Cohen's d", "McNemar p"};
  std::vector<std::vector<std::string>> rows, classes;
  for (const auto& c : d.comparisons) {
    for (size_t e = 0; e < d.eps.size(); ++e) {
      rows.push_back({c.arm, c.baseline, fmt("%g", d.eps[e]), fmt("%+.2f", 100.0 * c.meanDifference[e]), pval(c.pairedP[e]),
                      std::isfinite(c.cohensD[e]) ? fmt("%.2f", c.cohensD[e]) : "n/a", pval(c.mcnemarP[e])});
      const std::string sign = c.meanDifference[e] > 0 ? "better" : c.meanDifference[e] < 0 ? "worse" : "";
      classes.push_back({"", "", "", sign, "", "", ""});
    }
  }
  doc.table(head, rows, classes);
  // A baseline is what it claims: say what every arm's model started from.
  std::vector<std::vector<std::string>> starts;
  for (const auto& a : d.arms)
    if (!a.initialisation.empty()) starts.push_back({a.name, a.pretrain, a.initialisation});
  if (!starts.empty()) {
    doc.html << "<p>What each arm's model started from (seed " << d.seeds.front() << "; other seeds differ in the seed only):</p>\n";
    doc.table({"arm", "pretrain", "initialisation"}, starts);
  }
  doc.end();
}

void breakdownSection(Doc& doc, const ReportData& d) {
  const size_t last = d.eps.size() - 1;
  doc.section("breakdown", "Which attack did the work (eps " + fmt("%g", d.eps[last]) + ")");
  doc.html << "<p>Robust accuracy (%) under each attack alone, mean over seeds, and in brackets the examples (summed over seeds) "
              "that this attack alone fooled: every other attack left them robust. The lowest accuracy per arm is the attack "
              "that decides the worst case; an attack with 0 unique examples adds nothing the others did not find.</p>\n";
  std::vector<std::string> head = {"arm", "worst"};
  for (const auto& [name, _] : d.arms.front().perAttack) head.push_back(name);
  std::vector<std::vector<std::string>> rows, classes;
  for (const auto& a : d.arms) {
    std::vector<std::string> row = {a.name, pct(a.worst, last)}, cls = {"", ""};
    double lowest = 2;
    for (const auto& [_, s] : a.perAttack) lowest = std::min(lowest, s.mean[last]);
    for (const auto& [name, s] : a.perAttack) {
      const auto only = a.onlyFooledBy.count(name) ? a.onlyFooledBy.at(name) : 0;
      row.push_back(fmt("%.2f", 100.0 * s.mean[last]) + " (" + std::to_string(only) + ")");
      cls.push_back(s.mean[last] == lowest ? "decides" : "");
    }
    rows.push_back(row);
    classes.push_back(cls);
  }
  doc.table(head, rows, classes);
  for (const auto& a : d.arms)
    for (const auto& [suite, st] : a.stages) {
      doc.html << "<p>" << esc(a.name) << ", " << esc(suite) << ": robust accuracy after each stage (%, mean over seeds)</p>\n";
      std::vector<std::string> row;
      for (double v : st.second) row.push_back(fmt("%.2f", 100.0 * v));
      doc.table(st.first, {row});
    }
  doc.end();
}

void trainingSection(Doc& doc, const ReportData& d, const std::string& figDir) {
  doc.section("training", "Training curves (fine-tuning, first seed)");
  std::vector<PlotSeries> loss, val;
  for (const auto& a : d.arms) {
    loss.push_back({a.name, a.trainEpoch, a.trainLoss, {}, {}});
    val.push_back({a.name, a.trainEpoch, a.trainValAccuracy, {}, {}});
  }
  doc.figure(plotSvg(figDir + "/train-loss.svg", "epoch", "training loss", loss, false), "figures/train-loss.svg", "training loss per epoch");
  doc.figure(plotSvg(figDir + "/train-val.svg", "epoch", "validation accuracy (%)", val, true), "figures/train-val.svg",
             "clean validation accuracy per epoch");
  doc.end();
}

void gallerySection(Doc& doc, const ReportData& d, const std::string& figDir) {
  doc.section("gallery", "Adversarial examples");
  doc.html << "<p>Each strip: clean | adversarial | perturbation (black = -eps, white = +eps), first seed, strongest attack at the "
              "largest eps. Stored as float32 in the results file.</p>\n<div class=\"gallery\">\n";
  auto name = [&](int64_t k) { return k >= 0 && k < static_cast<int64_t>(d.classNames.size()) ? d.classNames[k] : std::to_string(k); };
  for (size_t i = 0; i < d.gallery.size(); ++i) {
    const auto& g = d.gallery[i];
    const auto png = galleryPng(g);
    const std::string file = "figures/example-" + std::to_string(i) + ".png";
    writeTextAtomically(figDir + "/example-" + std::to_string(i) + ".png", std::string(png.begin(), png.end()));
    const std::string caption = g.arm + ", " + g.attack + " eps " + fmt("%g", g.eps) + ": true " + name(g.label) + ", clean → " +
                                name(g.cleanPred) + ", adversarial → " + name(g.advPred);
    doc.html << "<figure class=\"" << (g.advPred == g.label ? "held" : "fooled") << "\"><img alt=\"" << esc(caption)
             << "\" src=\"data:image/png;base64," << base64(png) << "\"><figcaption>" << esc(caption) << "</figcaption></figure>\n";
    doc.md << "![" << mdEscape(caption) << "](" << file << ")\n\n";
  }
  doc.html << "</div>\n";
  doc.end();
}

void sanitySection(Doc& doc, const ReportData& d) {
  doc.section("sanity", "Gradient-masking sanity checks");
  int64_t failed = 0;
  std::vector<std::vector<std::string>> rows, classes;
  for (const auto& s : d.sanity) {
    failed += s.passed ? 0 : 1;
    rows.push_back({s.arm, std::to_string(s.seed), s.name, s.passed ? "passed" : "FAILED", s.detail});
    classes.push_back({"", "", "", s.passed ? "pass" : "fail", ""});
  }
  doc.html << "<p>" << (failed ? std::to_string(failed) + " check(s) failed: the affected numbers may overstate robustness."
                               : "All " + std::to_string(d.sanity.size()) + " checks passed.")
           << "</p>\n";
  doc.md << (failed ? "**" + std::to_string(failed) + " check(s) failed.**" : "All checks passed.") << "\n\n";
  doc.table({"arm", "seed", "check", "result", "detail"}, rows, classes);
  doc.end();
}

void metadataSection(Doc& doc, const ReportData& d) {
  doc.section("metadata", "Experiment");
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"results file", d.path});
  for (const std::string key : {"name", "precision", "robustlab_version", "libtorch_version", "device", "cpu_model", "cpu_flags", "kernel_path",
                                "aten_cpu_capability", "started", "finished", "seconds", "config_hash", "command"})
    rows.push_back({key, d.meta.at(key)});
  std::string seeds;
  for (auto s : d.seeds) seeds += (seeds.empty() ? "" : ", ") + std::to_string(s);
  rows.push_back({"seeds", seeds});
  doc.table({"field", "value"}, rows);
  doc.html << "<details><summary>resolved config</summary><pre>" << esc(d.meta.at("config")) << "</pre></details>\n";
  // A fence longer than any run of backticks in the text, so the config cannot close it.
  const std::string& cfg = d.meta.at("config");
  size_t run = 0, longest = 0;
  for (char ch : cfg) longest = std::max(longest, run = ch == '`' ? run + 1 : 0);
  const std::string fence(std::max<size_t>(3, longest + 1), '`');
  doc.md << "<details><summary>resolved config</summary>\n\n" << fence << "toml\n" << cfg << fence << "\n</details>\n";
  doc.end();
}

/// How the two experiments of --compare are told apart: their names, else their file stems, else their paths.
std::pair<std::string, std::string> experimentLabels(const ReportData& a, const ReportData& b) {
  const std::string an = a.meta.at("name"), bn = b.meta.at("name");
  if (an != bn) return {an, bn};
  const std::string as = fs::path(a.path).stem().string(), bs = fs::path(b.path).stem().string();
  if (as != bs) return {as, bs};
  return {a.path, b.path};
}

void compareExperimentsSection(Doc& doc, const ReportData& a, const ReportData& b, const std::string& figDir) {
  // The same arm in both: its difference with a Welch interval and test over the two sets of seeds.
  const auto [an, bn] = experimentLabels(a, b);
  doc.section("experiments", "Two experiments compared: " + an + " against " + bn);
  std::vector<PlotSeries> series;
  for (const auto& [d, label] : {std::pair<const ReportData*, std::string>{&a, an}, {&b, bn}})
    for (const auto& arm : d->arms) series.push_back({label + ": " + arm.name, d->eps, arm.worst.mean, arm.worst.lo, arm.worst.hi});
  doc.figure(plotSvg(figDir + "/compare-worst.svg", "eps", "robust accuracy (%)", series, true), "figures/compare-worst.svg",
             "worst-case robust accuracy, both experiments");
  doc.html << "<p>Arms in both experiments: worst-case robust accuracy of " << esc(an) << " minus " << esc(bn)
           << " (points), 95% interval and Welch's t-test over the two experiments' seeds (independent samples).</p>\n";
  std::vector<std::vector<std::string>> rows, classes;
  for (const auto& arm : a.arms) {
    const auto other = std::find_if(b.arms.begin(), b.arms.end(), [&](const ArmReport& x) { return x.name == arm.name; });
    if (other == b.arms.end() || a.eps != b.eps) continue;
    for (size_t e = 0; e < a.eps.size(); ++e) {
      std::vector<double> va, vb;
      for (const auto& s : arm.seedWorst) va.push_back(s[e]);
      for (const auto& s : other->seedWorst) vb.push_back(s[e]);
      const WelchTest w = welchTTest(va, vb);
      rows.push_back({arm.name, fmt("%g", a.eps[e]), fmt("%.2f", 100.0 * arm.worst.mean[e]), fmt("%.2f", 100.0 * other->worst.mean[e]),
                      fmt("%+.2f", 100.0 * w.meanDifference),
                      std::isfinite(w.ciLow) ? "[" + fmt("%+.2f", 100.0 * w.ciLow) + ", " + fmt("%+.2f", 100.0 * w.ciHigh) + "]" : "n/a",
                      pval(w.p)});
      classes.push_back({"", "", "", "", w.p < 0.05 ? (w.meanDifference > 0 ? "better" : "worse") : "", "", ""});
    }
  }
  if (rows.empty()) doc.html << "<p>No arm of the same name and eps grid in both experiments.</p>\n";
  else doc.table({"arm", "eps", an + " (%)", bn + " (%)", an + " minus " + bn + " (points)", "95% CI", "Welch p"}, rows, classes);
  doc.end();
}


/// Marks a folder as written by `robustlab report`: only such a folder (or an empty one) is replaced.
constexpr const char* kReportMarker = ".robustlab-report";

/// `report -o` never deletes what it did not write: the target must be absent, an empty folder or an
/// earlier report, and must not hold the results it reads.
void checkReportTarget(const fs::path& out, const std::vector<std::string>& inputs) {
  std::error_code ec;
  const auto st = fs::symlink_status(out, ec);
  if (!fs::exists(st)) return;
  if (!fs::is_directory(st)) throw std::runtime_error(out.string() + ": exists and is not a folder; refusing to replace it with a report");
  const auto canonicalOut = fs::weakly_canonical(out);
  for (const auto& in : inputs) {
    if (in.empty()) continue;
    const auto c = fs::weakly_canonical(in).string(), o = canonicalOut.string() + "/";
    if (c.compare(0, o.size(), o) == 0)
      throw std::runtime_error(out.string() + ": holds the results file " + in + "; choose another output folder for the report");
  }
  if (fs::is_empty(out) || fs::exists(out / kReportMarker)) return;
  throw std::runtime_error(out.string() + ": a folder that is not a robustlab report (no " + kReportMarker +
                           " file); refusing to replace it, choose another output folder");
}

}  // namespace

void writeReport(const ReportOptions& o) {
  std::string format;
  {
    H5File f(o.results, H5File::Mode::kRead);
    format = f.hasAttr("/", "format") ? f.attrString("/", "format") : "";
  }
  const bool sweep = format == "robustlab-sweep-1";
  ReportData d, other;
  if (!sweep) d = readReportData(o.results);
  if (!o.compare.empty()) other = readReportData(o.compare);
  const fs::path out(o.outDir);
  checkReportTarget(out, {o.results, o.compare});
  removeStaleTemporaries(out.has_parent_path() ? out.parent_path().string() : ".");  // reports a kill left half made
  const fs::path tmp = temporaryPathFor(out.string());
  fs::create_directories(tmp / "figures");
  writeTextAtomically((tmp / kReportMarker).string(), "written by robustlab report from " + o.results + "\n");
  try {
    const std::string figDir = (tmp / "figures").string();
    Doc body;
    std::string title;
    if (sweep) {
      title = sweepReport(o.results, body, figDir);
    } else {
      title = "robustlab report: " + d.meta.at("name");
      if (!o.compare.empty()) {  // what was asked for comes first
        const auto labels = experimentLabels(d, other);
        title += " against " + labels.second;
        compareExperimentsSection(body, d, other, figDir);
      }
      answerSection(body, d, figDir);
      metadataSection(body, d);
      summarySection(body, d, "summary", "Clean and robust accuracy");
      curvesSection(body, d, figDir);
      comparisonSection(body, d);
      robustnessSection(body, d, figDir);
      breakdownSection(body, d);
      trainingSection(body, d, figDir);
      gallerySection(body, d, figDir);
      sanitySection(body, d);
      if (!o.compare.empty()) summarySection(body, other, "summary-second", "Second experiment: " + experimentLabels(d, other).second);
    }
    std::ostringstream html, md;
    html << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" << esc(title) << "</title><style>"
                                       << kStyle << "</style></head><body>\n<h1>" << esc(title) << "</h1>\n"
                                       << body.html.str() << "</body></html>\n";
    md << "# " << mdEscape(title) << "\n" << body.md.str();
    writeTextAtomically((tmp / "report.html").string(), html.str());
    writeTextAtomically((tmp / "report.md").string(), md.str());
    if (o.latex && !sweep) writeTextAtomically((tmp / "summary.tex").string(), latexSummary(d));
    // Only a folder that checkReportTarget found empty or marked as a robustlab report is replaced.
    fs::remove_all(out);
    fs::rename(tmp, out);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace robustlab
