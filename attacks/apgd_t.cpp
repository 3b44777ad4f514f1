#include "attacks/apgd_t.h"

#include <algorithm>
#include <stdexcept>

namespace robustlab {

ApgdT::ApgdT(AttackOptions options) : Apgd(options, dlrAttackLoss()) {
  if (options.targeting != Targeting::kNone)
    throw std::invalid_argument("targeted: apgd-t picks its own targets (the most likely wrong classes); set targeted = \"none\"");
  if (options.targetClasses < 1) throw std::invalid_argument("target_classes: must be >= 1, got " + std::to_string(options.targetClasses));
  misclassificationIsSuccess_ = true;
}

torch::Tensor ApgdT::run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor&) {
  const torch::Tensor order = std::get<1>(logitsOf(model, x).sort(1, /*descending=*/true));
  const int64_t classes = order.size(1);
  if (classes < 4) throw std::invalid_argument("apgd-t: targeted DLR needs at least 4 classes, the model has " + std::to_string(classes));
  const int64_t targets = std::min(options_.targetClasses, classes - 1);
  auto best = x.clone();
  auto fooled = torch::zeros({x.size(0)}, x.options().dtype(torch::kBool));
  // One round per target, the k-th most likely wrong class (rank k + 1), on the examples still robust.
  onSurvivors(best, fooled, targets, [&](const torch::Tensor& idx, int64_t k) {
    const auto ys = y.index_select(0, idx);
    const auto ts = order.index_select(0, idx).select(1, k + 1);
    const auto xr = Apgd::run(model, x.index_select(0, idx), ys, ts);
    return std::make_pair(xr, logitsOf(model, xr).argmax(1).ne(ys).nonzero().squeeze(1));  // fooled by this target's run
  });
  return best;  // examples never fooled keep the clean input, as in the reference
}

}  // namespace robustlab
