#include "attacks/pgd.h"

#include <limits>

namespace robustlab {

torch::Tensor Pgd::lastIterate(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) {
  // Madry et al.'s training loop: plain steps from one start, the last iterate is the example. Every
  // row's steps depend on that row only, so on a CPU each core takes its rows through all the steps.
  const double alpha = options_.effectiveStepSize();
  const bool linf = options_.norm == Norm::kLinf;
  const LinfBox box = linf ? linfBox(x) : LinfBox{};
  const auto start = options_.randomStart ? randomStart(x) : x.clone();
  return inRowChunks(model, x, [&](int64_t b, int64_t e) {
    const auto xs = x.slice(0, b, e), ys = y.slice(0, b, e);
    const auto ts = target.defined() ? target.slice(0, b, e) : target;
    const LinfBox bs = linf ? LinfBox{box.lower.slice(0, b, e), box.upper.slice(0, b, e)} : LinfBox{};
    auto cur = start.slice(0, b, e);
    for (int64_t k = 0; k < options_.steps; ++k) {
      const auto moved = torch::add(cur, ascentDirection(lossAndGrad(model, cur, ys, ts).grad), alpha);
      cur = linf ? bs.clamp(moved) : project(moved, xs);
    }
    return cur;
  });
}

/// Per example, the best iterate so far: the first that fooled the model, else the highest-loss one.
struct BestIterate {
  torch::Tensor x, loss, fooled;

  /// Scores the iterate xa of the batch's rows `rows` (undefined: every row, in order) by its loss
  /// and whether it fooled (`won`).
  void update(const torch::Tensor& xa, const torch::Tensor& lossA, const torch::Tensor& won, const torch::Tensor& rows) {
    if (!rows.defined()) {
      // Every row of the batch is here: masks instead of gathers and scatters.
      const auto take = (~fooled) & (won | (lossA > loss));
      x = torch::where(perExample(take, xa), xa, x);
      loss = torch::where(take, lossA, loss);
      fooled = fooled | (take & won);
      return;
    }
    const auto prevFooled = fooled.index_select(0, rows);
    const auto take = ((~prevFooled) & (won | (lossA > loss.index_select(0, rows)))).nonzero().squeeze(1);
    if (take.numel() == 0) return;
    const auto gt = rows.index_select(0, take);
    x.index_copy_(0, gt, xa.index_select(0, take));
    loss.index_copy_(0, gt, lossA.index_select(0, take));
    fooled.index_copy_(0, gt, prevFooled.index_select(0, take) | won.index_select(0, take));
  }
};

torch::Tensor Pgd::run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) {
  if (options_.lastIterate) return lastIterate(model, x, y, target);
  const int64_t n = x.size(0);
  BestIterate best{x.clone(), torch::full({n}, -std::numeric_limits<float>::infinity(), x.options()),
                   torch::zeros({n}, x.options().dtype(torch::kBool))};
  for (int64_t restart = 0; restart < options_.restarts; ++restart) {
    // Only examples no earlier restart has fooled are attacked again.
    const auto idx = (~best.fooled).nonzero().squeeze(1);
    if (idx.numel() == 0) break;
    restartOn(model, x, y, target, idx, best);
  }
  return best.x;
}

void Pgd::restartOn(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target,
                    const torch::Tensor& idx, BestIterate& best) {
  const int64_t n = x.size(0);
  const double alpha = options_.effectiveStepSize();
  const auto xs = x.index_select(0, idx);
  const auto ys = y.index_select(0, idx);
  const auto ts = rowsOf(target, idx);
  const SharedBox shared(*this, xs);  // the start's projection and the steps' box
  auto cur = options_.randomStart ? randomStart(xs) : xs.clone();
  auto active = torch::arange(idx.size(0), idx.options());  // rows of this restart's batch still stepping
  bool allActive = true;                                     // fast path: no row gathering yet
  const bool linf = options_.norm == Norm::kLinf;
  const LinfBox box = linf ? linfBox(xs) : LinfBox{};
  // Iteration k scores iterate k (k >= 1; the start is not a candidate) with the same forward pass
  // that gives the gradient for step k+1, so PGD costs `steps` gradients plus one forward.
  for (int64_t k = 0; k <= options_.steps; ++k) {
    auto xa = allActive ? cur : cur.index_select(0, active);
    const auto ya = allActive ? ys : ys.index_select(0, active);
    const auto ta = allActive ? ts : rowsOf(ts, active);
    const auto lg = k < options_.steps ? lossAndGrad(model, xa, ya, ta) : lossOnly(model, xa, ya, ta);
    auto grad = lg.grad;
    if (k > 0) {
      const auto won = success(lg.logits, ya, ta);
      best.update(xa, lg.loss, won, allActive && idx.size(0) == n ? torch::Tensor() : idx.index_select(0, active));
      if (options_.earlyStop && k < options_.steps) {
        const auto keep = (~won).nonzero().squeeze(1);
        if (keep.numel() == 0) break;
        if (keep.numel() < active.numel()) {
          active = active.index_select(0, keep);
          xa = xa.index_select(0, keep);
          grad = grad.index_select(0, keep);
          allActive = false;
        }
      }
    }
    if (k == options_.steps) break;
    const auto moved = torch::add(xa, ascentDirection(grad), alpha);
    if (allActive) cur = linf ? box.clamp(moved) : project(moved, xs);
    else cur.index_copy_(0, active, linf ? box.rows(active).clamp(moved) : project(moved, xs.index_select(0, active)));
  }
}

}  // namespace robustlab
