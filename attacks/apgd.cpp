#include "attacks/apgd.h"

#include "framework/runtime/runtime.h"

#include <vector>

#include <algorithm>
#include <limits>

namespace robustlab {

namespace {

/// AutoAttack's checkpoint test: halve the step where the loss rose in at most rho * k of the last k
/// steps, or where the step was not halved at the last checkpoint and the best loss has not improved
/// since. Updates the last-checkpoint state; returns the rows to halve.
torch::Tensor rowsToHalve(const torch::Tensor& lossSteps, int64_t i, int64_t k, double rho, const torch::Tensor& lossBest,
                          torch::Tensor& reducedLastCheck, torch::Tensor& lossBestLastCheck) {
  const int64_t nIter = lossSteps.size(0);
  auto increases = torch::zeros({lossSteps.size(1)}, lossSteps.options());
  for (int64_t c = 0; c < k; ++c) {
    const int64_t prev = ((i - c - 1) % nIter + nIter) % nIter;
    increases += (lossSteps[i - c] > lossSteps[prev]).to(lossSteps.scalar_type());
  }
  auto reduce = increases <= static_cast<double>(k) * rho;
  reduce = reduce | ((~reducedLastCheck) & (lossBestLastCheck >= lossBest));
  reducedLastCheck = reduce.clone();
  lossBestLastCheck = lossBest.clone();
  return reduce.nonzero().squeeze(1);
}

/// Rows of `dst` at `idx` become `src`'s rows (no-op for an empty index).
void copyRows(torch::Tensor& dst, const torch::Tensor& idx, const torch::Tensor& src) {
  if (idx.numel() > 0) dst.index_copy_(0, idx, src);
}

}  // namespace

void Apgd::record(RestartResult& r, torch::Tensor& gradBest, const torch::Tensor& xAdv, const LossGrad& lg, const torch::Tensor& ys,
                  const torch::Tensor& ts) const {
  const auto fooled = won(lg.logits, ys, ts);
  r.robust = r.robust & ~fooled;
  const auto wonIdx = fooled.nonzero().squeeze(1);
  copyRows(r.xBestAdv, wonIdx, xAdv.index_select(0, wonIdx));
  const auto better = (lg.loss > r.lossBest).nonzero().squeeze(1);
  copyRows(r.xBest, better, xAdv.index_select(0, better));
  copyRows(gradBest, better, lg.grad.index_select(0, better));
  copyRows(r.lossBest, better, lg.loss.index_select(0, better));
}

Apgd::RestartResult Apgd::restartL1(ClassifierImpl& model, const torch::Tensor& xs, const torch::Tensor& ys, const torch::Tensor& ts) {
  if (!options_.l1LargeEps) return runL1(model, xs, ys, ts, options_.steps, torch::Tensor());
  // Their decr_eps_pgd: 30%, 30% and the rest of the steps at 3, 2 and 1 times eps, from x + N(0, 1)
  // projected onto the largest ball; each stage starts from the previous one's best point, projected.
  const double eps = options_.eps;
  const int64_t first = (3 * options_.steps + 9) / 10;  // ceil(0.3 * steps)
  const std::vector<std::pair<double, int64_t>> stages{{3 * eps, first}, {2 * eps, first}, {eps, std::max<int64_t>(options_.steps - 2 * first, 1)}};
  auto xInit = projectToBall(xs + randNormal(xs.sizes(), gen_, xs.device()), xs, Norm::kL1, 3 * eps, options_.lo, options_.hi);
  RestartResult r;
  for (const auto& [radius, iters] : stages) {
    options_.eps = radius;
    try {
      xInit = project(xInit, xs);
      r = runL1(model, xs, ys, ts, iters, xInit);
    } catch (...) {
      options_.eps = eps;
      throw;
    }
    options_.eps = eps;
    xInit = r.xBest;
  }
  return r;
}

Apgd::RestartResult Apgd::runL1(ClassifierImpl& model, const torch::Tensor& xs, const torch::Tensor& ys, const torch::Tensor& ts, int64_t nIter,
                                const torch::Tensor& xInit) {
  const int64_t b = xs.size(0), nFts = xs.numel() / std::max<int64_t>(b, 1);
  const double eps = options_.eps, redStep = 1.5, minStep = 10.0;
  auto l0 = [&](const torch::Tensor& p) { return (p - xs).flatten(1).ne(0).sum(1).to(xs.scalar_type()); };
  auto xAdv = xInit.defined() ? xInit : project(xs + randNormal(xs.sizes(), gen_, xs.device()), xs);
  auto topk = xInit.defined() ? l0(xAdv) / static_cast<double>(nFts) / redStep : torch::full({b}, 0.2, xs.options());
  auto spOld = xInit.defined() ? l0(xAdv) : torch::full({b}, static_cast<double>(nFts), xs.options());
  auto lg = lossAndGrad(model, xAdv, ys, ts);
  auto grad = lg.grad;
  RestartResult r{xAdv.clone(), xAdv.clone(), lg.loss.clone(), ~won(lg.logits, ys, ts)};
  auto gradBest = grad.clone();
  auto stepSize = torch::full({b}, eps, xs.options());
  const int64_t k = std::max<int64_t>(static_cast<int64_t>(0.04 * static_cast<double>(nIter)), 1);
  for (int64_t i = 0, counter = 0; i < nIter; ++i) {
    // The sparse step: the sign of the coordinates at or above the (1 - topk) quantile of |grad|.
    const auto sorted = std::get<0>(grad.abs().flatten(1).sort(1));
    const auto at = ((1.0 - topk) * static_cast<double>(nFts)).clamp(0, static_cast<double>(nFts - 1)).to(torch::kInt64);
    const auto threshold = sorted.gather(1, at.unsqueeze(1)).squeeze(1);
    const auto sparse = (grad * grad.abs().ge(perExample(threshold, grad)).to(grad.scalar_type())).sign();
    const auto length = sparse.abs().flatten(1).sum(1) + 1e-10;
    xAdv = project(xAdv + perExample(stepSize / length, xAdv) * sparse, xs);
    lg = lossAndGrad(model, xAdv, ys, ts);
    grad = lg.grad;
    record(r, gradBest, xAdv, lg, ys, ts);
    if (++counter == k) {
      const auto spCurr = l0(r.xBest);
      const auto sparser = spCurr / spOld < 0.95;
      topk = spCurr / static_cast<double>(nFts) / redStep;
      stepSize = torch::where(sparser, torch::full_like(stepSize, eps), stepSize / redStep).clamp(eps / minStep, eps);
      spOld = spCurr;
      const auto reset = sparser.nonzero().squeeze(1);
      copyRows(xAdv, reset, r.xBest.index_select(0, reset));
      copyRows(grad, reset, gradBest.index_select(0, reset));
      counter = 0;
    }
  }
  return r;
}

torch::Tensor Apgd::boundaryStart(const torch::Tensor& xs) {
  const torch::Tensor t = options_.norm == Norm::kLinf ? randUniform(xs.sizes(), gen_, xs.device()) * 2 - 1 : randNormal(xs.sizes(), gen_, xs.device());
  const auto tn = options_.norm == Norm::kLinf ? t.flatten(1).abs().amax(1) : t.flatten(1).norm(2, 1);
  return project(xs + options_.eps * t / perExample(tn + 1e-12, t), xs);
}

Apgd::RestartResult Apgd::restart(ClassifierImpl& model, const torch::Tensor& xs, const torch::Tensor& ys, const torch::Tensor& ts) {
  if (options_.norm == Norm::kL1) return restartL1(model, xs, ys, ts);
  const SharedBox box(*this, xs);  // every projection of this restart is onto xs's box
  const int64_t nIter = options_.steps, b = xs.size(0);
  const int64_t nIterMin = std::max<int64_t>(static_cast<int64_t>(0.06 * nIter), 1);
  const int64_t sizeDecr = std::max<int64_t>(static_cast<int64_t>(0.03 * nIter), 1);
  auto xAdv = boundaryStart(xs);
  auto lg = lossAndGrad(model, xAdv, ys, ts);
  auto grad = lg.grad;
  RestartResult r{xAdv.clone(), xAdv.clone(), lg.loss.clone(), ~won(lg.logits, ys, ts)};
  auto gradBest = grad.clone();
  auto lossSteps = torch::zeros({nIter, b}, xs.options());
  auto stepSize = torch::full({b}, 2.0 * options_.eps, xs.options());
  auto xOld = xAdv.clone();
  int64_t counter = 0, k = std::max<int64_t>(static_cast<int64_t>(0.22 * nIter), 1);
  auto lossBestLastCheck = r.lossBest.clone();
  auto reducedLastCheck = torch::ones({b}, xs.options().dtype(torch::kBool));

  for (int64_t i = 0; i < nIter; ++i) {
    const auto momentumTerm = xAdv - xOld;
    xOld = xAdv.clone();
    const double a = i > 0 ? 0.75 : 1.0;
    auto x1 = project(xAdv + perExample(stepSize, xAdv) * ascentDirection(grad), xs);
    xAdv = project(xAdv + (x1 - xAdv) * a + momentumTerm * (1 - a), xs);

    lg = lossAndGrad(model, xAdv, ys, ts);
    grad = lg.grad;
    record(r, gradBest, xAdv, lg, ys, ts);
    lossSteps[i] = lg.loss;
    if (++counter == k) {
      const auto h = rowsToHalve(lossSteps, i, k, options_.rho, r.lossBest, reducedLastCheck, lossBestLastCheck);
      copyRows(stepSize, h, stepSize.index_select(0, h) / 2.0);
      copyRows(xAdv, h, r.xBest.index_select(0, h));
      copyRows(grad, h, gradBest.index_select(0, h));
      k = std::max(k - sizeDecr, nIterMin);
      counter = 0;
    }
  }
  return r;
}

torch::Tensor Apgd::run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) {
  const int64_t n = x.size(0);
  auto best = x.clone();
  auto bestLossAll = torch::full({n}, -std::numeric_limits<float>::infinity(), x.options());
  auto fooledAll = torch::zeros({n}, x.options().dtype(torch::kBool));
  onSurvivors(best, fooledAll, options_.restarts, [&](const torch::Tensor& idx, int64_t) {
    const auto r = restart(model, x.index_select(0, idx), y.index_select(0, idx), rowsOf(target, idx));
    // Fooled examples keep an adversarial point (onSurvivors puts it in); the rest keep their highest-loss
    // point (other rows than those, so the order of the two writes does not matter).
    const auto improved = (r.robust & (r.lossBest > bestLossAll.index_select(0, idx))).nonzero().squeeze(1);
    if (improved.numel() > 0) {
      const auto g = idx.index_select(0, improved);
      best.index_copy_(0, g, r.xBest.index_select(0, improved));
      bestLossAll.index_copy_(0, g, r.lossBest.index_select(0, improved));
    }
    return std::make_pair(r.xBestAdv, (~r.robust).nonzero().squeeze(1));
  });
  return best;
}

}  // namespace robustlab
