#include "experiments/report/report_robustness.h"

#include "attacks/corruptions/corruptions.h"
#include "data/atomic_write.h"
#include "data/h5io.h"
#include "experiments/plan/robustness_eval.h"
#include "experiments/report/report_figures.h"

#include <cmath>
#include <map>
#include <set>

namespace robustlab::report {
namespace {

/// "mean ± half-interval" of a summary metric in percent, "" when the arm lacks it.
std::string cell(H5File& f, const std::string& arm, const std::string& metric, double scale) {
  const std::string g = "/summary/" + arm + "/robustness/" + metric;
  if (!f.has(g + "_mean")) return "";
  const double m = f.readTensor(g + "_mean")[0].item<double>(), lo = f.readTensor(g + "_ci_low")[0].item<double>(),
               hi = f.readTensor(g + "_ci_high")[0].item<double>();
  return std::isnan(lo) ? fmt("%.2f", scale * m) : fmt("%.2f", scale * m) + " ± " + fmt("%.2f", scale * (hi - lo) / 2);
}

/// The summary's metric names under /summary/<arm>/robustness (without the _mean suffix).
std::set<std::string> metricNames(H5File& f, const std::string& group, const std::string& prefix) {
  std::set<std::string> out;
  if (!f.has(group)) return out;
  for (const auto& child : f.children(group)) {
    const std::string path = group + "/" + child;
    const bool dataset = child.find("_mean") != std::string::npos || child.find("_std") != std::string::npos || child.find("_ci_") != std::string::npos;
    if (child.size() > 5 && child.compare(child.size() - 5, 5, "_mean") == 0) out.insert(prefix + child.substr(0, child.size() - 5));
    if (!dataset)
      for (const auto& m : metricNames(f, path, prefix + child + "/")) out.insert(m);
  }
  return out;
}

/// Mean over seeds of each equal-mass bin's confidence and accuracy (bin i of every seed).
PlotSeries reliability(H5File& f, const ReportData& d, const std::string& arm) {
  PlotSeries s{arm, {}, {}, {}, {}};
  int64_t n = 0;
  for (int64_t seed : d.seeds) {
    const std::string g = "/arms/" + arm + "/seed_" + std::to_string(seed) + "/robustness/calibration";
    if (!f.has(g + "/bin_confidence")) continue;
    const auto c = f.readTensor(g + "/bin_confidence"), a = f.readTensor(g + "/bin_accuracy");
    if (s.x.empty()) s.x.assign(static_cast<size_t>(c.numel()), 0.0), s.y.assign(static_cast<size_t>(c.numel()), 0.0);
    if (static_cast<size_t>(c.numel()) != s.x.size()) continue;
    for (int64_t b = 0; b < c.numel(); ++b) {
      s.x[static_cast<size_t>(b)] += c[b].item<double>();
      s.y[static_cast<size_t>(b)] += a[b].item<double>();
    }
    ++n;
  }
  for (size_t b = 0; b < s.x.size(); ++b) {
    s.x[b] /= static_cast<double>(n);
    s.y[b] /= static_cast<double>(n);
  }
  return s;
}

/// The first stored test image of the first arm and seed under every corruption the run measured, one
/// row per corruption: clean, then severities 1..5 (drawn as the evaluation drew them for that seed).
void corruptionStrip(Doc& doc, H5File& f, const ReportData& d, const std::string& figDir) {
  if (d.arms.empty() || d.seeds.empty()) return;
  const std::string unit = "/arms/" + d.arms.front().name + "/seed_" + std::to_string(d.seeds.front());
  if (!f.has(unit + "/robustness/corruptions") || !f.has(unit + "/eval/example_inputs")) return;
  const auto inputs = f.readTensor(unit + "/eval/example_inputs");
  if (inputs.size(0) == 0) return;
  const auto x = inputs.slice(0, 0, 1).to(torch::kFloat32);
  std::vector<torch::Tensor> rows;
  std::vector<std::string> names;
  for (const auto& name : f.children(unit + "/robustness/corruptions")) {
    std::vector<torch::Tensor> row{x[0]};
    for (int s = 1; s <= 5; ++s) row.push_back(corrupt(name, x, s, corruptionSeed(static_cast<uint64_t>(d.seeds.front()), s))[0]);
    rows.push_back(torch::cat(row, 2));  // C x H x 6W
    names.push_back(name);
  }
  auto grid = torch::cat(rows, 1);  // C x (rows H) x 6W
  grid = grid.mul(255).round().clamp(0, 255).to(torch::kUInt8);
  grid = grid.size(0) == 1 ? grid[0] : grid.permute({1, 2, 0}).contiguous();
  // 2x enlarged, nearest neighbour.
  grid = grid.repeat_interleave(2, 0).repeat_interleave(2, 1).contiguous();
  const auto png = encodePng(grid);
  writeTextAtomically(figDir + "/corruptions.png", std::string(png.begin(), png.end()));
  std::string caption = "one test image (first arm, first seed): clean, then severities 1 to 5; rows: ";
  for (size_t i = 0; i < names.size(); ++i) caption += (i ? ", " : "") + names[i];
  doc.html << "<figure><img alt=\"" << esc(caption) << "\" src=\"data:image/png;base64," << base64(png) << "\"><figcaption>" << esc(caption)
           << "</figcaption></figure>\n";
  doc.md << "![" << mdEscape(caption) << "](figures/corruptions.png)\n\n";
}

}  // namespace

void robustnessSection(Doc& doc, const ReportData& d, const std::string& figDir) {
  H5File f(d.path, H5File::Mode::kRead);
  std::set<std::string> metrics;
  for (const auto& a : d.arms)
    for (const auto& m : metricNames(f, "/summary/" + a.name + "/robustness", "")) metrics.insert(m);
  if (metrics.empty()) return;
  doc.section("robustness", "Robustness beyond adversarial examples");
  // The axes per arm: calibration errors (lower is better), OOD AUROC by the maximum softmax
  // probability (higher is better), accuracy under corruptions; mean ± half the 95% interval, percent.
  std::vector<std::string> columns;
  for (const std::string m : {"calibration/rms_error", "calibration/ece", "calibration/nll", "calibration/brier"})
    if (metrics.count(m)) columns.push_back(m);
  for (const auto& m : metrics)
    if (m.rfind("ood/", 0) == 0 && m.find("/msp/auroc") != std::string::npos) columns.push_back(m);
  if (metrics.count("corruptions/mean_accuracy")) columns.push_back("corruptions/mean_accuracy");
  std::vector<std::vector<std::string>> rows;
  for (const auto& a : d.arms) {
    std::vector<std::string> row{a.name};
    for (const auto& m : columns) row.push_back(cell(f, a.name, m, m == "calibration/nll" ? 1.0 : 100.0));
    rows.push_back(row);
  }
  std::vector<std::string> head{"arm"};
  head.insert(head.end(), columns.begin(), columns.end());
  doc.html << "<p>Mean ± half the 95% interval over seeds; percent except NLL. Calibration errors: lower is better; "
              "ood/SOURCE/msp/auroc: detecting that source's images by the maximum softmax probability, higher is better; "
              "corruptions: clean accuracy under every corruption and severity, averaged. Differences against each baseline, "
              "with paired tests, are in the answer above and under /comparisons in the results file.</p>\n";
  doc.md << "Mean ± half the 95% interval over seeds; percent except NLL. Calibration errors: lower is better; OOD AUROC: higher "
            "is better; corruptions: mean accuracy over every corruption and severity.\n\n";
  doc.table(head, rows);
  std::vector<PlotSeries> series;
  for (const auto& a : d.arms) {
    PlotSeries s = reliability(f, d, a.name);
    if (!s.x.empty()) series.push_back(s);
  }
  if (!series.empty()) {
    series.push_back({"perfect calibration", {0.0, 1.0}, {0.0, 1.0}, {}, {}});
    doc.figure(plotSvg(figDir + "/reliability.svg", "confidence (maximum softmax probability)", "accuracy", series, true),
               "figures/reliability.svg",
               "reliability diagram: accuracy against confidence in equal-mass bins, each bin's mean over seeds; below the diagonal "
               "is overconfident");
  }
  corruptionStrip(doc, f, d, figDir);
  doc.end();
}

}  // namespace robustlab::report
