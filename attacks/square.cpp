#include "attacks/square.h"

#include <torch/nn/functional/loss.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace robustlab {

namespace {

/// Rows and columns [r, r + s) x [c, c + s) of a batch of images.
torch::Tensor window2d(const torch::Tensor& t, int64_t r, int64_t c, int64_t s) { return t.slice(2, r, r + s).slice(3, c, c + s); }

/// Per-example L2 norm shaped to broadcast against t.
torch::Tensor l2Norm(const torch::Tensor& t) { return perExample(t.flatten(1).norm(2, 1), t); }

/// The paper's "rectangle" of the L2 window: concentric squares of weight 1 / (k + 1)^2, unit L2 norm.
torch::Tensor rectangle(int64_t rows, int64_t cols) {
  auto d = torch::zeros({rows, cols}, torch::kFloat32);
  int64_t r0 = rows / 2, c0 = cols / 2;  // (x_c - 1, y_c - 1) of the reference
  for (int64_t k = 0; k < std::max(rows / 2 + 1, cols / 2 + 1); ++k, --r0, --c0) {
    const int64_t rb = std::max<int64_t>(r0, 0), re = std::min(r0 + 2 * k + 1, rows);
    const int64_t cb = std::max<int64_t>(c0, 0), ce = std::min(c0 + 2 * k + 1, cols);
    if (rb < re && cb < ce) d.slice(0, rb, re).slice(1, cb, ce) += 1.0 / static_cast<double>((k + 1) * (k + 1));
  }
  const double norm = d.norm().item<double>();
  return norm > 0 ? d / norm : d;
}

}  // namespace

Square::Square(AttackOptions options) : Attack(options) {}

double Square::squareFraction(int64_t query) const {
  // The published schedule, at the query counts themselves: AutoAttack runs Square with
  // resc_schedule=False, so a 5,000-query budget stops after the 4000 breakpoint.
  static const int64_t bounds[] = {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000};
  double p = options_.pInit;
  for (int64_t b : bounds)
    if (query > b) p /= 2;
  return p;
}

int64_t Square::randomInt(int64_t n) {
  if (n <= 0) return 0;
  return std::min<int64_t>(static_cast<int64_t>(torch::rand({1}, gen_).item<double>() * static_cast<double>(n)), n - 1);
}

torch::Tensor Square::randomSigns(at::IntArrayRef shape, const torch::Tensor& like) {
  return (torch::randint(0, 2, shape, gen_, torch::kFloat32) * 2 - 1).to(like.device());
}

torch::Tensor Square::window(int64_t s, const torch::Tensor& like) {
  auto d = torch::zeros({s, s}, torch::kFloat32);
  d.slice(0, 0, s / 2).copy_(rectangle(s / 2, s));
  d.slice(0, s / 2, s).copy_(-rectangle(s - s / 2, s));
  d = d / d.norm();
  if (torch::rand({1}, gen_).item<double>() > 0.5) d = d.t().contiguous();
  return d.to(like.device());
}

Square::Scores Square::scores(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) {
  torch::NoGradGuard noGrad;
  stats_.queries += x.size(0);
  reportWork(workShare());
  const auto z = model.forward(x).to(torch::kFloat32);
  const auto& label = target.defined() ? target : y;
  const auto own = z.gather(1, label.view({-1, 1})).squeeze(1);
  const auto others = z.scatter(1, label.view({-1, 1}), -std::numeric_limits<float>::infinity()).amax(1);
  if (!target.defined()) return {own - others, own - others};
  namespace F = torch::nn::functional;
  return {others - own, F::cross_entropy(z, target, F::CrossEntropyFuncOptions().reduction(torch::kNone))};
}

torch::Tensor Square::searchLinf(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const double eps = options_.eps;
  const LinfBox box = linfBox(x);
  auto xBest = box.clamp(x + eps * randomSigns({n, c, 1, w}, x));  // vertical stripes of +-eps
  Scores best = scores(model, xBest, y, target);
  for (int64_t q = 0; q < options_.queries; ++q) {
    const auto idx = (best.margin > 0).nonzero().squeeze(1);
    if (idx.numel() == 0) break;
    const int64_t s = std::min({std::max<int64_t>(std::llround(std::sqrt(squareFraction(q) * double(h * w))), 1), h, w});
    const int64_t vh = randomInt(h - s), vw = randomInt(w - s);
    auto delta = torch::zeros({1, c, h, w}, x.options());
    window2d(delta, vh, vw, s).copy_((2 * eps * randomSigns({1, c, 1, 1}, x)).expand({1, c, s, s}));
    const auto current = xBest.index_select(0, idx);
    const auto candidate = box.rows(idx).clamp(current + delta);
    keepImproved(idx, scores(model, candidate, y.index_select(0, idx), rowsOf(target, idx)), candidate, current, best, xBest);
  }
  return xBest;
}

void Square::keepImproved(const torch::Tensor& idx, const Scores& sc, const torch::Tensor& candidate, const torch::Tensor& current,
                          Scores& best, torch::Tensor& xBest) {
  const auto lossCur = best.loss.index_select(0, idx), marginCur = best.margin.index_select(0, idx);
  auto keep = sc.loss < lossCur;
  best.loss.index_copy_(0, idx, torch::where(keep, sc.loss, lossCur));
  keep = keep | (sc.margin <= 0);
  best.margin.index_copy_(0, idx, torch::where(keep, sc.margin, marginCur));
  xBest.index_copy_(0, idx, torch::where(perExample(keep, candidate), candidate, current));
}

torch::Tensor Square::searchL2(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const double eps = options_.eps, lo = options_.lo, hi = options_.hi;
  // The start: a grid of windows of side h / 5 with random signs per example and channel, norm eps.
  auto deltaInit = torch::zeros_like(x);
  const int64_t s0 = std::max<int64_t>(h / 5, 1), sp = std::max<int64_t>((h - s0 * 5) / 2, 0);
  for (int64_t i = 0, vh = sp; i < h / s0 && vh + s0 <= h; ++i, vh += s0)
    for (int64_t j = 0, vw = sp; j < w / s0 && vw + s0 <= w; ++j, vw += s0)
      window2d(deltaInit, vh, vw, s0) += window(s0, x).view({1, 1, s0, s0}) * randomSigns({n, c, 1, 1}, x);
  auto xBest = torch::clamp(x + deltaInit / (l2Norm(deltaInit) + 1e-12) * eps, lo, hi);
  Scores best = scores(model, xBest, y, target);
  for (int64_t q = 0; q < options_.queries; ++q) {
    const auto idx = (best.margin > 0).nonzero().squeeze(1);
    if (idx.numel() == 0) break;
    const auto xCur = x.index_select(0, idx), current = xBest.index_select(0, idx);
    auto delta = current - xCur;
    const int64_t m = idx.size(0);
    int64_t s = std::max<int64_t>(std::llround(std::sqrt(squareFraction(q) * double(h * w))), 3);
    if (s % 2 == 0) ++s;
    s = std::min({s, h, w});
    const int64_t vh = randomInt(h - s), vw = randomInt(w - s), vh2 = randomInt(h - s), vw2 = randomInt(w - s);
    // Move the energy of window 2 into window 1, keeping the image's norm at eps.
    const auto win1 = window2d(delta, vh, vw, s).clone();
    const auto norm1 = win1.pow(2).sum({-2, -1}, true).sqrt();
    auto mask = torch::zeros_like(xCur);
    window2d(mask, vh, vw, s).fill_(1);
    window2d(mask, vh2, vw2, s).fill_(1);
    const auto normImage = l2Norm(delta);
    const auto normWindows = (delta * mask).pow(2).sum({-2, -1}, true).sqrt();
    auto fresh = window(s, x).view({1, 1, s, s}) * randomSigns({m, c, 1, 1}, x) + win1 / (norm1 + 1e-12);
    fresh = fresh / (fresh.pow(2).sum({-2, -1}, true).sqrt() + 1e-12) *
            (torch::clamp_min(eps * eps - normImage.pow(2), 0) / static_cast<double>(c) + normWindows.pow(2)).sqrt();
    window2d(delta, vh2, vw2, s).zero_();
    window2d(delta, vh, vw, s).copy_(fresh);
    const auto candidate = torch::clamp(xCur + delta / (l2Norm(delta) + 1e-12) * eps, lo, hi);
    keepImproved(idx, scores(model, candidate, y.index_select(0, idx), rowsOf(target, idx)), candidate, current, best, xBest);
  }
  return xBest;
}

torch::Tensor Square::run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) {
  if (x.dim() != 4) throw std::invalid_argument("square: needs images N x C x H x W, got " + std::to_string(x.dim()) + " dims");
  auto best = x.clone();
  if (options_.eps == 0) return best;
  auto fooled = success(logitsOf(model, x), y, target);  // clean mistakes are not attacked (as in the reference)
  onSurvivors(best, fooled, options_.restarts, [&](const torch::Tensor& idx, int64_t) {
    const auto xs = x.index_select(0, idx), ys = y.index_select(0, idx), ts = rowsOf(target, idx);
    const auto found = options_.norm == Norm::kLinf ? searchLinf(model, xs, ys, ts) : searchL2(model, xs, ys, ts);
    return std::make_pair(found, success(logitsOf(model, found), ys, ts).nonzero().squeeze(1));
  });
  return best;
}

}  // namespace robustlab
