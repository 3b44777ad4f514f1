#pragma once
// `robustlab report`: an experiment results file into report.html (self-contained: figures inline,
// no external requests) and report.md with its figures beside it.
#include <string>

namespace robustlab {

struct ReportOptions {
  std::string results;   ///< experiment results file
  std::string outDir;    ///< where report.html, report.md and figures/ go
  std::string compare;   ///< optional second experiment shown side by side
  bool latex = false;    ///< also summary.tex: the summary as a booktabs table
};

/// Writes the report into a temporary directory and renames it into place: an error (a missing
/// group, a truncated file, gnuplot failing) leaves no half-written report behind.
void writeReport(const ReportOptions& options);

}  // namespace robustlab
