#pragma once
// The statistics of summaries and comparisons, on Boost.Math.
#include <cstdint>
#include <string>
#include <vector>

namespace robustlab {

struct MeanCi {
  double mean = 0, std = 0;  ///< sample standard deviation (n - 1); 0 for one value
  double ciLow = 0, ciHigh = 0;  ///< 95% confidence interval of the mean (Student t); NaN for one value
  int64_t n = 0;
};
/// Mean, standard deviation and 95% t-interval of `values` (must not be empty).
MeanCi meanCi(const std::vector<double>& values);

struct PairedTest {
  double meanDifference = 0;  ///< mean of a[i] - b[i]
  double t = 0;               ///< t statistic; NaN with fewer than 2 pairs or zero variance
  double p = 1;               ///< two-sided p-value (1 when all differences are 0, NaN with < 2 pairs)
  double cohensD = 0;         ///< mean difference / sd of differences (effect size; NaN when undefined)
};
/// Paired two-sided t-test of a against b (same length).
PairedTest pairedTTest(const std::vector<double>& a, const std::vector<double>& b);

struct WelchTest {
  double meanDifference = 0;      ///< mean(a) - mean(b)
  double ciLow = 0, ciHigh = 0;   ///< its 95% interval (Welch-Satterthwaite degrees of freedom); NaN when undefined
  double p = 1;                   ///< two-sided p-value; NaN with fewer than 2 values on a side or zero variance on both
};
/// Welch's unequal-variance t-test of a against b (independent samples: two experiments' seeds).
WelchTest welchTTest(const std::vector<double>& a, const std::vector<double>& b);

/// Exact two-sided McNemar test: b = pairs right only under the first model, c = only under the second.
double mcnemarExactP(int64_t b, int64_t c);

/// A p-value for tables: 3 significant digits, "< 1e-300" below what a double holds without
/// underflow (an exact test on thousands of discordant pairs underflows to 0), "n/a" when undefined.
std::string formatP(double p);

}  // namespace robustlab
