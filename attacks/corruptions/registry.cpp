#include "attacks/corruptions/corruptions.h"

#include <ATen/CPUGeneratorImpl.h>

#include <stdexcept>

namespace robustlab {
namespace {

/// The built-in corruptions: one line each.
std::vector<CorruptionEntry>& entries() {
  using namespace corruption;
  static std::vector<CorruptionEntry> e{
      {"gaussian_noise", "noise", "additive Gaussian noise, sd 0.08-0.20", gaussianNoise},
      {"shot_noise", "noise", "Poisson (photon) noise", shotNoise},
      {"impulse_noise", "noise", "salt and pepper, 3-27% of the pixels", impulseNoise},
      {"gaussian_blur", "blur", "Gaussian blur, sigma 0.5-1.6 px", gaussianBlur},
      {"motion_blur", "blur", "a 3-11 px line kernel at a random angle", motionBlur},
      {"rotate", "geometry", "rotation by 8-40 degrees either way", rotate},
      {"shear", "geometry", "horizontal shear 0.1-0.5 either way", shear},
      {"scale", "geometry", "zoom out to 90-50% of the size", scale},
      {"translate", "geometry", "a shift of 1-5 px in a random direction", translate},
      {"brightness", "photometric", "0.1-0.5 added to every pixel", brightness},
      {"contrast", "photometric", "contrast to 75-15% about the image mean", contrast},
      {"fog", "photometric", "smooth random haze", fog},
      {"stripe", "pattern", "1-5 bright vertical lines", stripe},
      {"zigzag", "pattern", "1-5 bright zigzag lines", zigzag},
  };
  return e;
}

}  // namespace

const std::vector<CorruptionEntry>& corruptions() { return entries(); }

std::vector<std::string> corruptionNames() {
  std::vector<std::string> out;
  for (const auto& e : entries()) out.push_back(e.name);
  return out;
}

torch::Tensor corrupt(const std::string& name, const torch::Tensor& x, int severity, uint64_t seed) {
  if (severity < 1 || severity > 5) throw std::invalid_argument("corruption severity: must be 1..5, got " + std::to_string(severity));
  for (const auto& e : entries()) {
    if (e.name != name) continue;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    return e.apply(x.to(torch::kFloat32).cpu().contiguous(), severity, gen).contiguous();
  }
  std::string names;
  for (const auto& n : corruptionNames()) names += (names.empty() ? "" : ", ") + n;
  throw std::invalid_argument("corruption: unknown corruption '" + name + "', valid names: " + names);
}

CorruptionRegistration::CorruptionRegistration(const std::string& name, const std::string& family, const std::string& description, CorruptionFn apply) {
  for (const auto& e : entries())
    if (e.name == name) throw std::logic_error("corruption '" + name + "' registered twice");
  entries().push_back({name, family, description, std::move(apply)});
}

}  // namespace robustlab
