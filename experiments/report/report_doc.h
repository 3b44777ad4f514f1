#pragma once
// The document builder shared by the experiment and sweep reports: one call writes the same
// content as HTML (self-contained) and Markdown.
#include "experiments/plan/statistics.h"
#include "experiments/report/report_data.h"

#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace robustlab::report {

inline std::string esc(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '<') o += "&lt;";
    else if (ch == '>') o += "&gt;";
    else if (ch == '&') o += "&amp;";
    else if (ch == '"') o += "&quot;";
    else o += ch;
  }
  return o;
}

/// Text for Markdown: raw HTML disarmed (&lt; &gt; &amp;) and Markdown's own markup escaped, so a
/// name or a detail string stays text in any renderer; newlines (which would end a table row) become
/// spaces.
inline std::string mdEscape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '<') o += "&lt;";
    else if (ch == '>') o += "&gt;";
    else if (ch == '&') o += "&amp;";
    else if (ch == '\n' || ch == '\r') o += ' ';
    else if (std::string("\\`*_[]|!#").find(ch) != std::string::npos) o += std::string("\\") + ch;
    else o += ch;
  }
  return o;
}

inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

inline std::string pct(const SeriesCi& s, size_t i) {
  std::string out = fmt("%.2f", 100.0 * s.mean[i]);
  if (std::isfinite(s.hi[i])) out += " ± " + fmt("%.2f", 100.0 * (s.hi[i] - s.mean[i]));
  return out;
}

inline std::string pval(double p) { return formatP(p); }

/// Inline SVG: the gnuplot file without its XML prologue.
inline std::string inlineSvg(const std::string& svg) {
  const auto pos = svg.find("<svg");
  return pos == std::string::npos ? svg : svg.substr(pos);
}

struct Doc {
  std::ostringstream html, md;
  void section(const std::string& id, const std::string& title) {
    html << "<section id=\"" << id << "\"><h2>" << esc(title) << "</h2>\n";
    md << "\n## " << mdEscape(title) << "\n\n";
  }
  void end() { html << "</section>\n"; }
  /// A table in both formats; `classes` per cell (same shape as rows) colours HTML cells.
  void table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows,
             const std::vector<std::vector<std::string>>& classes = {}) {
    html << "<table><tr>";
    for (const auto& h : head) html << "<th>" << esc(h) << "</th>";
    html << "</tr>\n";
    md << "|";
    for (const auto& h : head) md << " " << mdEscape(h) << " |";
    md << "\n|";
    for (size_t i = 0; i < head.size(); ++i) md << "---|";
    md << "\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      html << "<tr>";
      md << "|";
      for (size_t k = 0; k < rows[r].size(); ++k) {
        const std::string cls = r < classes.size() && k < classes[r].size() ? classes[r][k] : "";
        html << "<td" << (cls.empty() ? "" : " class=\"" + cls + "\"") << ">" << esc(rows[r][k]) << "</td>";
        md << " " << mdEscape(rows[r][k]) << " |";
      }
      html << "</tr>\n";
      md << "\n";
    }
    html << "</table>\n";
  }
  void figure(const std::string& svg, const std::string& file, const std::string& caption) {
    html << "<figure>" << inlineSvg(svg) << "<figcaption>" << esc(caption) << "</figcaption></figure>\n";
    md << "![" << mdEscape(caption) << "](" << file << ")\n\n";
  }
};

inline constexpr const char* kStyle = R"(body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#eee}td:first-child{text-align:left}.fail{background:#f4b4b4;color:#900;font-weight:bold}.pass{color:#060}
.better{color:#060}.worse{color:#900}figure{margin:1em 0}.gallery{display:flex;flex-wrap:wrap;gap:12px}
.gallery figure{width:340px;font-size:12px}.gallery img{image-rendering:pixelated;border:1px solid #999}
.fooled img{border-color:#c00}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}
.machine{font-size:13px;color:#444;background:#f6f6f6;padding:6px 10px}.answers li{margin:0.4em 0;font-size:15px}
.rules{font-size:12px;color:#555}.decides{font-weight:bold;background:#e8eefa}
)";

}  // namespace robustlab::report
