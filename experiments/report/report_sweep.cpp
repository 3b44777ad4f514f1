#include "experiments/report/report_sweep.h"

#include "data/h5io.h"
#include "experiments/report/report_figures.h"

#include <algorithm>
#include <map>
#include <stdexcept>

namespace robustlab {
using namespace report;

std::string sweepReport(const std::string& path, Doc& doc, const std::string& figDir) {
  H5File f(path, H5File::Mode::kRead);
  for (const std::string name : {"/table/param_keys", "/table/columns", "/table/values", "/table/point"})
    if (!f.has(name)) throw std::runtime_error(path + ": missing '" + name + "' (not a complete collected sweep; run 'robustlab sweep collect')");
  const auto keys = f.readStrings("/table/param_keys");
  const auto columns = f.readStrings("/table/columns");
  const auto values = f.readTensor("/table/values");
  const auto points = f.readTensor("/table/point");
  std::vector<std::vector<std::string>> params(keys.size());
  for (size_t k = 0; k < keys.size(); ++k) params[k] = f.readStrings("/table/param_" + std::to_string(k));
  const int64_t P = values.size(0), M = values.size(1);
  const std::string name = f.attrString("/", "name");

  doc.section("metadata", "Sweep");
  doc.table({"field", "value"}, {{"results file", path},
                                 {"name", name},
                                 {"source config", f.hasAttr("/", "source_config") ? f.attrString("/", "source_config") : ""},
                                 {"points collected", std::to_string(P)}});
  doc.end();

  doc.section("points", "Points");
  doc.html << "<p>Per arm: clean accuracy and worst-case robust accuracy (%) at each eps, means over seeds.</p>\n";
  std::vector<std::string> head = {"point"};
  head.insert(head.end(), keys.begin(), keys.end());
  head.insert(head.end(), columns.begin(), columns.end());
  std::vector<std::vector<std::string>> rows;
  for (int64_t p = 0; p < P; ++p) {
    std::vector<std::string> row = {std::to_string(points[p].item<int64_t>())};
    for (size_t k = 0; k < keys.size(); ++k) row.push_back(params[k][static_cast<size_t>(p)]);
    for (int64_t m = 0; m < M; ++m) row.push_back(fmt("%.2f", 100.0 * values[p][m].item<double>()));
    rows.push_back(row);
  }
  doc.table(head, rows);
  doc.end();

  doc.section("best", "Best point per metric");
  std::vector<std::vector<std::string>> best;
  for (int64_t m = 0; m < M; ++m) {
    const int64_t p = values.select(1, m).argmax().item<int64_t>();
    std::string where;
    for (size_t k = 0; k < keys.size(); ++k) where += (where.empty() ? "" : ", ") + keys[k] + "=" + params[k][static_cast<size_t>(p)];
    best.push_back({columns[static_cast<size_t>(m)], fmt("%.2f", 100.0 * values[p][m].item<double>()),
                    std::to_string(points[p].item<int64_t>()), where});
  }
  doc.table({"metric", "best %", "point", "parameters"}, best);
  doc.end();

  if (keys.size() == 2) {
    doc.section("heatmaps", "Heatmaps");
    std::vector<std::string> xs, ys;
    for (const auto& v : params[1])
      if (std::find(xs.begin(), xs.end(), v) == xs.end()) xs.push_back(v);
    for (const auto& v : params[0])
      if (std::find(ys.begin(), ys.end(), v) == ys.end()) ys.push_back(v);
    for (int64_t m = 0; m < M; ++m) {
      std::vector<std::vector<double>> grid(ys.size(), std::vector<double>(xs.size(), NAN));
      for (int64_t p = 0; p < P; ++p) {
        const auto y = std::find(ys.begin(), ys.end(), params[0][static_cast<size_t>(p)]) - ys.begin();
        const auto x = std::find(xs.begin(), xs.end(), params[1][static_cast<size_t>(p)]) - xs.begin();
        grid[static_cast<size_t>(y)][static_cast<size_t>(x)] = values[p][m].item<double>();
      }
      const std::string file = "heatmap-" + std::to_string(m) + ".svg";
      doc.figure(heatmapSvg(figDir + "/" + file, keys[1], xs, keys[0], ys, grid, columns[static_cast<size_t>(m)]), "figures/" + file,
                 columns[static_cast<size_t>(m)] + " over " + keys[0] + " x " + keys[1]);
    }
    doc.end();
  }
  return "robustlab sweep report: " + name;
}

}  // namespace robustlab
