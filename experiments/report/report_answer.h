#pragma once
// The report's first screen: what ran, then the answer to the project's question for each comparison,
// as a forest plot and one generated sentence each.
#include "experiments/report/report_data.h"
#include "experiments/report/report_doc.h"
#include "experiments/plan/verdict.h"

#include <string>

namespace robustlab::report {

/// The one-sentence answer over every comparison at the headline eps (verdict.h's rules), "" without one.
std::string headline(const ReportData& d);

/// The sentence for comparison `c` at eps index `e`: the difference with its interval, both tests, the
/// seeds, and the caveats that apply (too few seeds, failed sanity checks).
std::string comparisonSentence(const ReportData& d, const ComparisonReport& c, size_t e);

/// Section "answer": the machine and settings line, the headline, the forest plot (every comparison at every eps > 0),
/// a sentence per comparison at the largest eps and the rules behind the caveats.
void answerSection(Doc& doc, const ReportData& d, const std::string& figDir);

}  // namespace robustlab::report
