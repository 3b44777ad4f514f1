#pragma once
// `report --latex`: the summary as a booktabs table for a paper.
#include "experiments/report/report_data.h"

#include <string>

namespace robustlab::report {

/// Text with LaTeX's special characters escaped (arm names come from configs).
std::string latexEscape(const std::string& s);

/// A table environment (booktabs): a row per arm, clean accuracy and worst-case robust accuracy at each
/// eps > 0 as mean ± 95% half-width over seeds, the best mean per column in bold. Needs \usepackage{booktabs}.
std::string latexSummary(const ReportData& d);

}  // namespace robustlab::report
