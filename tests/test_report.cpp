// `robustlab report` on a tiny real-data experiment: a self-contained HTML page that renders in
// headless Chromium with every section, and clear errors for results files it cannot use.
#include "fixtures.h"
#include "tiny_experiment.h"

#include "data/h5io.h"
#include "experiments/report/report_figures.h"
#include "experiments/report/report_latex.h"

#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace robustlab;
namespace fs = std::filesystem;

namespace {



/// Results of the tiny experiment, computed once per test process.
const std::string& tinyResults() {
  static const std::string path = [] {
    const std::string dir = test::tempDir("report-exp");
    const std::string cfg = test::writeTiny(dir);
    REQUIRE(test::shell(std::string(ROBUSTLAB_BINARY) + " run -q " + cfg + " -o " + dir + "/r.h5 >/dev/null 2>&1") == 0);
    return dir + "/r.h5";
  }();
  return path;
}

}  // namespace

TEST_CASE("the report renders offline in headless Chromium with every section", "[report]") {
  const std::string out = test::tempDir("report-out") + "/rep";
  REQUIRE(test::shell(std::string(ROBUSTLAB_BINARY) + " report " + tinyResults() + " -o " + out + " >/dev/null 2>&1") == 0);
  const std::string html = test::readFile(out + "/report.html");
  for (const std::string id : {"metadata", "summary", "curves", "comparison", "training", "gallery", "sanity"}) {
    INFO(id);
    CHECK(html.find("<section id=\"" + id + "\">") != std::string::npos);
  }
  // Self-contained: no request leaves the page (SVG namespace URIs are names, not requests).
  CHECK(html.find("src=\"http") == std::string::npos);
  CHECK(html.find("href=\"http") == std::string::npos);
  CHECK(html.find("data:image/png;base64,") != std::string::npos);
  CHECK(html.find("pre-adv") != std::string::npos);
  CHECK(fs::exists(out + "/report.md"));
  CHECK(fs::exists(out + "/figures/curve-worst.svg"));
  CHECK(test::readFile(out + "/report.md").find("## Pre-trained against from scratch") != std::string::npos);
  INFO("the report says what each arm started from");
  CHECK(html.find("<td>scratch</td><td>none</td><td>fresh: LibTorch's default initialisation (PyTorch's rules), seed ") != std::string::npos);
  CHECK(html.find("<td>pre-adv</td><td>clean</td><td>pre-trained: the backbone of ") != std::string::npos);
  INFO("the answer comes first: a sentence per comparison, then the forest plot, before the metadata");
  const auto answer = html.find("<section id=\"answer\">");
  REQUIRE(answer != std::string::npos);
  CHECK(answer < html.find("<section id=\"metadata\">"));
  CHECK(html.find("pre-adv against scratch: ") > answer);
  CHECK(html.find("2 seeds) — too few seeds for a firm conclusion") != std::string::npos);
  INFO("one headline answers first: here, no verdict with two seeds");
  const auto verdict = html.find("<p class=\"headline\"><strong>No verdict yet: 2 seeds are too few for a firm conclusion (at least 3); at eps 0.1");
  CHECK(verdict > answer);
  CHECK(verdict < html.find("pre-adv against scratch: "));
  CHECK(html.find("How the sentences are made: at eps 0.1 (the eps the arms were adversarially fine-tuned at)") != std::string::npos);
  CHECK(html.find("kernel path ") > answer);
  for (const std::string ext : {".svg", ".pdf", ".csv"}) CHECK(fs::exists(out + "/figures/forest" + ext));
  CHECK(test::readFile(out + "/figures/forest.pdf").rfind("%PDF", 0) == 0);
  CHECK(test::readFile(out + "/figures/curve-worst.pdf").rfind("%PDF", 0) == 0);

  // Render it as a person would see it.
  const std::string shot = out + "/screenshot.png";
  const std::string cmd = "timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                          "--disable-background-networking --disable-component-update --disable-sync --user-data-dir=" +
                          out + "/chromium-profile --window-size=1200,2400 --screenshot=" + shot + " file://" + out +
                          "/report.html >/dev/null 2>&1";
  REQUIRE(test::shell("command -v chromium >/dev/null") == 0);  // installed by scripts/setup.sh
  test::shell(cmd);
  REQUIRE(fs::exists(shot));
  const auto img = decodePng(shot).to(torch::kInt64);
  CHECK(img.size(0) == 2400);
  // Not blank: a good share of non-white pixels and many distinct colours (tables, plots, images).
  const auto nonWhite = (img.sum(2) < 3 * 245).to(torch::kFloat64).mean().item<double>();
  const auto packed = (img.select(2, 0) * 65536 + img.select(2, 1) * 256 + img.select(2, 2)).flatten();
  const int64_t colours = std::get<0>(at::_unique(packed)).numel();
  INFO("non-white share " << nonWhite << ", distinct colours " << colours);
  CHECK(nonWhite > 0.03);
  CHECK(colours > 50);

  INFO("the first screen (1200 x 900) holds the forest plot: its points and bars are drawn in #1f4e99");
  const std::string first = out + "/first-screen.png";
  test::shell("timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
              "--disable-component-update --disable-sync --user-data-dir=" + out + "/chromium-profile --window-size=1200,900 --screenshot=" +
              first + " file://" + out + "/report.html >/dev/null 2>&1");
  REQUIRE(fs::exists(first));
  const auto screen = decodePng(first).to(torch::kInt64);
  const auto blue = ((screen.select(2, 0) - 31).abs() + (screen.select(2, 1) - 78).abs() + (screen.select(2, 2) - 153).abs() < 30);
  INFO("forest-plot pixels on the first screen: " << blue.sum().item<int64_t>());
  CHECK(blue.sum().item<int64_t>() > 300);
}

TEST_CASE("every figure's numbers are in a CSV beside it: the forest plot's are the results file's comparisons", "[report]") {
  const std::string out = test::tempDir("report-csv") + "/rep";
  REQUIRE(test::shell(std::string(ROBUSTLAB_BINARY) + " report " + tinyResults() + " -o " + out + " >/dev/null 2>&1") == 0);
  H5File f(tinyResults(), H5File::Mode::kRead);
  const auto diff = f.readTensor("/comparisons/pre-adv_vs_scratch/mean_difference");
  std::istringstream forest(test::readFile(out + "/figures/forest.csv"));
  std::string line;
  std::getline(forest, line);
  CHECK(line == "comparison,eps,difference_points,ci_low,ci_high,paired_p,mcnemar_p");
  int rows = 0;
  while (std::getline(forest, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
    REQUIRE(cells.size() == 7);
    CHECK(cells[0] == "pre-adv vs scratch");
    // eps 0 has no row: rows are eps 0.05 and 0.1, the grid's indices 1 and 2.
    CHECK(std::stod(cells[2]) == Approx(100.0 * diff[rows + 1].item<double>()).epsilon(1e-6));
    CHECK(std::stod(cells[3]) <= std::stod(cells[2]));
    CHECK(std::stod(cells[4]) >= std::stod(cells[2]));
    ++rows;
  }
  CHECK(rows == 2);
  const auto worst = f.readTensor("/summary/scratch/worst_accuracy_mean");
  std::istringstream curve(test::readFile(out + "/figures/curve-worst.csv"));
  std::getline(curve, line);
  CHECK(line == "series,x,y,lo,hi");
  std::getline(curve, line);
  std::vector<std::string> cells;
  std::stringstream ss(line);
  for (std::string c; std::getline(ss, c, ',');) cells.push_back(c);
  REQUIRE(cells.size() == 5);
  CHECK(cells[0] == "scratch");
  CHECK(cells[1] == "0");
  CHECK(std::stod(cells[2]) == Approx(100.0 * worst[0].item<double>()).epsilon(1e-6));
}

TEST_CASE("results the report cannot use: one clear error and no report left behind", "[report]") {
  const std::string dir = test::tempDir("report-bad");
  auto check = [&](const std::string& file, const std::string& expected) {
    const std::string out = dir + "/rep";
    const int code = test::shell(std::string(ROBUSTLAB_BINARY) + " report " + file + " -o " + out + " >/dev/null 2>" + dir + "/err");
    const std::string err = test::readFile(dir + "/err");
    INFO(file << ": " << err);
    CHECK(code == 1);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
    CHECK(err.find(expected) != std::string::npos);
    CHECK_FALSE(fs::exists(out));
    for (const auto& e : fs::directory_iterator(dir)) CHECK(e.path().filename().string().find("rep.tmp") == std::string::npos);
  };
  std::ofstream(dir + "/text.h5") << "not HDF5";
  check(dir + "/text.h5", "not an HDF5 file");
  const std::string full = test::readFile(tinyResults());
  std::ofstream(dir + "/cut.h5", std::ios::binary) << full.substr(0, full.size() / 3);
  check(dir + "/cut.h5", dir + "/cut.h5");
  {
    H5File f(dir + "/partial.h5", H5File::Mode::kTruncate);
    H5File src(tinyResults(), H5File::Mode::kRead);
    f.setAttr("/", "format", std::string("robustlab-experiment-1"));
    f.setAttr("/", "config", src.attrString("/", "config"));
    f.copyFrom(src, "/seeds", "/seeds");
    f.copyFrom(src, "/arms", "/arms");
  }
  check(dir + "/partial.h5", "missing '/summary'");
  check(dir + "/missing.h5", "file not found");
}

TEST_CASE("report -o never replaces what it did not write, and a killed report leaves nothing behind", "[report]") {
  const std::string dir = test::tempDir("report-target");
  const std::string bin = ROBUSTLAB_BINARY;
  auto report = [&](const std::string& results, const std::string& out) {
    const int code = test::shell(bin + " report " + results + " -o " + out + " >/dev/null 2>" + dir + "/err");
    return std::make_pair(code, test::readFile(dir + "/err"));
  };
  // A folder of the user's: refused, the note untouched.
  fs::create_directories(dir + "/mydocs");
  std::ofstream(dir + "/mydocs/notes.txt") << "mine\n";
  auto [code, err] = report(tinyResults(), dir + "/mydocs");
  INFO(err);
  CHECK(code == 1);
  CHECK(err.find("not a robustlab report") != std::string::npos);
  CHECK(test::readFile(dir + "/mydocs/notes.txt") == "mine\n");
  // The folder that holds the results: refused, the results untouched.
  fs::create_directories(dir + "/res");
  fs::copy_file(tinyResults(), dir + "/res/r.h5");
  std::tie(code, err) = report(dir + "/res/r.h5", dir + "/res");
  CHECK(code == 1);
  CHECK(err.find("holds the results file") != std::string::npos);
  CHECK(test::readFile(dir + "/res/r.h5") == test::readFile(tinyResults()));
  // A file where the folder would go: refused.
  std::ofstream(dir + "/afile") << "x";
  std::tie(code, err) = report(tinyResults(), dir + "/afile");
  CHECK(code == 1);
  CHECK(test::readFile(dir + "/afile") == "x");
  // An earlier report is replaced, and a report killed halfway leaves a temporary that the next
  // report run removes.
  REQUIRE(report(tinyResults(), dir + "/rep").first == 0);
  CHECK(test::shell("timeout -s KILL 0.3 " + bin + " report " + tinyResults() + " -o " + dir + "/rep >/dev/null 2>&1") != 0);
  REQUIRE(report(tinyResults(), dir + "/rep").first == 0);
  CHECK(fs::exists(dir + "/rep/report.html"));
  for (const auto& e : fs::directory_iterator(dir)) {
    INFO("left behind: " << e.path());
    CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
  }
}

TEST_CASE("figure titles, labels and paths reach gnuplot as text, never as commands", "[report]") {
  const std::string dir = test::tempDir("report-gnuplot-names");
  const std::string marker = dir + "/pwned";
  // Names a config can no longer hold, passed to the plotting code directly: a gnuplot string break-out,
  // a double-quoted one, a newline that would start a new gnuplot command, and a quote in the path.
  const std::vector<std::string> hostile{"b'.system(\"touch " + marker + "\").'", "x\"; system \"touch " + marker + "\"; \"",
                                         "line\nsystem 'touch " + marker + "'"};
  std::vector<PlotSeries> series;
  for (const auto& h : hostile) series.push_back({h, {0.0, 0.1}, {0.9, 0.5}, {}, {}});
  const std::string sub = dir + "/it's here";
  fs::create_directories(sub);
  const std::string svg = plotSvg(sub + "/curve.svg", hostile[0], hostile[1], series, true);
  CHECK_FALSE(fs::exists(marker));
  CHECK(fs::exists(sub + "/curve.svg"));
  CHECK(svg.find("system(") != std::string::npos);  // the title is drawn as text
  const std::string heat = heatmapSvg(sub + "/heat.svg", hostile[2], {hostile[0], "b"}, hostile[1], {hostile[2]}, {{0.5, 0.7}}, hostile[0]);
  CHECK_FALSE(fs::exists(marker));
  CHECK(fs::exists(sub + "/heat.svg"));
}

TEST_CASE("the per-attack breakdown counts the examples each attack alone fooled, from the per-example results", "[report]") {
  const std::string out = test::tempDir("report-breakdown") + "/rep";
  REQUIRE(test::shell(std::string(ROBUSTLAB_BINARY) + " report " + tinyResults() + " -o " + out + " >/dev/null 2>&1") == 0);
  const std::string html = test::readFile(out + "/report.html");
  const auto section = html.find("<section id=\"breakdown\">");
  REQUIRE(section != std::string::npos);
  H5File f(tinyResults(), H5File::Mode::kRead);
  int64_t onlyFgsm = 0, onlyPgd = 0;
  for (const std::string seed : {"0", "1"}) {
    const std::string ev = "/arms/pre-adv/seed_" + seed + "/eval/attacks/";
    const auto fg = f.readTensor(ev + "fgsm/robust").to(torch::kBool).select(1, 2), pg = f.readTensor(ev + "pgd/robust").to(torch::kBool).select(1, 2);
    onlyFgsm += (pg & ~fg).sum().item<int64_t>();
    onlyPgd += (fg & ~pg).sum().item<int64_t>();
  }
  const auto row = html.find("<tr><td>pre-adv</td>", section);
  REQUIRE(row != std::string::npos);
  const std::string line = html.substr(row, html.find("</tr>", row) - row);
  INFO(line << "\nonly fgsm " << onlyFgsm << ", only pgd " << onlyPgd);
  CHECK(line.find(" (" + std::to_string(onlyFgsm) + ")</td>") != std::string::npos);
  CHECK(line.find(" (" + std::to_string(onlyPgd) + ")</td>") != std::string::npos);
  CHECK(onlyPgd > 0);
}

TEST_CASE("report --compare puts the same arm of two experiments side by side with a Welch interval and test", "[report]") {
  const std::string dir = test::tempDir("report-compare"), out = dir + "/rep", second = dir + "/second.h5";
  fs::copy_file(tinyResults(), second);
  REQUIRE(test::shell(std::string(ROBUSTLAB_BINARY) + " report " + tinyResults() + " --compare " + second + " -o " + out +
                      " >/dev/null 2>&1") == 0);
  const std::string html = test::readFile(out + "/report.html");
  INFO("two experiments of the same name are told apart by their files, and the comparison comes first");
  CHECK(html.find("<th>r (%)</th><th>second (%)</th><th>r minus second (points)</th>") != std::string::npos);
  CHECK(html.find("<section id=\"experiments\">") < html.find("<section id=\"answer\">"));
  INFO("an experiment against itself: every difference 0, every p-value 1");
  CHECK(html.find("<td>pre-adv</td><td>0.1</td>") != std::string::npos);
  CHECK(html.find("<td>+0.00</td>") != std::string::npos);
  const auto table = html.find("Welch p");
  REQUIRE(table != std::string::npos);
  const std::string rows = html.substr(table, html.find("</table>", table) - table);
  CHECK(rows.find("<td>+0.00</td><td>[") != std::string::npos);
  CHECK(rows.find("class=\"better\"") == std::string::npos);  // no difference called significant
  CHECK(rows.find("class=\"worse\"") == std::string::npos);
}

TEST_CASE("report --latex writes a booktabs table that compiles where TeX is installed, and is well-formed everywhere", "[report]") {
  const std::string dir = test::tempDir("report-latex");
  const std::string out = dir + "/rep";
  REQUIRE(test::shell(std::string(ROBUSTLAB_BINARY) + " report --latex " + tinyResults() + " -o " + out + " >/dev/null 2>&1") == 0);
  const std::string tex = test::readFile(out + "/summary.tex");
  for (const std::string rule : {"\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{lrrr}", "\\end{tabular}", "\\textbf{"})
    CHECK(tex.find(rule) != std::string::npos);
  int depth = 0, minDepth = 0;
  for (char ch : tex) {
    depth += ch == '{' ? 1 : ch == '}' ? -1 : 0;
    minDepth = std::min(minDepth, depth);
  }
  CHECK(depth == 0);
  CHECK(minDepth == 0);
  INFO("a header and one row per arm, each with clean + 2 eps columns (3 separators, none escaped)");
  const auto body = tex.substr(tex.find("\\toprule"), tex.find("\\bottomrule") - tex.find("\\toprule"));
  std::istringstream rows(body);
  int tableRows = 0;
  for (std::string line; std::getline(rows, line);) {
    if (line.find("\\\\") == std::string::npos) continue;
    int amps = 0;
    for (size_t i = 0; i < line.size(); ++i) amps += line[i] == '&' && (i == 0 || line[i - 1] != '\\');
    CHECK(amps == 3);
    ++tableRows;
  }
  CHECK(tableRows == 3);
  INFO("names from configs cannot break out of a cell");
  CHECK(report::latexEscape("a_b&c%$#{}~^\\") == "a\\_b\\&c\\%\\$\\#\\{\\}\\textasciitilde{}\\textasciicircum{}\\textbackslash{}");
  if (test::shell("command -v pdflatex >/dev/null 2>&1") == 0) {
    std::ofstream(dir + "/doc.tex") << "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\\input{" << out
                                    << "/summary.tex}\\end{document}\n";
    CHECK(test::shell("cd " + dir + " && pdflatex -interaction=nonstopmode -halt-on-error doc.tex >/dev/null 2>&1") == 0);
  } else {
    WARN("pdflatex is not installed: summary.tex checked for form, not compiled");
  }
}
