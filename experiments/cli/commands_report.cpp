#include "experiments/cli/cli_common.h"
#include "experiments/cli/commands.h"
#include "experiments/report/report.h"

#include <cstdio>
#include <filesystem>
#include <stdexcept>

namespace robustlab {

int cmdReport(int argc, char** argv) {
  cxxopts::Options opts("robustlab report", "Write report.html (self-contained) and report.md with figures from an experiment's results");
  opts.positional_help("RESULTS.h5");
  opts.add_options()
      ("results", "experiment results file", cxxopts::value<std::string>())
      ("o,out", "output directory (default: <results stem>-report)", cxxopts::value<std::string>()->default_value(""))
      ("compare", "a second experiment results file shown side by side", cxxopts::value<std::string>()->default_value(""))
      ("latex", "also write summary.tex: the summary as a booktabs table (mean ± CI, best per column in bold); figures are always PDF and CSV beside the SVG too")
      ("h,help", "show this help");
  opts.parse_positional({"results"});
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  if (!args.count("results")) throw std::invalid_argument("report: give the results file, e.g. robustlab report results/default.h5");
  ReportOptions o;
  o.results = args["results"].as<std::string>();
  o.outDir = args["out"].as<std::string>();
  if (o.outDir.empty()) {
    const std::filesystem::path p(o.results);
    o.outDir = (p.parent_path() / (p.stem().string() + "-report")).string();
  }
  o.compare = args["compare"].as<std::string>();
  o.latex = args.count("latex") > 0;
  writeReport(o);
  std::printf("wrote %s/report.html and %s/report.md\n", o.outDir.c_str(), o.outDir.c_str());
  return 0;
}

}  // namespace robustlab
