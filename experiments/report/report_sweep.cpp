#include "experiments/report/report_sweep.h"

#include "data/h5io.h"
#include "experiments/report/report_figures.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace robustlab {
using namespace report;

namespace {

/// A collected sweep's table: per point its parameters' values and the metrics' values.
struct SweepTable {
  std::vector<std::string> keys, columns;
  std::vector<std::vector<std::string>> params;  ///< params[k][p]: key k's value at point p
  torch::Tensor values, points;                  ///< P x M metrics; P point numbers
  int64_t P = 0, M = 0;
};

SweepTable readSweepTable(const std::string& path, H5File& f) {
  for (const std::string name : {"/table/param_keys", "/table/columns", "/table/values", "/table/point"})
    if (!f.has(name)) throw std::runtime_error(path + ": missing '" + name + "' (not a complete collected sweep; run 'robustlab sweep collect')");
  SweepTable t;
  t.keys = f.readStrings("/table/param_keys");
  t.columns = f.readStrings("/table/columns");
  t.values = f.readTensor("/table/values");
  t.points = f.readTensor("/table/point");
  t.params.resize(t.keys.size());
  for (size_t k = 0; k < t.keys.size(); ++k) t.params[k] = f.readStrings("/table/param_" + std::to_string(k));
  t.P = t.values.size(0);
  t.M = t.values.size(1);
  return t;
}

void pointsSection(Doc& doc, const SweepTable& t) {
  doc.section("points", "Points");
  doc.html << "<p>Per arm: clean accuracy and worst-case robust accuracy (%) at each eps, means over seeds.</p>\n";
  std::vector<std::string> head = {"point"};
  head.insert(head.end(), t.keys.begin(), t.keys.end());
  head.insert(head.end(), t.columns.begin(), t.columns.end());
  std::vector<std::vector<std::string>> rows;
  for (int64_t p = 0; p < t.P; ++p) {
    std::vector<std::string> row = {std::to_string(t.points[p].item<int64_t>())};
    for (size_t k = 0; k < t.keys.size(); ++k) row.push_back(t.params[k][static_cast<size_t>(p)]);
    for (int64_t m = 0; m < t.M; ++m) row.push_back(fmt("%.2f", 100.0 * t.values[p][m].item<double>()));
    rows.push_back(row);
  }
  doc.table(head, rows);
  doc.end();
}

void bestSection(Doc& doc, const SweepTable& t) {
  doc.section("best", "Best point per metric");
  std::vector<std::vector<std::string>> best;
  for (int64_t m = 0; m < t.M; ++m) {
    const int64_t p = t.values.select(1, m).argmax().item<int64_t>();
    std::string where;
    for (size_t k = 0; k < t.keys.size(); ++k) where += (where.empty() ? "" : ", ") + t.keys[k] + "=" + t.params[k][static_cast<size_t>(p)];
    best.push_back({t.columns[static_cast<size_t>(m)], fmt("%.2f", 100.0 * t.values[p][m].item<double>()),
                    std::to_string(t.points[p].item<int64_t>()), where});
  }
  doc.table({"metric", "best %", "point", "parameters"}, best);
  doc.end();
}

/// Two swept keys: one heatmap per metric, the first key down, the second across.
void heatmapsSection(Doc& doc, const SweepTable& t, const std::string& figDir) {
  doc.section("heatmaps", "Heatmaps");
  std::vector<std::string> xs, ys;
  for (const auto& v : t.params[1])
    if (std::find(xs.begin(), xs.end(), v) == xs.end()) xs.push_back(v);
  for (const auto& v : t.params[0])
    if (std::find(ys.begin(), ys.end(), v) == ys.end()) ys.push_back(v);
  for (int64_t m = 0; m < t.M; ++m) {
    std::vector<std::vector<double>> grid(ys.size(), std::vector<double>(xs.size(), NAN));
    for (int64_t p = 0; p < t.P; ++p) {
      const auto y = std::find(ys.begin(), ys.end(), t.params[0][static_cast<size_t>(p)]) - ys.begin();
      const auto x = std::find(xs.begin(), xs.end(), t.params[1][static_cast<size_t>(p)]) - xs.begin();
      grid[static_cast<size_t>(y)][static_cast<size_t>(x)] = t.values[p][m].item<double>();
    }
    const std::string file = "heatmap-" + std::to_string(m) + ".svg";
    const std::string& column = t.columns[static_cast<size_t>(m)];
    doc.figure(heatmapSvg(figDir + "/" + file, t.keys[1], xs, t.keys[0], ys, grid, column), "figures/" + file,
               column + " over " + t.keys[0] + " x " + t.keys[1]);
  }
  doc.end();
}

}  // namespace

std::string sweepReport(const std::string& path, Doc& doc, const std::string& figDir) {
  H5File f(path, H5File::Mode::kRead);
  const SweepTable t = readSweepTable(path, f);
  const std::string name = f.attrString("/", "name");
  doc.section("metadata", "Sweep");
  doc.table({"field", "value"}, {{"results file", path},
                                 {"name", name},
                                 {"source config", f.hasAttr("/", "source_config") ? f.attrString("/", "source_config") : ""},
                                 {"points collected", std::to_string(t.P)}});
  doc.end();
  pointsSection(doc, t);
  bestSection(doc, t);
  if (t.keys.size() == 2) heatmapsSection(doc, t, figDir);
  return "robustlab sweep report: " + name;
}

}  // namespace robustlab
