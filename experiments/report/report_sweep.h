#pragma once
// The sweep part of `robustlab report`: a collected sweep file (format robustlab-sweep-1) into a
// table of points, the best point per metric and, when two parameters were swept, heatmaps.
#include "experiments/report/report_doc.h"

#include <string>

namespace robustlab {

/// Appends the sweep sections to `doc`, figures into `figDir`; returns the report title.
/// Throws std::runtime_error naming the file and what is missing.
std::string sweepReport(const std::string& path, report::Doc& doc, const std::string& figDir);

}  // namespace robustlab
