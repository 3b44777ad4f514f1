#include "experiments/report/report_latex.h"

#include "experiments/report/report_doc.h"

#include <cmath>
#include <sstream>

namespace robustlab::report {
namespace {

std::string cell(const SeriesCi& s, size_t i, bool best) {
  std::string v = fmt("%.1f", 100.0 * s.mean[i]);
  if (best) v = "\\textbf{" + v + "}";
  if (std::isfinite(s.hi[i])) v += " $\\pm$ " + fmt("%.1f", 100.0 * (s.hi[i] - s.mean[i]));
  return v;
}

/// Whether arm `a`'s mean in column `i` is the largest of all arms' (ties are all bold).
bool isBest(const ReportData& d, const SeriesCi ArmReport::*series, const ArmReport& a, size_t i) {
  for (const auto& other : d.arms)
    if ((other.*series).mean[i] > (a.*series).mean[i]) return false;
  return true;
}

}  // namespace

std::string latexEscape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '\\': o += "\\textbackslash{}"; break;
      case '&': case '%': case '$': case '#': case '_': case '{': case '}': o += std::string("\\") + ch; break;
      case '~': o += "\\textasciitilde{}"; break;
      case '^': o += "\\textasciicircum{}"; break;
      case '\n': case '\r': o += ' '; break;
      default: o += ch;
    }
  }
  return o;
}

std::string latexSummary(const ReportData& d) {
  std::ostringstream t;
  std::string cols = "l";
  for (size_t e = 0; e < d.eps.size(); ++e) cols += "r";  // clean, then each eps > 0
  t << "% robustlab report --latex: " << latexEscape(d.meta.at("name")) << " (config hash " << latexEscape(d.meta.at("config_hash"))
    << "); needs \\usepackage{booktabs}\n";
  t << "\\begin{table}[t]\n\\centering\n\\begin{tabular}{" << cols << "}\n\\toprule\n";
  t << "arm & clean";
  for (size_t e = 1; e < d.eps.size(); ++e) t << " & $\\epsilon = " << fmt("%g", d.eps[e]) << "$";
  t << " \\\\\n\\midrule\n";
  for (const auto& a : d.arms) {
    t << latexEscape(a.name) << " & " << cell(a.clean, 0, isBest(d, &ArmReport::clean, a, 0));
    for (size_t e = 1; e < d.eps.size(); ++e) t << " & " << cell(a.worst, e, isBest(d, &ArmReport::worst, a, e));
    t << " \\\\\n";
  }
  t << "\\bottomrule\n\\end{tabular}\n\\caption{Clean and worst-case robust accuracy (\\%, " << latexEscape(d.norm)
    << ") over " << d.testImages << " test images: mean $\\pm$ 95\\% confidence half-width over " << d.seeds.size()
    << " seeds; worst case per example over " << latexEscape([&] {
         std::string s;
         for (const auto& x : d.attacks) s += (s.empty() ? "" : ", ") + x;
         return s;
       }())
    << " and every smaller $\\epsilon$. Best mean per column in bold.}\n\\end{table}\n";
  return t.str();
}

}  // namespace robustlab::report
