#include "experiments/report/report_figures.h"

#include "data/atomic_write.h"
#include "experiments/plan/executor.h"

#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace robustlab {
namespace fs = std::filesystem;
namespace {

std::string gq(const std::string& s);  // below

/// Runs the plot `body` twice: SVG (inlined in the HTML) and PDF beside it (gnuplot's pdfcairo, for
/// papers), both `width` x `height` (pixels; 100 per inch for the PDF). Returns the SVG text.
std::string runGnuplot(const std::string& svgPath, const std::string& body, int width, int height) {
  const std::string stem = svgPath.substr(0, svgPath.size() - 4);  // without ".svg"
  for (const bool pdf : {false, true}) {
    const std::string out = pdf ? stem + ".pdf" : svgPath;
    const std::string scriptPath = out + ".gp";
    std::ostringstream gp;
    if (pdf) gp << "set terminal pdfcairo size " << width / 100.0 << "in," << height / 100.0 << "in noenhanced font 'sans,9'\n";
    else gp << "set terminal svg size " << width << "," << height << " noenhanced font 'sans,12' background rgb 'white'\n";
    gp << "set output " << gq(out) << "\n" << body;
    writeTextAtomically(scriptPath, gp.str());
    std::string so, err;
    int rc = 127;
    try {
      rc = runCommand({"gnuplot", scriptPath}, &so, &err);  // an argument vector: no shell, no quoting
    } catch (const std::exception&) {
    }
    if (rc != 0 || !fs::exists(out)) {
      const std::string first = (err.empty() ? so : err).substr(0, (err.empty() ? so : err).find('\n'));
      throw std::runtime_error("gnuplot failed for " + out + " (apt-get install gnuplot-nox): " + (rc == 127 ? "gnuplot not found" : first));
    }
    fs::remove(scriptPath);
  }
  std::ifstream in(svgPath);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A CSV field: quoted when it holds a comma, a quote or a line break.
std::string csvField(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string o = "\"";
  for (char ch : s) o += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return o + "\"";
}

/// A gnuplot single-quoted string: nothing inside is interpreted except '' for a quote, so a name
/// from a config (an arm called b'.system("...").') stays text. Control characters, which would end
/// the command line, become spaces.
std::string gq(const std::string& s) {
  std::string o = "'";
  for (char ch : s) {
    if (ch == '\'') o += "''";
    else if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) o += ' ';
    else o += ch;
  }
  return o + "'";
}

}  // namespace

std::string plotSvg(const std::string& svgPath, const std::string& xlabel, const std::string& ylabel, const std::vector<PlotSeries>& series,
                    bool percent) {
  // One pass over the points: gnuplot's data (a missing band drawn at the line) and, beside the figure,
  // the plotted numbers as CSV (a missing band left NaN), so it can be redrawn in another style.
  const std::string dataPath = svgPath + ".dat";
  {
    std::ostringstream data, csv;
    data.precision(8);
    csv.precision(8);
    csv << "series,x,y,lo,hi\n";
    const double k = percent ? 100.0 : 1.0;
    for (const auto& s : series) {
      for (size_t i = 0; i < s.x.size(); ++i) {
        const double y = s.y[i] * k;
        const double lo = i < s.lo.size() && std::isfinite(s.lo[i]) ? s.lo[i] * k : NAN;
        const double hi = i < s.hi.size() && std::isfinite(s.hi[i]) ? s.hi[i] * k : NAN;
        data << s.x[i] << " " << y << " " << (std::isfinite(lo) ? lo : y) << " " << (std::isfinite(hi) ? hi : y) << "\n";
        csv << csvField(s.title) << "," << s.x[i] << "," << y << "," << lo << "," << hi << "\n";
      }
      data << "\n\n";
    }
    writeTextAtomically(dataPath, data.str());
    writeTextAtomically(svgPath.substr(0, svgPath.size() - 4) + ".csv", csv.str());
  }
  std::ostringstream gp;
  gp << "set xlabel " << gq(xlabel) << "\nset ylabel " << gq(ylabel) << "\nset grid\nset key outside right top\n"
     << "set style fill transparent solid 0.18 noborder\n";
  if (percent) gp << "set yrange [0:100]\n";
  gp << "plot ";
  // Okabe-Ito colours (distinct for every kind of colour blindness) with a dash type and point shape
  // each, so lines stay apart in greyscale too; a band only for a series that has one.
  static const char* kColours[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"};
  auto style = [&](size_t i) {
    return std::string(" lc rgb '") + kColours[i % 8] + "' dt " + std::to_string(i % 5 + 1) + " pt " + std::to_string(i % 7 + 4);
  };
  bool first = true;
  for (size_t i = 0; i < series.size(); ++i) {
    if (series[i].lo.empty()) continue;
    gp << (first ? "" : ", ") << gq(dataPath) << " index " << i << " using 1:3:4 with filledcurves notitle lc rgb '" << kColours[i % 8] << "'";
    first = false;
  }
  for (size_t i = 0; i < series.size(); ++i) {
    gp << (first ? "" : ", ") << gq(dataPath) << " index " << i << " using 1:2 with linespoints lw 2" << style(i) << " title " << gq(series[i].title);
    first = false;
  }
  gp << "\n";
  const std::string svg = runGnuplot(svgPath, gp.str(), 760, 420);
  fs::remove(dataPath);
  return svg;
}

std::string heatmapSvg(const std::string& svgPath, const std::string& xlabel, const std::vector<std::string>& xticks,
                       const std::string& ylabel, const std::vector<std::string>& yticks, const std::vector<std::vector<double>>& values,
                       const std::string& title) {
  std::ostringstream gp;
  gp << "set title " << gq(title) << "\nset xlabel " << gq(xlabel) << "\nset ylabel " << gq(ylabel) << "\n"
     << "set palette defined (0 '#b2182b', 0.5 '#f7f7f7', 1 '#2166ac')\nset cblabel '%'\nunset key\n";
  gp << "set xtics (";
  for (size_t i = 0; i < xticks.size(); ++i) gp << (i ? ", " : "") << gq(xticks[i]) << " " << i;
  gp << ")\nset ytics (";
  for (size_t i = 0; i < yticks.size(); ++i) gp << (i ? ", " : "") << gq(yticks[i]) << " " << i;
  gp << ")\nset xrange [-0.5:" << xticks.size() - 0.5 << "]\nset yrange [-0.5:" << yticks.size() - 0.5 << "]\n";
  gp << "$data << EOD\n";
  for (size_t r = 0; r < values.size(); ++r) {
    for (size_t c = 0; c < values[r].size(); ++c) gp << (c ? " " : "") << (std::isfinite(values[r][c]) ? values[r][c] * 100.0 : NAN);
    gp << "\n";
  }
  gp << "EOD\nplot $data matrix with image pixels, $data matrix using 1:2:(sprintf('%.1f', $3)) with labels\n";
  return runGnuplot(svgPath, gp.str(), 620, 420);
}

std::string smallMultiplesSvg(const std::string& svgPath, const std::vector<double>& x, const std::vector<Panel>& panels,
                              const std::string& xlabel, const std::string& ylabel) {
  {
    std::ostringstream csv;
    csv.precision(8);
    csv << "panel,line,x,y\n";
    for (const auto& p : panels) {
      for (size_t k = 0; k < p.seeds.size(); ++k)
        for (size_t i = 0; i < x.size(); ++i) csv << csvField(p.title) << "," << csvField(p.seedNames[k]) << "," << x[i] << "," << 100.0 * p.seeds[k][i] << "\n";
      for (size_t i = 0; i < x.size(); ++i) csv << csvField(p.title) << ",mean," << x[i] << "," << 100.0 * p.mean[i] << "\n";
    }
    writeTextAtomically(svgPath.substr(0, svgPath.size() - 4) + ".csv", csv.str());
  }
  const int cols = static_cast<int>(std::min<size_t>(3, panels.size())), rows = (static_cast<int>(panels.size()) + cols - 1) / cols;
  std::ostringstream gp;
  gp.precision(8);
  // Every panel on the same scales; seeds as thin grey lines, their mean as a thick black line.
  gp << "set multiplot layout " << rows << "," << cols << "\nset yrange [0:100]\nset xrange [" << x.front() << ":" << x.back()
     << "]\nset grid\nunset key\nset xlabel " << gq(xlabel) << "\nset ylabel " << gq(ylabel) << "\n";
  for (size_t p = 0; p < panels.size(); ++p) {
    gp << "$p" << p << " << EOD\n";
    for (const auto& seed : panels[p].seeds) {
      for (size_t i = 0; i < x.size(); ++i) gp << x[i] << " " << 100.0 * seed[i] << "\n";
      gp << "\n\n";
    }
    for (size_t i = 0; i < x.size(); ++i) gp << x[i] << " " << 100.0 * panels[p].mean[i] << "\n";
    gp << "EOD\nset title " << gq(panels[p].title) << "\nplot ";
    for (size_t k = 0; k < panels[p].seeds.size(); ++k) gp << "$p" << p << " index " << k << " with lines lw 1 lc rgb '#9a9a9a', ";
    gp << "$p" << p << " index " << panels[p].seeds.size() << " with linespoints lw 2.5 pt 7 lc rgb '#000000'\n";
  }
  gp << "unset multiplot\n";
  return runGnuplot(svgPath, gp.str(), 900, 270 * rows);
}

std::string forestSvg(const std::string& svgPath, const std::vector<ForestRow>& rows, const std::string& xlabel) {
  {
    std::ostringstream csv;
    csv.precision(8);
    csv << "comparison,eps,difference_points,ci_low,ci_high,paired_p,mcnemar_p\n";
    for (const auto& r : rows)
      csv << csvField(r.comparison) << "," << r.eps << "," << r.mean << "," << r.lo << "," << r.hi << "," << r.pairedP << "," << r.mcnemarP << "\n";
    writeTextAtomically(svgPath.substr(0, svgPath.size() - 4) + ".csv", csv.str());
  }
  const size_t n = rows.size();
  std::ostringstream gp;
  gp.precision(8);
  gp << "set xlabel " << gq(xlabel) << "\nunset key\nset grid xtics\nset border 1+2\nset xtics nomirror\nset ytics nomirror\n"
     << "set yrange [" << n - 0.5 << ":-0.5]\nset offsets graph 0.08, graph 0.08, 0, 0\n"
     << "set arrow from 0, graph 0 to 0, graph 1 nohead lw 1.5 lc rgb '#555555' dt 2\nset ytics (";
  for (size_t i = 0; i < n; ++i) gp << (i ? ", " : "") << gq(rows[i].label) << " " << i;
  // The paired-test p-value beside each row, on the right-hand axis.
  gp << ")\nset y2range [" << n - 0.5 << ":-0.5]\nset y2tics nomirror (";
  for (size_t i = 0; i < n; ++i) {
    char p[48];
    std::snprintf(p, sizeof p, std::isfinite(rows[i].pairedP) ? "p = %.3g" : "p n/a", rows[i].pairedP);
    gp << (i ? ", " : "") << gq(p) << " " << i;
  }
  gp << ")\n$data << EOD\n";
  for (size_t i = 0; i < n; ++i) {
    const auto& r = rows[i];
    gp << r.mean << " " << i << " " << (std::isfinite(r.lo) ? r.lo : r.mean) << " " << (std::isfinite(r.hi) ? r.hi : r.mean) << "\n";
  }
  // One dark blue and the line at zero: readable in greyscale and for every kind of colour blindness.
  gp << "EOD\nplot $data using 1:2:3:4 with xerrorbars pt 7 ps 1.3 lw 2 lc rgb '#1f4e99'\n";
  return runGnuplot(svgPath, gp.str(), 980, 100 + 34 * static_cast<int>(n));
}

namespace {

void appendBytes(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}

void flushNothing(png_structp) {}

}  // namespace

std::vector<uint8_t> encodePng(const torch::Tensor& pixels) {
  const auto img = pixels.to(torch::kUInt8).contiguous();
  // libpng reports a failure by longjmp to the setjmp below: what is read after it is volatile.
  const volatile int h = static_cast<int>(img.size(0)), w = static_cast<int>(img.size(1));
  const volatile int channels = img.dim() == 3 ? static_cast<int>(img.size(2)) : 1;
  if (channels != 1 && channels != 3) throw std::invalid_argument("encodePng: expected H x W or H x W x 3 pixels");
  std::vector<uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) throw std::runtime_error("libpng: cannot create a writer");
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw std::runtime_error("libpng: encoding failed");
  }
  png_set_write_fn(png, &out, appendBytes, flushNothing);
  png_set_IHDR(png, info, static_cast<png_uint_32>(w), static_cast<png_uint_32>(h), 8, channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < h; ++y) png_write_row(png, img.data_ptr<uint8_t>() + static_cast<int64_t>(y) * w * channels);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

torch::Tensor decodePng(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) throw std::runtime_error(path + ": not a readable PNG");
  image.format = PNG_FORMAT_RGB;
  auto out = torch::empty({static_cast<int64_t>(image.height), static_cast<int64_t>(image.width), 3}, torch::kUInt8);
  if (!png_image_finish_read(&image, nullptr, out.data_ptr<uint8_t>(), 0, nullptr)) {
    png_image_free(&image);
    throw std::runtime_error(path + ": PNG decoding failed");
  }
  return out;
}

std::vector<uint8_t> galleryPng(const GalleryItem& item) {
  // H x W x C: grey images as one channel, colour images (CIFAR) as RGB.
  const auto clean = item.clean.permute({1, 2, 0});
  const auto adv = item.adversarial.permute({1, 2, 0});
  const double eps = item.eps > 0 ? item.eps : 1.0;
  // The perturbation mapped so that -eps is black and +eps is white (per channel).
  const auto delta = ((adv - clean) / (2.0 * eps) + 0.5).clamp(0, 1);
  const auto gap = torch::ones({clean.size(0), 2, clean.size(2)});
  auto strip = torch::cat({clean, gap, adv, gap, delta}, 1);
  strip = strip.repeat_interleave(4, 0).repeat_interleave(4, 1);
  if (strip.size(2) == 1) strip = strip.squeeze(2);
  return encodePng((strip * 255.0).round());
}

std::string base64(const std::vector<uint8_t>& bytes) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t n = (uint32_t(bytes[i]) << 16) | (i + 1 < bytes.size() ? uint32_t(bytes[i + 1]) << 8 : 0) |
                       (i + 2 < bytes.size() ? uint32_t(bytes[i + 2]) : 0);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[n & 63] : '=';
  }
  return out;
}

}  // namespace robustlab
