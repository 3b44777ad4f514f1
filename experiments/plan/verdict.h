#pragma once
// The answer to the question, in words: the verdict of one comparison (an arm against its baseline at
// one eps) and the headline over all of them. The summary a run prints and the report both say it by
// these rules, so they never disagree.
#include <cstdint>
#include <string>
#include <vector>

namespace robustlab {

/// Seeds below which a comparison gets no verdict (too few for a firm conclusion).
inline constexpr int64_t kFirmSeeds = 3;

/// One comparison at one eps: the mean of the per-seed paired differences (arm minus baseline, as a
/// fraction), its 95% t-interval (NaN with one seed), the paired t-test's p and the seeds.
struct Finding {
  std::string arm, baseline;
  double difference = 0, ciLow = 0, ciHigh = 0, pairedP = 1;
  int64_t seeds = 0;
};

enum class Verdict { kMore, kLess, kUnclear, kTooFewSeeds };
/// kTooFewSeeds below kFirmSeeds; kMore or kLess when the interval excludes 0 and p < 0.05; else kUnclear.
Verdict verdictOf(const Finding& f);

/// One sentence answering "does pre-training make the fine-tuned model more robust?" over every
/// comparison at eps `eps`: "Yes", "Partly", "No", "No clear answer", "Not shown" (none clearly more,
/// some less) or "No verdict yet", with each
/// arm's difference. Empty when there is no comparison.
std::string headlineSentence(const std::vector<Finding>& findings, double eps);

}  // namespace robustlab
