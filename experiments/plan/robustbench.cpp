#include "experiments/plan/robustbench.h"

#include "data/atomic_write.h"
#include "experiments/plan/results_io.h"
#include "experiments/plan/version.h"

#include <cstdio>
#include <sstream>

namespace robustlab {
namespace {

std::string jsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\', out += static_cast<char>(ch);
    else if (ch == '\n') out += "\\n";
    else if (ch < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else out += static_cast<char>(ch);
  }
  return out + "\"";
}

std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "\"%.2f\"", 100.0 * fraction);
  return buf;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

/// One eps of the grid: the worst case and each attack's robust accuracy.
std::string epsEntry(const EvalNumbers& r, size_t e) {
  std::ostringstream os;
  os << "{\"eps\": " << number(r.eps[e]) << ", \"robust_acc\": " << percent(r.worst[e]) << ", \"attacks\": {";
  bool first = true;
  for (const auto& [attack, acc] : r.perAttack) {
    os << (first ? "" : ", ") << jsonString(attack) << ": " << percent(acc[e]);
    first = false;
  }
  os << "}}";
  return os.str();
}

}  // namespace

std::string entryArchitecture(const ModelSpec& spec) {
  return spec.arch == "torchscript" ? "torchscript " + spec.torchscript + " (sha256 " + spec.torchscriptSha256 + ")" : spec.arch;
}

EvalNumbers evalNumbers(const EvalResult& r) {
  EvalNumbers n;
  n.norm = r.norm;
  n.precision = precisionName(r.precision);
  n.eps = r.epsGrid;
  n.worst = r.worstAccuracy;
  n.clean = r.cleanAccuracy;
  n.examples = r.labels.size(0);
  n.failedChecks = r.failedChecks();
  for (const auto& run : r.runs) n.perAttack[run.attack].push_back(run.robustAccuracy);  // attack-major, eps in order
  return n;
}

std::string robustBenchJson(const EvalNumbers& r, const ModelEntry& entry) {
  const bool any = !r.eps.empty();
  const size_t last = any ? r.eps.size() - 1 : 0;
  const auto aa = r.perAttack.find("autoattack");
  std::ostringstream os;
  os << "{\n  \"name\": " << jsonString(entry.name) << ",\n  \"dataset\": " << jsonString(entry.dataset)
     << ",\n  \"threat_model\": " << jsonString(r.norm == Norm::kLinf ? "Linf" : r.norm == Norm::kL2 ? "L2" : "L1")
     << ",\n  \"eps\": " << (any ? number(r.eps[last]) : "null") << ",\n  \"clean_acc\": " << percent(r.clean)
     << ",\n  \"autoattack_acc\": " << (any && aa != r.perAttack.end() ? percent(aa->second[last]) : "null")
     << ",\n  \"robust_acc\": " << (any ? percent(r.worst[last]) : "null") << ",\n  \"number_of_examples\": " << r.examples
     << ",\n  \"architecture\": " << jsonString(entry.architecture)
     << ",\n  \"robustlab_version\": " << jsonString(std::string(kVersion) + " (" + kGitDescribe + ")")
     << ",\n  \"config_hash\": " << jsonString(entry.configHash) << ",\n  \"precision\": " << jsonString(r.precision)
     << ",\n  \"failed_sanity_checks\": " << r.failedChecks;
  if (!entry.preprocessing.empty()) os << ",\n  \"preprocessing\": " << entry.preprocessing;
  os << ",\n  \"per_eps\": [";
  for (size_t e = 0; e < r.eps.size(); ++e) os << (e ? ",\n    " : "\n    ") << epsEntry(r, e);
  os << "\n  ]\n}";
  return os.str();
}

std::string entryPreprocessing(const ModelSpec& spec) {
  auto values = [](const std::vector<double>& v, double one) {
    if (v.empty()) return number(one);
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + number(v[i]);
    return s + "]";
  };
  return "{\"input_range\": [" + number(spec.rangeLo) + ", " + number(spec.rangeHi) + "], \"mean\": " + values(spec.channelMean, spec.mean) +
         ", \"std\": " + values(spec.channelStd, spec.stdev) + "}";
}

std::string robustBenchJsonText(const std::vector<std::pair<EvalNumbers, ModelEntry>>& entries) {
  if (entries.size() == 1) return robustBenchJson(entries[0].first, entries[0].second) + "\n";
  std::string text = "[";
  for (size_t i = 0; i < entries.size(); ++i) text += (i ? ",\n" : "\n") + robustBenchJson(entries[i].first, entries[i].second);
  return text + "\n]\n";
}

void writeRobustBenchJson(const std::string& path, const std::vector<std::pair<EvalNumbers, ModelEntry>>& entries) {
  writeTextAtomically(path, robustBenchJsonText(entries));
}

}  // namespace robustlab
