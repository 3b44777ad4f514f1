#include "experiments/plan/statistics.h"

#include <boost/math/distributions/binomial.hpp>
#include <boost/math/distributions/students_t.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace robustlab {
namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

MeanCi meanCi(const std::vector<double>& v) {
  if (v.empty()) throw std::invalid_argument("meanCi: no values");
  MeanCi r;
  r.n = static_cast<int64_t>(v.size());
  r.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(r.n);
  if (r.n < 2) {
    r.ciLow = r.ciHigh = kNaN;
    return r;
  }
  double ss = 0;
  for (double x : v) ss += (x - r.mean) * (x - r.mean);
  r.std = std::sqrt(ss / static_cast<double>(r.n - 1));
  const boost::math::students_t dist(static_cast<double>(r.n - 1));
  const double half = boost::math::quantile(boost::math::complement(dist, 0.025)) * r.std / std::sqrt(static_cast<double>(r.n));
  r.ciLow = r.mean - half;
  r.ciHigh = r.mean + half;
  return r;
}

PairedTest pairedTTest(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) throw std::invalid_argument("pairedTTest: samples differ in length");
  PairedTest r;
  const size_t n = a.size();
  if (n == 0) return {kNaN, kNaN, kNaN, kNaN};
  std::vector<double> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = a[i] - b[i];
  const MeanCi m = meanCi(d);
  r.meanDifference = m.mean;
  if (n < 2) return {m.mean, kNaN, kNaN, kNaN};
  if (m.std == 0) {
    r.t = m.mean == 0 ? 0.0 : std::copysign(std::numeric_limits<double>::infinity(), m.mean);
    r.p = m.mean == 0 ? 1.0 : 0.0;
    r.cohensD = kNaN;
    return r;
  }
  r.t = m.mean / (m.std / std::sqrt(static_cast<double>(n)));
  const boost::math::students_t dist(static_cast<double>(n - 1));
  r.p = std::min(1.0, 2.0 * boost::math::cdf(boost::math::complement(dist, std::fabs(r.t))));
  r.cohensD = m.mean / m.std;
  return r;
}

WelchTest welchTTest(const std::vector<double>& a, const std::vector<double>& b) {
  const MeanCi ma = meanCi(a), mb = meanCi(b);
  WelchTest r{ma.mean - mb.mean, kNaN, kNaN, kNaN};
  if (ma.n < 2 || mb.n < 2) return r;
  const double va = ma.std * ma.std / static_cast<double>(ma.n), vb = mb.std * mb.std / static_cast<double>(mb.n);
  if (va + vb == 0) return r;
  const double df = (va + vb) * (va + vb) / (va * va / static_cast<double>(ma.n - 1) + vb * vb / static_cast<double>(mb.n - 1));
  const boost::math::students_t dist(df);
  const double se = std::sqrt(va + vb), t = r.meanDifference / se;
  const double half = boost::math::quantile(boost::math::complement(dist, 0.025)) * se;
  r.ciLow = r.meanDifference - half;
  r.ciHigh = r.meanDifference + half;
  r.p = std::min(1.0, 2.0 * boost::math::cdf(boost::math::complement(dist, std::fabs(t))));
  return r;
}

double mcnemarExactP(int64_t b, int64_t c) {
  const int64_t n = b + c;
  if (n == 0) return 1.0;
  const boost::math::binomial_distribution<double> dist(static_cast<double>(n), 0.5);
  return std::min(1.0, 2.0 * boost::math::cdf(dist, static_cast<double>(std::min(b, c))));
}

std::string formatP(double p) {
  if (!std::isfinite(p)) return "n/a";
  if (p < 1e-300) return "< 1e-300";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", p);
  return buf;
}

}  // namespace robustlab
