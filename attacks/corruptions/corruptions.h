#pragma once
// Common corruptions: a seeded, generated suite in the style of MNIST-C (Mu & Gilmer 2019) and
// CIFAR-10-C (Hendrycks & Dietterich 2019), for asking whether pre-training helps against the shifts
// a deployed model meets without an adversary. Each corruption maps images (N x C x H x W in [0,1])
// at a severity 1..5 to images of the same shape in [0,1], the same for the same seed, changing the
// images more as the severity grows. A new corruption is a function and one line in registry.cpp
// (or a CorruptionRegistration from code outside this library).
#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace robustlab {

using CorruptionFn = std::function<torch::Tensor(const torch::Tensor& x, int severity, at::Generator& gen)>;

struct CorruptionEntry {
  std::string name, family, description;
  CorruptionFn apply;
};

/// Every corruption, in registration order.
const std::vector<CorruptionEntry>& corruptions();
std::vector<std::string> corruptionNames();

/// `name` applied to x (float, [0,1]) at `severity` (1..5) with draws seeded by `seed`. Throws
/// std::invalid_argument for an unknown name (listing the valid ones) or a severity outside 1..5.
torch::Tensor corrupt(const std::string& name, const torch::Tensor& x, int severity, uint64_t seed);

struct CorruptionRegistration {
  CorruptionRegistration(const std::string& name, const std::string& family, const std::string& description, CorruptionFn apply);
};

// The built-in corruptions by family (their files); registry.cpp lists them.
namespace corruption {
torch::Tensor gaussianNoise(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor shotNoise(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor impulseNoise(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor gaussianBlur(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor motionBlur(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor rotate(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor shear(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor scale(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor translate(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor brightness(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor contrast(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor fog(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor stripe(const torch::Tensor& x, int s, at::Generator& g);
torch::Tensor zigzag(const torch::Tensor& x, int s, at::Generator& g);

/// The severity's parameter, 1-based.
inline double at(const std::vector<double>& levels, int s) { return levels[static_cast<size_t>(s - 1)]; }
/// Separable Gaussian blur of each channel (zero padding), sigma in pixels.
torch::Tensor blur(const torch::Tensor& x, double sigma);
/// Each image moved by the affine map theta (N x 2 x 3, normalised coordinates), bilinear, zeros outside.
torch::Tensor affine(const torch::Tensor& x, const torch::Tensor& theta);
/// N values uniform in {-1, +1}.
torch::Tensor randomSigns(int64_t n, at::Generator& g);
}  // namespace corruption

}  // namespace robustlab
