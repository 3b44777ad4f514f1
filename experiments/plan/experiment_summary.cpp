#include "experiments/plan/experiment_summary.h"

#include "data/h5io.h"
#include "experiments/plan/robustness_eval.h"
#include "experiments/plan/statistics.h"
#include "experiments/plan/verdict.h"

#include <cmath>
#include <cstdio>
#include <functional>
#include <sstream>

namespace robustlab {
namespace {

torch::Tensor column(const std::vector<double>& v) { return torch::tensor(v, torch::kFloat64); }

std::vector<double> doubles(const torch::Tensor& t) {
  const auto c = t.to(torch::kFloat64).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

std::string pm(const MeanCi& m) {
  char buf[64];
  if (m.n < 2) std::snprintf(buf, sizeof buf, "%6.2f", 100.0 * m.mean);
  else std::snprintf(buf, sizeof buf, "%6.2f ±%5.2f", 100.0 * m.mean, 100.0 * (m.ciHigh - m.mean));
  return buf;
}

/// MeanCi of get(seed data) over the seeds of one arm.
MeanCi across(const std::vector<ArmSeedData>& ds, const std::function<double(const ArmSeedData&)>& get) {
  std::vector<double> v;
  for (const auto& d : ds) v.push_back(get(d));
  return meanCi(v);
}

}  // namespace

ArmSeedData readUnit(const std::string& path) {
  H5File f(path, H5File::Mode::kRead);
  ArmSeedData d;
  d.clean = f.attrDouble("/unit/eval", "clean_accuracy");
  d.worst = doubles(f.readTensor("/unit/eval/worst_accuracy"));
  d.worstRobust = f.readTensor("/unit/eval/worst_robust").to(torch::kBool);
  d.seed = f.attrInt("/unit", "seed");
  if (f.hasAttr("/unit/eval", "failed_sanity_checks")) d.failedChecks = f.attrInt("/unit/eval", "failed_sanity_checks");
  for (const auto& a : f.children("/unit/eval/attacks")) d.perAttack[a] = doubles(f.readTensor("/unit/eval/attacks/" + a + "/robust_accuracy"));
  d.robustness = readRobustnessMetrics(f, "/unit/robustness");
  d.corruptionCorrect = readCorruptionCorrect(f, "/unit/robustness");
  return d;
}

namespace {

/// A per-seed metric, NaN when that seed lacks it.
double metricOr(const std::map<std::string, double>& m, const std::string& name) { return m.count(name) ? m.at(name) : NAN; }

/// Examples right (or robust) under a only and under b only, per example (the McNemar counts).
std::pair<int64_t, int64_t> onlyEach(const torch::Tensor& a, const torch::Tensor& b) {
  return {(a & ~b).sum().item<int64_t>(), (b & ~a).sum().item<int64_t>()};
}

/// The corruption comparisons of `c`: per example (McNemar, pooled over seeds and severities) and
/// per seed (mCE, relative mCE).
void compareCorruptions(Comparison& c, const std::vector<ArmSeedData>& a, const std::vector<ArmSeedData>& b) {
  const int64_t seeds = static_cast<int64_t>(a.size());
  for (const auto& entry : a.front().corruptionCorrect) {
    int64_t onlyA = 0, onlyB = 0;
    for (int64_t s = 0; s < seeds; ++s) {
      if (!a[s].corruptionCorrect.count(entry.first) || !b[s].corruptionCorrect.count(entry.first)) continue;
      const auto& ra = a[s].corruptionCorrect.at(entry.first);
      const auto& rb = b[s].corruptionCorrect.at(entry.first);
      if (ra.sizes() != rb.sizes()) continue;
      const auto [sa, sb] = onlyEach(ra, rb);
      onlyA += sa;
      onlyB += sb;
    }
    c.corruptionMcnemar[entry.first] = {static_cast<double>(onlyA), static_cast<double>(onlyB), mcnemarExactP(onlyA, onlyB)};
  }
  for (int64_t s = 0; s < seeds; ++s) {
    const CorruptionErrors e = corruptionErrors(a[s].robustness, a[s].clean, b[s].robustness, b[s].clean);
    if (std::isnan(e.mce)) break;
    c.mce.push_back(e.mce);
    c.relativeMce.push_back(e.relativeMce);
  }
}

}  // namespace

Comparison compareArms(const std::string& arm, const std::vector<ArmSeedData>& a, const std::string& baseline,
                       const std::vector<ArmSeedData>& b) {
  Comparison c;
  c.arm = arm;
  c.baseline = baseline;
  const int64_t seeds = static_cast<int64_t>(a.size()), eps = static_cast<int64_t>(a.front().worst.size());
  c.mcnemarPerSeed = torch::zeros({seeds, eps}, torch::kFloat64);
  for (int64_t e = 0; e < eps; ++e) {
    std::vector<double> va, vb;
    int64_t onlyA = 0, onlyB = 0;
    for (int64_t s = 0; s < seeds; ++s) {
      va.push_back(a[s].worst[e]);
      vb.push_back(b[s].worst[e]);
      const auto [sa, sb] = onlyEach(a[s].worstRobust.select(1, e), b[s].worstRobust.select(1, e));
      c.mcnemarPerSeed[s][e] = mcnemarExactP(sa, sb);
      onlyA += sa;
      onlyB += sb;
    }
    const PairedTest t = pairedTTest(va, vb);
    c.meanDifference.push_back(t.meanDifference);
    c.pairedT.push_back(t.t);
    c.pairedP.push_back(t.p);
    c.cohensD.push_back(t.cohensD);
    c.robustOnlyArm.push_back(onlyA);
    c.robustOnlyBaseline.push_back(onlyB);
    c.mcnemarP.push_back(mcnemarExactP(onlyA, onlyB));
  }
  for (const auto& entry : a.front().robustness) {
    std::vector<double> va, vb;
    for (int64_t s = 0; s < seeds; ++s) {
      va.push_back(metricOr(a[s].robustness, entry.first));
      vb.push_back(metricOr(b[s].robustness, entry.first));
    }
    c.robustness[entry.first] = pairedTTest(va, vb);
  }
  compareCorruptions(c, a, b);
  return c;
}

namespace {

/// One comparison under /comparisons/<arm>_vs_<baseline>.
void writeComparison(H5File& f, const Config& c, const Comparison& cmp) {
  const std::string g = "/comparisons/" + cmp.arm + "_vs_" + cmp.baseline;
  f.createGroup(g);
  f.setAttr(g, "arm", cmp.arm);
  f.setAttr(g, "baseline", cmp.baseline);
  f.writeTensor(g + "/eps", column(c.attack.eps));
  f.writeTensor(g + "/mean_difference", column(cmp.meanDifference));
  f.writeTensor(g + "/paired_t", column(cmp.pairedT));
  f.writeTensor(g + "/paired_p", column(cmp.pairedP));
  f.writeTensor(g + "/cohens_d", column(cmp.cohensD));
  f.writeTensor(g + "/robust_only_arm", torch::tensor(cmp.robustOnlyArm, torch::kInt64));
  f.writeTensor(g + "/robust_only_baseline", torch::tensor(cmp.robustOnlyBaseline, torch::kInt64));
  f.writeTensor(g + "/mcnemar_p", column(cmp.mcnemarP));
  f.writeTensor(g + "/mcnemar_p_per_seed", cmp.mcnemarPerSeed);
  for (const auto& [name, t] : cmp.robustness) {
    const std::string m = g + "/robustness/" + name;
    f.writeTensor(m + "/mean_difference", column({t.meanDifference}));
    f.writeTensor(m + "/paired_t", column({t.t}));
    f.writeTensor(m + "/paired_p", column({t.p}));
    f.writeTensor(m + "/cohens_d", column({t.cohensD}));
  }
  if (!cmp.mce.empty()) {
    // Hendrycks & Dietterich 2019's mCE and relative mCE of the arm with its baseline as the reference (1 = as good), per seed.
    f.writeTensor(g + "/robustness/corruptions/mce_per_seed", column(cmp.mce));
    f.writeTensor(g + "/robustness/corruptions/relative_mce_per_seed", column(cmp.relativeMce));
  }
  for (const auto& [name, m] : cmp.corruptionMcnemar) {
    // Per example, pooled over seeds and severities (the arms of a seed share their test images).
    const std::string e = g + "/robustness_per_example/corruptions/" + name;
    f.writeTensor(e + "/right_only_arm", torch::tensor({static_cast<int64_t>(m[0])}, torch::kInt64));
    f.writeTensor(e + "/right_only_baseline", torch::tensor({static_cast<int64_t>(m[1])}, torch::kInt64));
    f.writeTensor(e + "/mcnemar_p", column({m[2]}));
  }
}

}  // namespace

void writeSummaries(H5File& f, const Config& c, const ArmData& data, const std::vector<Comparison>& comparisons) {
  const size_t E = c.attack.eps.size();
  for (const auto& [arm, ds] : data) {
    const std::string g = "/summary/" + arm;
    f.writeTensor(g + "/eps", column(c.attack.eps));
    auto put = [&](const std::string& prefix, size_t count, const std::function<double(const ArmSeedData&, size_t)>& get) {
      std::vector<double> mean, sd, lo, hi;
      for (size_t e = 0; e < count; ++e) {
        const MeanCi m = across(ds, [&](const ArmSeedData& d) { return get(d, e); });
        mean.push_back(m.mean);
        sd.push_back(m.std);
        lo.push_back(m.ciLow);
        hi.push_back(m.ciHigh);
      }
      f.writeTensor(prefix + "_mean", column(mean));
      f.writeTensor(prefix + "_std", column(sd));
      f.writeTensor(prefix + "_ci_low", column(lo));
      f.writeTensor(prefix + "_ci_high", column(hi));
    };
    put(g + "/clean_accuracy", 1, [](const ArmSeedData& d, size_t) { return d.clean; });
    put(g + "/worst_accuracy", E, [](const ArmSeedData& d, size_t e) { return d.worst[e]; });
    for (const auto& entry : ds.front().perAttack) {
      const std::string name = entry.first;
      put(g + "/attacks/" + name + "/robust_accuracy", E, [&](const ArmSeedData& d, size_t e) { return d.perAttack.at(name)[e]; });
    }
    for (const auto& entry : ds.front().robustness) {
      const std::string name = entry.first;
      put(g + "/robustness/" + name, 1, [&](const ArmSeedData& d, size_t) { return metricOr(d.robustness, name); });
    }
    f.setAttr(g, "n_seeds", static_cast<int64_t>(ds.size()));
  }
  for (const auto& cmp : comparisons) writeComparison(f, c, cmp);
}

size_t headlineEpsIndex(const Config& c, bool* trainingEps) {
  const auto& eps = c.attack.eps;
  size_t headline = eps.empty() ? 0 : eps.size() - 1;
  if (trainingEps) *trainingEps = false;
  bool adversarialArms = false;
  for (const auto& arm : c.runArms()) adversarialArms |= (arm.objective.empty() ? c.finetune.objective : arm.objective) != "standard";
  const double trainedAt = c.finetune.adversary.eps;
  for (size_t e = 0; adversarialArms && trainedAt > 0 && e < eps.size(); ++e)
    if (std::abs(eps[e] - trainedAt) <= 1e-9 * trainedAt) {
      headline = e;
      if (trainingEps) *trainingEps = true;
    }
  return headline;
}

std::string summaryText(const Config& c, const ArmData& data, const std::vector<Comparison>& comparisons) {
  const auto& eps = c.attack.eps;
  const size_t seeds = c.runSeeds().size();
  std::ostringstream os;
  if (!comparisons.empty() && !eps.empty()) {
    const size_t h = headlineEpsIndex(c);
    std::vector<Finding> findings;
    for (const auto& cmp : comparisons) {
      const auto &a = data.at(cmp.arm), &b = data.at(cmp.baseline);
      std::vector<double> diff;
      for (size_t s = 0; s < a.size() && s < b.size(); ++s) diff.push_back(a[s].worst[h] - b[s].worst[h]);
      const MeanCi ci = meanCi(diff);
      findings.push_back({cmp.arm, cmp.baseline, cmp.meanDifference[h], ci.ciLow, ci.ciHigh, cmp.pairedP[h], static_cast<int64_t>(diff.size())});
    }
    os << headlineSentence(findings, eps[h]) << "\n\n";
  }
  os << "== " << c.name << ": robust accuracy (%), worst case over attacks and smaller eps, mean" << (seeds > 1 ? " ± 95% CI" : "")
     << " over " << seeds << " seed(s), " << normName(c.attack.options.norm) << " ==\n";
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-24s %16s", "arm", "clean");
  os << buf;
  for (size_t e = 1; e < eps.size(); ++e) {
    std::snprintf(buf, sizeof buf, " %16s", ("eps=" + std::to_string(eps[e]).substr(0, 6)).c_str());
    os << buf;
  }
  os << "\n";
  for (const auto& arm : c.runArms()) {
    const auto& ds = data.at(arm.name);
    std::snprintf(buf, sizeof buf, "%-24s %16s", arm.name.c_str(), pm(across(ds, [](const ArmSeedData& d) { return d.clean; })).c_str());
    os << buf;
    for (size_t e = 1; e < eps.size(); ++e) {
      std::snprintf(buf, sizeof buf, " %16s", pm(across(ds, [&](const ArmSeedData& d) { return d.worst[e]; })).c_str());
      os << buf;
    }
    os << "\n";
  }
  if (!comparisons.empty()) os << "\n== differences (points), paired over seeds ==\n";
  for (const auto& cmp : comparisons) {
    os << cmp.arm << " - " << cmp.baseline << ":";
    for (size_t e = 0; e < eps.size(); ++e) {
      std::snprintf(buf, sizeof buf, " eps %g: %+.2f (t-test p %s, McNemar p %s);", eps[e], 100.0 * cmp.meanDifference[e],
                    formatP(cmp.pairedP[e]).c_str(), formatP(cmp.mcnemarP[e]).c_str());
      os << buf;
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace robustlab
