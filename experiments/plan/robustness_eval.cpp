#include "experiments/plan/robustness_eval.h"

#include "attacks/corruptions/corruptions.h"
#include "data/tasks.h"
#include "experiments/plan/pipeline.h"
#include "framework/distributed/communicator.h"
#include "framework/models/predict.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>

namespace robustlab {

torch::Tensor oodImages(const std::string& source, const Dataset& like, int64_t n, uint64_t seed) {
  const std::vector<int64_t> shape{n, like.channels(), like.height(), like.width()};
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  if (source == "gaussian") return (torch::randn(shape, gen, torch::kFloat32) + 0.5).clamp(0, 1);
  if (source == "uniform") return torch::rand(shape, gen, torch::kFloat32);
  if (source == "blobs") {
    auto b = corruption::blur(torch::bernoulli(torch::full(shape, 0.7f), gen), 1.5);
    return b.masked_fill(b < 0.75, 0.0).clamp(0, 1);
  }
  const Dataset d = cachedSplit(DataSourceSpec{source, "", "", ""}, "test");
  if (d.channels() != like.channels() || d.height() != like.height() || d.width() != like.width())
    throw std::invalid_argument("robustness.ood_sources: '" + source + "' has " + std::to_string(d.channels()) + " x " +
                                std::to_string(d.height()) + " x " + std::to_string(d.width()) + " images, the task " +
                                std::to_string(like.channels()) + " x " + std::to_string(like.height()) + " x " + std::to_string(like.width()));
  return sampleSubset(d, n, seed).images;
}

void checkOodSources(const Config& c) {
  const auto synthetic = syntheticOodSources();
  std::vector<std::string> sources;
  for (const auto& s : c.robustness.oodSources)
    if (std::find(synthetic.begin(), synthetic.end(), s) == synthetic.end()) sources.push_back(s);
  if (sources.empty()) return;
  const DataSourceSpec task = c.finetune.dataSource.empty() ? c.data.source : DataSourceSpec{c.finetune.dataSource, c.finetune.dataDir, "", ""};
  const Dataset like = cachedSplit(task, "test");
  for (const auto& s : sources) {
    try {
      oodImages(s, like, 1, 0);
    } catch (const std::exception& e) {
      const std::string what = e.what();
      if (what.rfind("robustness.ood_sources", 0) == 0) throw;
      throw std::invalid_argument("robustness.ood_sources: '" + s + "' cannot be read: " + what);
    }
  }
}

namespace {

/// Whether each test image is right under each corruption at each severity (row 5 i + severity - 1 for
/// `names[i]`). The (corruption, severity) pairs are what data-parallel ranks share: a rank takes every
/// ranks-th pair from its own rank on (a corruption's severities cost alike, so the shares do too), and
/// the rows are gathered back into order. A pair's images are corrupted by one seeded draw over the
/// whole test set, as in one process, so the rows do not depend on the ranks.
torch::Tensor corruptionCorrect(ClassifierImpl& model, const Dataset& test, const std::vector<std::string>& names, uint64_t seed,
                                torch::Device device, Communicator* comm) {
  const int64_t pairs = 5 * static_cast<int64_t>(names.size()), n = test.size();
  const int64_t rank = comm ? comm->rank() : 0, ranks = comm ? comm->size() : 1;
  std::vector<torch::Tensor> mine;
  for (int64_t i = rank; i < pairs; i += ranks) {
    const int severity = static_cast<int>(i % 5) + 1;
    const auto images = corrupt(names[static_cast<size_t>(i / 5)], test.images, severity, corruptionSeed(seed, severity));
    mine.push_back(predict(model, images, device).eq(test.labels).to(torch::kUInt8));
  }
  auto rows = mine.empty() ? torch::empty({0, n}, torch::kUInt8) : torch::stack(mine);
  if (!comm) return rows.to(torch::kBool);
  const auto gathered = comm->allGather(rows);  // rank 0's rows, then rank 1's, ...
  auto out = torch::empty({pairs, n}, torch::kBool);
  int64_t row = 0;
  for (int64_t r = 0; r < ranks; ++r)
    for (int64_t i = r; i < pairs; i += ranks) out[i].copy_(gathered[row++]);
  return out;
}

}  // namespace

RobustnessResult evaluateRobustness(ClassifierImpl& model, const Dataset& test, const torch::Tensor& corrupted,
                                    const torch::Tensor& trainClassCounts, const Config& c, torch::Device device, Communicator* comm) {
  const RobustnessConfig& rc = c.robustness;
  RobustnessResult r;
  r.any = !rc.isDefault();
  if (!r.any) return r;
  r.corruptedLabels = corrupted;
  r.trainClassCounts = trainClassCounts;
  const auto clean = logits(model, test.images, device).to(torch::kFloat64);
  const auto right = clean.argmax(1).eq(test.labels).to(torch::kFloat64);
  r.perClassAccuracy = torch::zeros({test.numClasses}, torch::kFloat64);
  for (int64_t k = 0; k < test.numClasses; ++k) {
    const auto in = test.labels.eq(k);
    r.perClassAccuracy[k] = in.any().item<bool>() ? right.masked_select(in).mean().item<double>() : NAN;
  }
  if (rc.calibration) {
    r.hasCalibration = true;
    r.calibration = calibration(clean, test.labels, rc.calibrationBins);
  }
  const auto names = rc.corruptionList();
  const auto correct = corruptionCorrect(model, test, names, c.seed, device, comm);
  for (size_t i = 0; i < names.size(); ++i) {
    CorruptionResult cr{names[i], {}, correct.slice(0, 5 * static_cast<int64_t>(i), 5 * static_cast<int64_t>(i) + 5)};
    for (int64_t sev = 0; sev < 5; ++sev) cr.accuracy.push_back(cr.correct[sev].to(torch::kFloat64).mean().item<double>());
    r.corruptions.push_back(cr);
  }
  const auto inMsp = maxSoftmax(clean), inMax = std::get<0>(clean.max(1));
  for (size_t i = 0; i < rc.oodSources.size(); ++i) {
    const auto images = oodImages(rc.oodSources[i], test, rc.oodLimit, c.seed + 31 + i);
    const auto out = logits(model, images, device).to(torch::kFloat64);
    r.ood.push_back({rc.oodSources[i], images.size(0), detection(inMsp, maxSoftmax(out)), detection(inMax, std::get<0>(out.max(1)))});
  }
  return r;
}

void writeRobustness(H5File& f, const std::string& group, const RobustnessConfig& config, const RobustnessResult& r) {
  if (!r.any) return;
  f.createGroup(group);
  f.setAttr(group, "label_noise", config.labelNoise);
  f.setAttr(group, "label_noise_kind", config.labelNoiseKind);
  f.setAttr(group, "imbalance", config.imbalance);
  if (r.corruptedLabels.defined()) f.writeTensor(group + "/train_label_corrupted", r.corruptedLabels.to(torch::kUInt8));
  if (r.trainClassCounts.defined()) f.writeTensor(group + "/train_class_counts", r.trainClassCounts);
  f.writeTensor(group + "/per_class_accuracy", r.perClassAccuracy);
  if (r.hasCalibration) {
    const std::string g = group + "/calibration";
    f.createGroup(g);
    f.setAttr(g, "binning", std::string("equal-mass (each bin the same number of test images, sorted by confidence)"));
    f.setAttr(g, "rms_error", r.calibration.rmsError);
    f.setAttr(g, "ece", r.calibration.ece);
    f.setAttr(g, "nll", r.calibration.nll);
    f.setAttr(g, "brier", r.calibration.brier);
    f.writeTensor(g + "/bin_confidence", r.calibration.binConfidence);
    f.writeTensor(g + "/bin_accuracy", r.calibration.binAccuracy);
    f.writeTensor(g + "/bin_count", r.calibration.binCount);
  }
  for (const auto& o : r.ood) {
    for (const auto& [score, d] : {std::make_pair(std::string("msp"), o.msp), std::make_pair(std::string("max_logit"), o.maxLogit)}) {
      const std::string g = group + "/ood/" + o.source + "/" + score;
      f.createGroup(g);
      f.setAttr(g, "auroc", d.auroc);
      f.setAttr(g, "aupr_in", d.auprIn);
      f.setAttr(g, "aupr_out", d.auprOut);
      f.setAttr(g, "fpr95", d.fpr95);
    }
    f.setAttr(group + "/ood/" + o.source, "images", o.images);
  }
  double sum = 0;
  for (const auto& cr : r.corruptions) {
    const std::string g = group + "/corruptions/" + cr.name;
    f.writeTensor(g + "/accuracy", torch::tensor(cr.accuracy, torch::kFloat64));
    f.writeTensor(g + "/correct", cr.correct.to(torch::kUInt8));
    for (double a : cr.accuracy) sum += a;
  }
  if (!r.corruptions.empty())
    f.setAttr(group + "/corruptions", "mean_accuracy", sum / static_cast<double>(5 * r.corruptions.size()));
}

std::map<std::string, double> readRobustnessMetrics(H5File& f, const std::string& group) {
  std::map<std::string, double> m;
  if (!f.has(group)) return m;
  if (f.has(group + "/calibration"))
    for (const std::string k : {"rms_error", "ece", "nll", "brier"}) m["calibration/" + k] = f.attrDouble(group + "/calibration", k);
  if (f.has(group + "/ood"))
    for (const auto& source : f.children(group + "/ood"))
      for (const std::string score : {"msp", "max_logit"})
        for (const std::string k : {"auroc", "aupr_in", "aupr_out", "fpr95"})
          m["ood/" + source + "/" + score + "/" + k] = f.attrDouble(group + "/ood/" + source + "/" + score, k);
  if (f.has(group + "/corruptions")) {
    m["corruptions/mean_accuracy"] = f.attrDouble(group + "/corruptions", "mean_accuracy");
    for (const auto& name : f.children(group + "/corruptions")) {
      const auto acc = f.readTensor(group + "/corruptions/" + name + "/accuracy");
      for (int64_t s = 0; s < acc.numel(); ++s) m["corruptions/" + name + "/severity_" + std::to_string(s + 1)] = acc[s].item<double>();
    }
  }
  return m;
}

std::map<std::string, torch::Tensor> readCorruptionCorrect(H5File& f, const std::string& group) {
  std::map<std::string, torch::Tensor> m;
  if (!f.has(group + "/corruptions")) return m;
  for (const auto& name : f.children(group + "/corruptions"))
    if (f.has(group + "/corruptions/" + name + "/correct")) m[name] = f.readTensor(group + "/corruptions/" + name + "/correct").to(torch::kBool);
  return m;
}

CorruptionErrors corruptionErrors(const std::map<std::string, double>& arm, double armClean, const std::map<std::string, double>& base,
                                  double baseClean) {
  // Sums per corruption over its severities, from the "corruptions/<name>/severity_<k>" entries.
  std::map<std::string, std::array<double, 4>> sums;  // arm error, base error, arm rel, base rel
  for (const auto& [key, acc] : arm) {
    if (key.rfind("corruptions/", 0) != 0 || key.find("/severity_") == std::string::npos || !base.count(key)) continue;
    const std::string name = key.substr(12, key.find("/severity_") - 12);
    auto& s = sums[name];
    s[0] += 1 - acc;
    s[1] += 1 - base.at(key);
    s[2] += (1 - acc) - (1 - armClean);
    s[3] += (1 - base.at(key)) - (1 - baseClean);
  }
  CorruptionErrors e;
  if (sums.empty()) return e;
  // A corruption that does not raise the baseline's error above its clean error (its degradation sum
  // <= 0) leaves the relative CE undefined: it is left out of the relative mean (NaN when none is left).
  double ce = 0, rel = 0;
  int64_t relCount = 0;
  for (const auto& [name, s] : sums) {
    ce += s[0] / s[1];
    if (s[3] > 0) {
      rel += s[2] / s[3];
      ++relCount;
    }
  }
  e.mce = ce / static_cast<double>(sums.size());
  e.relativeMce = relCount ? rel / static_cast<double>(relCount) : NAN;
  return e;
}

}  // namespace robustlab
