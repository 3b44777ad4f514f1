#include "attacks/evaluation/uncertainty.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

namespace robustlab {

torch::Tensor maxSoftmax(const torch::Tensor& logits) { return std::get<0>(torch::softmax(logits.to(torch::kFloat64), 1).max(1)); }

Calibration calibration(const torch::Tensor& logits, const torch::Tensor& labels, int64_t bins) {
  const int64_t n = logits.size(0);
  if (n == 0 || labels.size(0) != n) throw std::invalid_argument("calibration: needs one label per row of logits and at least one row");
  if (bins < 1) throw std::invalid_argument("calibration: bins must be >= 1");
  bins = std::min(bins, n);
  const auto logp = torch::log_softmax(logits.to(torch::kFloat64).cpu(), 1);
  const auto p = logp.exp();
  const auto y = labels.to(torch::kInt64).cpu();
  const auto [conf, pred] = p.max(1);
  const auto correct = pred.eq(y).to(torch::kFloat64);
  Calibration c;
  c.nll = -logp.gather(1, y.view({-1, 1})).mean().item<double>();
  c.brier = (p - torch::one_hot(y, p.size(1)).to(torch::kFloat64)).pow(2).sum(1).mean().item<double>();
  // Stable sort: ties keep their order, so a bin's members do not depend on the sort's algorithm.
  const auto order = std::get<1>(conf.sort(/*stable=*/true, 0, /*descending=*/false));
  const auto sc = conf.index_select(0, order), sa = correct.index_select(0, order);
  c.binConfidence = torch::zeros({bins}, torch::kFloat64);
  c.binAccuracy = torch::zeros({bins}, torch::kFloat64);
  c.binCount = torch::zeros({bins}, torch::kInt64);
  double sq = 0, abs = 0;
  for (int64_t b = 0; b < bins; ++b) {
    const int64_t lo = b * n / bins, hi = (b + 1) * n / bins;
    const double cb = sc.slice(0, lo, hi).mean().item<double>(), ab = sa.slice(0, lo, hi).mean().item<double>();
    const double w = static_cast<double>(hi - lo) / static_cast<double>(n);
    c.binConfidence[b] = cb;
    c.binAccuracy[b] = ab;
    c.binCount[b] = hi - lo;
    sq += w * (ab - cb) * (ab - cb);
    abs += w * std::abs(ab - cb);
  }
  c.rmsError = std::sqrt(sq);
  c.ece = abs;
  return c;
}

namespace {

/// Average precision of `pos` against `neg` scores (higher = positive): thresholds at every distinct
/// score, from the highest down; precision at each counts ties together.
double averagePrecision(const std::vector<double>& pos, const std::vector<double>& neg) {
  std::vector<std::pair<double, int>> all;
  for (double s : pos) all.emplace_back(s, 1);
  for (double s : neg) all.emplace_back(s, 0);
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  double tp = 0, fp = 0, ap = 0, prevRecall = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j].first == all[i].first) {
      (all[j].second ? tp : fp) += 1;
      ++j;
    }
    const double recall = tp / static_cast<double>(pos.size());
    ap += (recall - prevRecall) * tp / (tp + fp);
    prevRecall = recall;
    i = j;
  }
  return ap;
}

std::vector<double> values(const torch::Tensor& t) {
  const auto c = t.detach().to(torch::kFloat64).cpu().contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

Detection detection(const torch::Tensor& inScores, const torch::Tensor& outScores) {
  auto in = values(inScores), out = values(outScores);
  if (in.empty() || out.empty()) throw std::invalid_argument("detection: needs at least one in- and one out-of-distribution score");
  Detection d;
  // AUROC by midranks over the pooled scores (Mann-Whitney U / (n_in n_out)).
  std::vector<std::pair<double, int>> all;
  for (double s : in) all.emplace_back(s, 1);
  for (double s : out) all.emplace_back(s, 0);
  std::sort(all.begin(), all.end());
  double rankSumIn = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j].first == all[i].first) ++j;
    const double midrank = (static_cast<double>(i) + static_cast<double>(j) + 1) / 2;  // ranks i+1..j
    for (size_t k = i; k < j; ++k)
      if (all[k].second) rankSumIn += midrank;
    i = j;
  }
  const double nIn = static_cast<double>(in.size()), nOut = static_cast<double>(out.size());
  d.auroc = (rankSumIn - nIn * (nIn + 1) / 2) / (nIn * nOut);
  d.auprIn = averagePrecision(in, out);
  std::vector<double> negIn(in.size()), negOut(out.size());
  std::transform(in.begin(), in.end(), negIn.begin(), [](double s) { return -s; });
  std::transform(out.begin(), out.end(), negOut.begin(), [](double s) { return -s; });
  d.auprOut = averagePrecision(negOut, negIn);
  // The highest threshold accepting (score >= t) at least 95% of the in-distribution inputs.
  std::sort(in.begin(), in.end(), std::greater<double>());
  const size_t k = static_cast<size_t>(std::ceil(0.95 * nIn - 1e-9));
  const double t = in[std::max<size_t>(k, 1) - 1];
  d.fpr95 = static_cast<double>(std::count_if(out.begin(), out.end(), [t](double s) { return s >= t; })) / nOut;
  return d;
}

}  // namespace robustlab
