#include "attacks/apgd.h"

#include <algorithm>
#include <limits>

namespace robustlab {

torch::Tensor ApgdCe::run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) {
  const int64_t n = x.size(0);
  const int64_t nIter = options_.steps;
  const int64_t nIter2 = std::max<int64_t>(static_cast<int64_t>(0.22 * nIter), 1);
  const int64_t nIterMin = std::max<int64_t>(static_cast<int64_t>(0.06 * nIter), 1);
  const int64_t sizeDecr = std::max<int64_t>(static_cast<int64_t>(0.03 * nIter), 1);
  const double eps = options_.eps;
  auto best = x.clone();
  auto bestLossAll = torch::full({n}, -std::numeric_limits<float>::infinity(), x.options());
  auto fooledAll = torch::zeros({n}, x.options().dtype(torch::kBool));

  for (int64_t restart = 0; restart < options_.restarts; ++restart) {
    const auto idx = (~fooledAll).nonzero().squeeze(1);
    if (idx.numel() == 0) break;
    const auto xs = x.index_select(0, idx);
    const auto ys = y.index_select(0, idx);
    const auto ts = rowsOf(target, idx);
    const int64_t b = xs.size(0);

    // Start on the boundary of the ball in a random direction (as AutoAttack does).
    torch::Tensor t = options_.norm == Norm::kLinf ? torch::rand(xs.sizes(), gen_, torch::kFloat32) * 2 - 1
                                                   : torch::randn(xs.sizes(), gen_, torch::kFloat32);
    t = t.to(xs.device());
    const auto tn = options_.norm == Norm::kLinf ? t.flatten(1).abs().amax(1) : t.flatten(1).norm(2, 1);
    auto xAdv = project(xs + eps * t / perExample(tn + 1e-12, t), xs);

    auto lg = lossAndGrad(model, xAdv, ys, ts);
    auto grad = lg.grad;
    auto robust = ~success(lg.logits, ys, ts);
    auto xBest = xAdv.clone(), xBestAdv = xAdv.clone(), gradBest = grad.clone();
    auto lossBest = lg.loss.clone();
    auto lossSteps = torch::zeros({nIter, b}, xs.options());
    auto stepSize = torch::full({b}, 2.0 * eps, xs.options());
    auto xOld = xAdv.clone();
    int64_t counter = 0, k = nIter2;
    auto lossBestLastCheck = lossBest.clone();
    auto reducedLastCheck = torch::ones({b}, xs.options().dtype(torch::kBool));

    for (int64_t i = 0; i < nIter; ++i) {
      const auto momentumTerm = xAdv - xOld;
      xOld = xAdv.clone();
      const double a = i > 0 ? 0.75 : 1.0;
      auto x1 = project(xAdv + perExample(stepSize, xAdv) * ascentDirection(grad), xs);
      x1 = project(xAdv + (x1 - xAdv) * a + momentumTerm * (1 - a), xs);
      xAdv = x1;

      lg = lossAndGrad(model, xAdv, ys, ts);
      grad = lg.grad;
      const auto won = success(lg.logits, ys, ts);
      robust = robust & ~won;
      const auto wonIdx = won.nonzero().squeeze(1);
      if (wonIdx.numel() > 0) xBestAdv.index_copy_(0, wonIdx, xAdv.index_select(0, wonIdx));
      lossSteps[i] = lg.loss;
      const auto better = (lg.loss > lossBest).nonzero().squeeze(1);
      if (better.numel() > 0) {
        xBest.index_copy_(0, better, xAdv.index_select(0, better));
        gradBest.index_copy_(0, better, grad.index_select(0, better));
        lossBest.index_copy_(0, better, lg.loss.index_select(0, better));
      }
      if (++counter == k) {
        // Oscillation: the loss rose in at most rho * k of the last k steps.
        auto increases = torch::zeros({b}, xs.options());
        for (int64_t c = 0; c < k; ++c) {
          const int64_t prev = ((i - c - 1) % nIter + nIter) % nIter;
          increases += (lossSteps[i - c] > lossSteps[prev]).to(xs.scalar_type());
        }
        auto reduce = increases <= static_cast<double>(k) * options_.rho;
        reduce = reduce | ((~reducedLastCheck) & (lossBestLastCheck >= lossBest));
        reducedLastCheck = reduce.clone();
        lossBestLastCheck = lossBest.clone();
        const auto r = reduce.nonzero().squeeze(1);
        if (r.numel() > 0) {
          stepSize.index_copy_(0, r, stepSize.index_select(0, r) / 2.0);
          xAdv.index_copy_(0, r, xBest.index_select(0, r));
          grad.index_copy_(0, r, gradBest.index_select(0, r));
        }
        k = std::max(k - sizeDecr, nIterMin);
        counter = 0;
      }
    }
    // Fooled examples keep an adversarial point; the rest keep their highest-loss point.
    const auto fooledHere = (~robust).nonzero().squeeze(1);
    if (fooledHere.numel() > 0) {
      best.index_copy_(0, idx.index_select(0, fooledHere), xBestAdv.index_select(0, fooledHere));
      fooledAll.index_fill_(0, idx.index_select(0, fooledHere), true);
    }
    const auto improved = (robust & (lossBest > bestLossAll.index_select(0, idx))).nonzero().squeeze(1);
    if (improved.numel() > 0) {
      const auto g = idx.index_select(0, improved);
      best.index_copy_(0, g, xBest.index_select(0, improved));
      bestLossAll.index_copy_(0, g, lossBest.index_select(0, improved));
    }
  }
  return best;
}

}  // namespace robustlab
