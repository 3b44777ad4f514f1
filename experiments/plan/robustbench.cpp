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
std::string epsEntry(const EvalResult& r, size_t e) {
  std::ostringstream os;
  os << "{\"eps\": " << number(r.epsGrid[e]) << ", \"robust_acc\": " << percent(r.worstAccuracy[e]) << ", \"attacks\": {";
  bool first = true;
  for (const auto& run : r.runs) {
    if (run.eps != r.epsGrid[e]) continue;
    os << (first ? "" : ", ") << jsonString(run.attack) << ": " << percent(run.robustAccuracy);
    first = false;
  }
  os << "}}";
  return os.str();
}

}  // namespace

std::string robustBenchJson(const EvalResult& r, const ModelEntry& entry) {
  const size_t last = r.epsGrid.empty() ? 0 : r.epsGrid.size() - 1;
  const AttackRun* aa = r.epsGrid.empty() ? nullptr : r.find("autoattack", r.epsGrid[last]);
  std::ostringstream os;
  os << "{\n  \"name\": " << jsonString(entry.name) << ",\n  \"dataset\": " << jsonString(entry.dataset)
     << ",\n  \"threat_model\": " << jsonString(r.norm == Norm::kLinf ? "Linf" : "L2")
     << ",\n  \"eps\": " << (r.epsGrid.empty() ? "null" : number(r.epsGrid[last]))
     << ",\n  \"clean_acc\": " << percent(r.cleanAccuracy)
     << ",\n  \"autoattack_acc\": " << (aa ? percent(aa->robustAccuracy) : "null")
     << ",\n  \"robust_acc\": " << (r.epsGrid.empty() ? "null" : percent(r.worstAccuracy[last]))
     << ",\n  \"number_of_examples\": " << r.labels.size(0) << ",\n  \"architecture\": " << jsonString(entry.architecture)
     << ",\n  \"robustlab_version\": " << jsonString(std::string(kVersion) + " (" + kGitDescribe + ")") << ",\n  \"config_hash\": " << jsonString(entry.configHash)
     << ",\n  \"precision\": " << jsonString(precisionName(r.precision)) << ",\n  \"failed_sanity_checks\": " << r.failedChecks()
     << ",\n  \"per_eps\": [";
  for (size_t e = 0; e < r.epsGrid.size(); ++e) os << (e ? ",\n    " : "\n    ") << epsEntry(r, e);
  os << "\n  ]\n}\n";
  return os.str();
}

void writeRobustBenchJson(const std::string& path, const EvalResult& r, const ModelEntry& entry) {
  writeTextAtomically(path, robustBenchJson(r, entry));
}

}  // namespace robustlab
