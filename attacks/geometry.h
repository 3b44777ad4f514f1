#pragma once
// The threat model's geometry: norms, the Linf box, projection onto the eps-ball, the steepest-ascent
// direction and per-example norms. Shared by the attacks, the evaluation and the training objectives.
#include <torch/types.h>

#include <string>

namespace robustlab {

enum class Norm { kLinf, kL2, kL1 };
Norm parseNorm(const std::string& name);  ///< "linf" | "l2" | "l1"; throws std::invalid_argument listing them
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

/// Projection onto the eps-ball around x in `norm`, then onto [lo, hi]; for L1 onto their
/// intersection (l1Projection).
torch::Tensor projectToBall(const torch::Tensor& xadv, const torch::Tensor& x, Norm norm, double eps, double lo, double hi);

/// The Euclidean projection of z onto {x + d : ||d||_1 <= eps, lo <= x + d <= hi}, per example, exact
/// (Croce & Hein, "Mind the box: l1-APGD for sparse adversarial attacks", NeurIPS 2021, Lemma 1: the
/// solution is d_i = sign(z_i - x_i) * clamp(|z_i - x_i| - lambda, 0, u_i), u_i the room to the box in
/// that direction, with lambda = 0 when that fits the ball and otherwise the root of the piecewise-
/// linear sum_i clamp(|z_i - x_i| - lambda, 0, u_i) = eps, found by sorting its 2d breakpoints). Computed
/// in float64; the radius is shrunk by d * 2^-24 * max(1, |lo|, |hi|), the most the rounding of x + d
/// to float and of its distance to x can add, so the float result's L1 distance is <= eps.
torch::Tensor l1Projection(const torch::Tensor& z, const torch::Tensor& x, double eps, double lo, double hi);

/// Steepest-ascent direction of unit norm: sign(g) for Linf, g / ||g||_2 per example for L2 (L1's
/// is one coordinate; APGD-L1 takes its own sparse step instead, and other attacks refuse L1).
torch::Tensor steepestAscent(const torch::Tensor& grad, Norm norm);

/// Per-example norm of a batch of perturbations (N x ...), as float64 on CPU.
torch::Tensor perExampleNorm(const torch::Tensor& delta, Norm norm);

}  // namespace robustlab
