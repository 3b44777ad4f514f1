#pragma once
// Figures for reports: plots through gnuplot (SVG), images through libpng (PNG).
#include "experiments/report/report_data.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace robustlab {

/// One line of a plot: y (and an optional band lo..hi) against x.
struct PlotSeries {
  std::string title;
  std::vector<double> x, y, lo, hi;
};

/// Renders the series with gnuplot into `svgPath` (and the same figure as PDF, and its numbers as CSV,
/// beside it) and returns the SVG text. Throws with gnuplot's own message when gnuplot is missing or fails.
std::string plotSvg(const std::string& svgPath, const std::string& xlabel, const std::string& ylabel, const std::vector<PlotSeries>& series,
                    bool percent);

/// A heatmap of `values` (rows x cols, NaN = missing) with categorical axis labels, through gnuplot.
std::string heatmapSvg(const std::string& svgPath, const std::string& xlabel, const std::vector<std::string>& xticks,
                       const std::string& ylabel, const std::vector<std::string>& yticks, const std::vector<std::vector<double>>& values,
                       const std::string& title);

/// One panel of a small-multiples figure: each seed's line (fractions in [0,1]) and their mean.
struct Panel {
  std::string title;
  std::vector<std::string> seedNames;
  std::vector<std::vector<double>> seeds;
  std::vector<double> mean;
};

/// Small multiples (up to three panels a row) on the same scales: seeds thin grey, mean thick black;
/// PDF and CSV beside the SVG, whose text it returns.
std::string smallMultiplesSvg(const std::string& svgPath, const std::vector<double>& x, const std::vector<Panel>& panels,
                              const std::string& xlabel, const std::string& ylabel);

/// One row of a forest plot: a comparison at one eps, its difference and 95% interval (points).
struct ForestRow {
  std::string label, comparison;
  double eps = 0, mean = 0, lo = NAN, hi = NAN, pairedP = NAN, mcnemarP = NAN;
};

/// A forest plot (a row per comparison and eps, the line at zero) into `svgPath`, plus PDF and CSV
/// beside it; returns the SVG text.
std::string forestSvg(const std::string& svgPath, const std::vector<ForestRow>& rows, const std::string& xlabel);

/// PNG bytes of an 8-bit image: H x W (grey) or H x W x 3 (RGB) uint8 values.
std::vector<uint8_t> encodePng(const torch::Tensor& pixels);
/// Decodes an 8-bit PNG (any colour type) into an H x W x C uint8 tensor (used by tests).
torch::Tensor decodePng(const std::string& path);

/// One gallery strip: clean | adversarial | perturbation amplified to the full range, 4x enlarged.
std::vector<uint8_t> galleryPng(const GalleryItem& item);

std::string base64(const std::vector<uint8_t>& bytes);

}  // namespace robustlab
