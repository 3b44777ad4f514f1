#pragma once
// FAB — Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary attack",
// ICML 2020; the version AutoAttack ships. A minimum-norm attack: at each step it linearises the
// classifier's decision boundary at the current point, projects both the current point and the clean
// input onto that hyperplane within the valid box (exact Linf and L2 projections), moves to a convex
// combination of the two projections (weight alpha <= alpha_max = 0.1 on the clean one, overshoot
// eta = 1.05) and, once adversarial, steps back towards the clean input (beta = 0.9), keeping the
// smallest adversarial perturbation found. An example counts as fooled only when that perturbation is
// within eps; the others keep the clean input.
//   fab-t: the targeted version of AutoAttack's standard suite: one run per target among the
//          `target_classes` (9) most likely wrong classes, capped at classes - 1, on the points still
//          robust; one gradient per step.
//   fab:   untargeted, the linearisation of every class's boundary (one gradient per class per step).
// `steps` iterations (AutoAttack: 100), `restarts` (later ones start at a random point at eps / 2).
// Its arithmetic is fp32 whatever the model's precision (ATTACK-CORRECTNESS.md item 19): logits and
// gradients are cast before the projections. Norms: linf, l2.
#include "attacks/attack.h"

namespace robustlab {

class Fab : public Attack {
 public:
  Fab(AttackOptions options, bool targeted);
  std::string name() const override { return targeted_ ? "fab-t" : "fab"; }
  /// Untargeted: every class's gradient per step; targeted: one per step and target.
  double workPerExample() const override {
    return Attack::workPerExample() * static_cast<double>(std::max<int64_t>(1, targeted_ ? options_.targetClasses : classes()));
  }

 protected:
  torch::Tensor run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) override;

 private:
  /// The boundary's linearisation at u: logit differences df (m x K') and their gradients dg
  /// (m x K' x D) in unit coordinates; untargeted K' = classes (the true class's entry pushed to 1e10),
  /// targeted K' = 1 (z_t - z_y).
  struct Linearisation {
    torch::Tensor df, dg;
  };
  Linearisation linearise(ClassifierImpl& model, const torch::Tensor& u, const torch::Tensor& y, const torch::Tensor& t);
  /// One run from u (unit coordinates, all classified correctly): the smallest adversarial point found
  /// per example (u itself where none) and its norm in unit coordinates (1e10 where none).
  struct Found {
    torch::Tensor adv, norm;
  };
  Found singleRun(ClassifierImpl& model, const torch::Tensor& u, const torch::Tensor& y, const torch::Tensor& t, bool randomStart);
  torch::Tensor predictUnit(ClassifierImpl& model, const torch::Tensor& u);
  torch::Tensor toPixels(const torch::Tensor& u) const { return u * (options_.hi - options_.lo) + options_.lo; }

  bool targeted_;
};

/// The minimum-norm perturbations d (M x D) that take points t (M x D, in [0,1]^D) onto the hyperplane
/// w.(t + d) = b of each row while t + d stays in the box [0,1]^D (where the plane does not meet the
/// box: the box corner closest to it): FAB's exact projections (Croce & Hein 2020), Linf and L2.
torch::Tensor fabProjectionLinf(const torch::Tensor& t, torch::Tensor w, torch::Tensor b);
torch::Tensor fabProjectionL2(const torch::Tensor& t, torch::Tensor w, const torch::Tensor& b);

}  // namespace robustlab
