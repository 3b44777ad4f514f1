#include "experiments/report/report_data.h"

#include "data/h5io.h"
#include "framework/config/config.h"
#include "experiments/plan/experiment.h"
#include "experiments/plan/experiment_summary.h"
#include "experiments/plan/statistics.h"

#include <cmath>
#include <stdexcept>

namespace robustlab {
namespace {

const std::vector<std::string> kCifar10Names = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
const std::vector<std::string> kFashionNames = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

std::vector<double> doubles(const torch::Tensor& t) {
  const auto c = t.to(torch::kFloat64).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

class Reader {
 public:
  explicit Reader(const std::string& path) : f_(path, H5File::Mode::kRead), path_(path) {}
  void need(const std::string& object) const {
    if (!f_.has(object)) throw std::runtime_error(path_ + ": missing '" + object + "' (not a complete robustlab experiment results file)");
  }
  std::vector<double> vec(const std::string& name) const {
    need(name);
    return doubles(f_.readTensor(name));
  }
  SeriesCi series(const std::string& prefix) const {
    return {vec(prefix + "_mean"), vec(prefix + "_std"), vec(prefix + "_ci_low"), vec(prefix + "_ci_high")};
  }
  H5File& file() { return f_; }

 private:
  H5File f_;
  std::string path_;
};

}  // namespace

namespace {

void readSanity(Reader& rd, ReportData& d, const std::string& arm) {
  H5File& f = rd.file();
  for (int64_t seed : d.seeds) {
    const std::string ev = "/arms/" + arm + "/seed_" + std::to_string(seed) + "/eval";
    rd.need(ev + "/sanity/names");
    const auto names = f.readStrings(ev + "/sanity/names");
    const auto details = f.readStrings(ev + "/sanity/details");
    const auto passed = f.readTensor(ev + "/sanity/passed");
    for (size_t i = 0; i < names.size(); ++i)
      d.sanity.push_back({arm, seed, names[i], details[i], passed[static_cast<int64_t>(i)].item<int64_t>() != 0});
  }
}

/// Gallery: the strongest attack's examples at the largest eps, first seed.
void readGallery(Reader& rd, ReportData& d, const std::string& arm, const std::string& ev) {
  H5File& f = rd.file();
  rd.need(ev + "/example_inputs");
  const auto inputs = f.readTensor(ev + "/example_inputs");
  const auto labels = f.readTensor(ev + "/labels");
  const auto cleanPred = f.readTensor(ev + "/clean_pred");
  std::string attack = f.has(ev + "/attacks/apgd-ce") ? "apgd-ce" : f.has(ev + "/attacks/pgd") ? "pgd" : f.children(ev + "/attacks").front();
  const std::string ag = ev + "/attacks/" + attack;
  if (!f.has(ag + "/examples")) return;
  const auto examples = f.readTensor(ag + "/examples");
  const auto advPred = f.readTensor(ag + "/adv_pred");
  const int64_t e = examples.size(0) - 1;
  for (int64_t k = 0; k < std::min<int64_t>(4, inputs.size(0)); ++k)
    d.gallery.push_back({arm, attack, d.eps[static_cast<size_t>(e)], inputs[k], examples[e][k], labels[k].item<int64_t>(),
                         cleanPred[k].item<int64_t>(), advPred[k][e].item<int64_t>()});
}

/// One seed's part of the per-attack breakdown at the largest eps (ArmReport::onlyFooledBy, stages).
void readBreakdown(Reader& rd, const std::string& ev, ArmReport& a, size_t seeds) {
  H5File& f = rd.file();
  std::map<std::string, torch::Tensor> robust;  // attack -> N bool at the largest eps
  for (const auto& attack : f.children(ev + "/attacks")) {
    const auto r = f.readTensor(ev + "/attacks/" + attack + "/robust").to(torch::kBool);
    robust[attack] = r.select(1, r.size(1) - 1);
    const std::string st = ev + "/attacks/" + attack + "/stage_robust_accuracy";
    if (!f.has(st)) continue;
    const auto acc = f.readTensor(st).to(torch::kFloat64);
    auto& [names, mean] = a.stages[attack];
    if (names.empty()) {
      names = f.readStrings(ev + "/attacks/" + attack + "/stage_names");
      mean.assign(names.size(), 0.0);
    }
    for (size_t i = 0; i < names.size() && static_cast<int64_t>(i) < acc.size(1); ++i)
      mean[i] += acc[acc.size(0) - 1][static_cast<int64_t>(i)].item<double>() / static_cast<double>(seeds);
  }
  for (const auto& [attack, r] : robust) {
    auto others = torch::ones_like(r);
    for (const auto& [other, o] : robust)
      if (other != attack) others &= o;
    a.onlyFooledBy[attack] += (others & ~r).sum().item<int64_t>();
  }
}

/// Each seed's worst-case accuracy per eps, and the failed sanity checks over the arm's seeds.
void readSeeds(Reader& rd, const ReportData& d, ArmReport& a) {
  for (int64_t seed : d.seeds) {
    const std::string ev = "/arms/" + a.name + "/seed_" + std::to_string(seed) + "/eval";
    a.seedWorst.push_back(rd.vec(ev + "/worst_accuracy"));
    readBreakdown(rd, ev, a, d.seeds.size());
  }
  for (const auto& s : d.sanity) a.failedChecks += s.arm == a.name && !s.passed;
}

/// The comparison of `arm` against `baseline`, with the 95% interval of the per-seed paired difference.
/// The [robustness] metrics under `group` (groups holding mean_difference and paired_p), recursively.
void readAxes(H5File& f, const std::string& group, const std::string& name, ComparisonReport& c) {
  if (!f.has(group)) return;
  if (f.has(group + "/mean_difference") && f.has(group + "/paired_p")) {
    c.axes[name] = {f.readTensor(group + "/mean_difference")[0].item<double>(), f.readTensor(group + "/paired_p")[0].item<double>()};
    return;
  }
  if (f.has(group + "/mce_per_seed")) c.mce = f.readTensor(group + "/mce_per_seed").nanmean().item<double>();
  if (f.has(group + "/relative_mce_per_seed")) c.relativeMce = f.readTensor(group + "/relative_mce_per_seed").nanmean().item<double>();
  for (const auto& child : f.children(group))
    if (child.find("per_seed") == std::string::npos) readAxes(f, group + "/" + child, name.empty() ? child : name + "/" + child, c);
}

ComparisonReport readComparison(Reader& rd, const ReportData& d, const std::string& arm, const std::string& baseline) {
  const std::string g = "/comparisons/" + arm + "_vs_" + baseline;
  rd.need(g);
  ComparisonReport c{arm, baseline, rd.vec(g + "/mean_difference"), rd.vec(g + "/paired_p"), rd.vec(g + "/cohens_d"), rd.vec(g + "/mcnemar_p"), {}, {}, {}};
  const ArmReport &a = d.arm(arm), &b = d.arm(baseline);
  for (size_t e = 0; e < d.eps.size(); ++e) {
    std::vector<double> diff;
    for (size_t s = 0; s < a.seedWorst.size() && s < b.seedWorst.size(); ++s) diff.push_back(a.seedWorst[s][e] - b.seedWorst[s][e]);
    const MeanCi ci = meanCi(diff);
    c.ciLow.push_back(ci.ciLow);
    c.ciHigh.push_back(ci.ciHigh);
  }
  readAxes(rd.file(), g + "/robustness", "", c);
  return c;
}

/// One arm's summary, training history, sanity checks, gallery and per-seed numbers.
ArmReport readArm(Reader& rd, ReportData& d, const ArmConfig& arm) {
  H5File& f = rd.file();
  ArmReport a;
  a.name = arm.name;
  const std::string s = "/summary/" + arm.name;
  rd.need(s);
  a.nSeeds = f.attrInt(s, "n_seeds");
  a.clean = rd.series(s + "/clean_accuracy");
  a.worst = rd.series(s + "/worst_accuracy");
  rd.need(s + "/attacks");
  for (const auto& attack : f.children(s + "/attacks")) a.perAttack[attack] = rd.series(s + "/attacks/" + attack + "/robust_accuracy");
  const std::string unit = "/arms/" + arm.name + "/seed_" + std::to_string(d.seeds.front());
  rd.need(unit);
  a.pretrain = f.attrString(unit, "pretrain");
  if (f.hasAttr(unit, "initialisation")) a.initialisation = f.attrString(unit, "initialisation");
  a.objective = f.attrString(unit, "objective");
  a.mode = f.attrString(unit, "mode");
  a.perClass = f.attrInt(unit, "per_class");
  a.trainEpoch = rd.vec(unit + "/train/epoch");
  a.trainLoss = rd.vec(unit + "/train/loss");
  a.trainValAccuracy = rd.vec(unit + "/train/val_accuracy");
  readSanity(rd, d, arm.name);
  readGallery(rd, d, arm.name, unit + "/eval");
  readSeeds(rd, d, a);
  d.testImages = f.attrInt(unit + "/eval", "n_examples");
  return a;
}

}  // namespace

const ArmReport& ReportData::arm(const std::string& name) const {
  for (const auto& a : arms)
    if (a.name == name) return a;
  throw std::runtime_error(path + ": no arm '" + name + "'");
}

ReportData readReportData(const std::string& path) {
  Reader rd(path);
  H5File& f = rd.file();
  if (!f.hasAttr("/", "format") || f.attrString("/", "format") != kExperimentFormat)
    throw std::runtime_error(path + ": not an experiment results file (root attribute format != " + std::string(kExperimentFormat) +
                             "; files of 'robustlab attack' have no arms to compare)");
  ReportData d;
  d.path = path;
  for (const std::string key : {"robustlab_version", "libtorch_version", "device", "cpu_model", "cpu_flags", "kernel_path", "aten_cpu_capability",
                                "command", "started", "finished", "config_hash"})
    d.meta[key] = f.hasAttr("/", key) ? f.attrString("/", key) : "";  // files of earlier versions lack the machine facts
  d.meta["seconds"] = f.hasAttr("/", "seconds") ? std::to_string(f.attrDouble("/", "seconds")) : "";
  const std::string configText = f.attrString("/", "config");
  d.meta["config"] = configText;
  const Config c = parseConfig(configText, path + " (stored config)");
  d.meta["name"] = c.name;
  // What ran: the resolved precision stored by the run ("auto" resolved), else the config's request.
  d.meta["precision"] = f.hasAttr("/", "precision") ? f.attrString("/", "precision") : precisionChoiceName(c.precision);
  for (int64_t cls : c.finetune.classes)
    d.classNames.push_back(c.data.source.source == "fashion-mnist" && cls < 10 ? kFashionNames[cls]
                           : c.data.source.source == "cifar10" && cls < 10 ? kCifar10Names[cls]
                                                                          : "class " + std::to_string(cls));
  rd.need("/seeds");
  const auto seeds = f.readTensor("/seeds");
  d.seeds.assign(seeds.data_ptr<int64_t>(), seeds.data_ptr<int64_t>() + seeds.numel());
  d.eps = c.attack.eps;
  d.headline = headlineEpsIndex(c, &d.headlineIsTrainingEps);
  d.norm = normName(c.attack.options.norm);
  rd.need("/arms");
  rd.need("/summary");
  for (const auto& arm : c.runArms()) d.arms.push_back(readArm(rd, d, arm));
  d.attacks = c.attack.attacks;
  for (const auto& arm : c.runArms())
    if (!arm.baseline.empty()) d.comparisons.push_back(readComparison(rd, d, arm.name, arm.baseline));
  return d;
}

}  // namespace robustlab
