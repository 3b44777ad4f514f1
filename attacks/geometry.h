#pragma once
// The threat model's geometry: norms, the Linf box, projection onto the eps-ball, the steepest-ascent
// direction and per-example norms. Shared by the attacks, the evaluation and the training objectives.
#include <torch/types.h>

#include <string>

namespace robustlab {

enum class Norm { kLinf, kL2 };
Norm parseNorm(const std::string& name);  ///< "linf" | "l2"; throws std::invalid_argument listing them
std::string normName(Norm n);

/// A per-example vector (N) shaped to broadcast against `like` (N x ...).
torch::Tensor perExample(const torch::Tensor& v, const torch::Tensor& like);

/// The Linf ball of radius eps around x intersected with [lo, hi], as per-element bounds. The
/// bounds are nudged one ulp inwards where float rounding put them past eps, so a clamped result
/// satisfies |xadv - x| <= eps exactly when measured in float.
struct LinfBox {
  torch::Tensor lower, upper;
  torch::Tensor clamp(const torch::Tensor& v) const { return torch::clamp(v, lower, upper); }
  LinfBox rows(const torch::Tensor& idx) const { return {lower.index_select(0, idx), upper.index_select(0, idx)}; }
};
LinfBox linfBox(const torch::Tensor& x, double eps, double lo, double hi);

/// Projection onto the eps-ball around x in `norm`, then onto [lo, hi].
torch::Tensor projectToBall(const torch::Tensor& xadv, const torch::Tensor& x, Norm norm, double eps, double lo, double hi);

/// Steepest-ascent direction of unit norm: sign(g) for Linf, g / ||g||_2 per example for L2.
torch::Tensor steepestAscent(const torch::Tensor& grad, Norm norm);

/// Per-example norm of a batch of perturbations (N x ...), as float64 on CPU.
torch::Tensor perExampleNorm(const torch::Tensor& delta, Norm norm);

}  // namespace robustlab
