#pragma once
// Square Attack — Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient
// black-box adversarial attack via random search", ECCV 2020; the version AutoAttack ships. Score-based:
// it reads the model's logits only, never a gradient, so it is the gradient-masking test (a model
// whose gradients are masked falls to Square and not to APGD). Random search over square-shaped
// updates whose side shrinks with the query count on the published schedule (p_init = 0.8 of the
// image area, halved after queries 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000, not rescaled to
// the budget, as AutoAttack runs it); an update is kept when it lowers the margin loss z_y - max_{i != y} z_i (targeted: the
// cross-entropy of the target). Linf: vertical-stripe start, squares set to +-eps per channel. L2: the
// start and the updates are the paper's "window" perturbations of norm eps. Budget: `queries` (5,000)
// per restart; over restarts the worst case per example. eps is in pixel units, before any
// normalisation inside the model (ATTACK-CORRECTNESS.md item 20). Inputs N x C x H x W.
#include "attacks/attack.h"

namespace robustlab {

class Square : public Attack {
 public:
  explicit Square(AttackOptions options);
  std::string name() const override { return "square"; }
  double workPerExample() const override {
    return static_cast<double>(options_.queries) * static_cast<double>(std::max<int64_t>(1, options_.restarts));
  }

 protected:
  torch::Tensor run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) override;

 private:
  /// Margin (> 0: not fooled yet) and the loss random search lowers, per example, from the logits.
  struct Scores {
    torch::Tensor margin, loss;
  };
  Scores scores(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target);
  /// One restart: the best point found per example.
  torch::Tensor searchLinf(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target);
  torch::Tensor searchL2(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target);
  /// Random search's acceptance on rows `idx`: the best loss where the candidate lowered it, and the
  /// margin and point where it lowered the loss or fooled the model.
  static void keepImproved(const torch::Tensor& idx, const Scores& sc, const torch::Tensor& candidate, const torch::Tensor& current,
                           Scores& best, torch::Tensor& xBest);
  /// The fraction of the image a square covers after `query` of the budget's queries.
  double squareFraction(int64_t query) const;
  /// A uniform integer in [0, n) (0 when n <= 0), drawn from the attack's generator.
  int64_t randomInt(int64_t n);
  /// Random signs +-1 of the given shape, on `like`'s device.
  torch::Tensor randomSigns(at::IntArrayRef shape, const torch::Tensor& like);
  /// The paper's s x s L2 window: two rectangles of opposite sign, unit L2 norm, randomly transposed.
  torch::Tensor window(int64_t s, const torch::Tensor& like);
};

}  // namespace robustlab
