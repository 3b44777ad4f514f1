#pragma once
// The report's section on robustness beyond adversarial examples ([robustness]): a table of every
// axis per arm (mean and 95% interval over seeds), the reliability diagram and the accuracy under
// each common corruption. Nothing when the experiment measured none.
#include "experiments/report/report_data.h"
#include "experiments/report/report_doc.h"

#include <string>

namespace robustlab::report {

void robustnessSection(Doc& doc, const ReportData& d, const std::string& figDir);

}  // namespace robustlab::report
