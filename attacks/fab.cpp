#include "attacks/fab.h"

#include "framework/runtime/runtime.h"

#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace robustlab {

namespace {

constexpr double kAlphaMax = 0.1, kEta = 1.05, kBeta = 0.9;  // the reference's constants

/// Per-row norm of an M x D matrix in `norm`, and its dual (what a distance to a hyperplane divides by).
torch::Tensor rowNorm(const torch::Tensor& v, Norm norm) { return norm == Norm::kLinf ? v.abs().amax(-1) : v.norm(2, -1); }
torch::Tensor dualNorm(const torch::Tensor& v, Norm norm) { return norm == Norm::kLinf ? v.abs().sum(-1) : v.norm(2, -1); }

/// Rows `rows` of column `col` (one column index per row) of m.
torch::Tensor at(const torch::Tensor& m, const torch::Tensor& col) { return m.gather(1, col.unsqueeze(1)).squeeze(1); }

/// The reference's bisection over sorted breakpoints: the last index in [0, D-1] where `above(i)`
/// holds, for every row at once, in ceil(log2 D) halvings.
template <class Above>
torch::Tensor bisect(int64_t rows, int64_t d, const torch::TensorOptions& opts, Above above) {
  auto lb = torch::zeros({rows}, opts), ub = torch::full({rows}, static_cast<double>(d - 1), opts);
  const int64_t iters = static_cast<int64_t>(std::ceil(std::log2(static_cast<double>(d))));
  for (int64_t i = 0; i < iters; ++i) {
    const auto mid = torch::floor((lb + ub) / 2);
    const auto c = above(mid.to(torch::kLong));
    lb = torch::where(c, mid, lb);
    ub = torch::where(c, ub, mid);
  }
  return lb.to(torch::kLong);
}

}  // namespace

torch::Tensor fabProjectionLinf(const torch::Tensor& t, torch::Tensor w, torch::Tensor b) {
  const int64_t d = w.size(1);
  const auto sign = ((w * t).sum(1) - b >= 0).to(w.scalar_type()) * 2 - 1;
  w = w * sign.unsqueeze(1);
  b = b * sign;
  const auto nonzero = w.ne(0).to(w.scalar_type());
  const auto a = (w < 0).to(w.scalar_type());
  auto delta = (a - t) * nonzero;  // to the box corner the plane's normal points away from
  const auto p = a - t * (2 * a - 1);
  const auto indp = std::get<1>(p.sort(1));
  b = b - (w * t).sum(1);
  const auto b0 = (w * delta).sum(1);
  const auto indp2 = indp.flip({1});
  const auto ws = w.gather(1, indp2);
  const auto s = ws.abs().cumsum(1);
  const auto sb = (-ws * delta.gather(1, indp2)).cumsum(1) + b0.unsqueeze(1);
  const auto b2 = sb.select(1, d - 1) - s.select(1, d - 1) * at(p, indp.select(1, 0));
  const auto reachedAll = (b - b2) > 0;
  const auto inner = ((b - b0) > 0) & ~reachedAll;

  const auto rowsAll = reachedAll.nonzero().squeeze(1);
  if (rowsAll.numel() > 0) {
    const auto lambda = torch::clamp_min((b.index_select(0, rowsAll) - sb.index_select(0, rowsAll).select(1, d - 1)) /
                                             (-s.index_select(0, rowsAll).select(1, d - 1)),
                                         0)
                            .unsqueeze(1);
    delta.index_copy_(0, rowsAll, (2 * a.index_select(0, rowsAll) - 1) * lambda);
  }
  const auto rows = inner.nonzero().squeeze(1);
  if (rows.numel() > 0) {
    const auto indpR = indp.index_select(0, rows), sbR = sb.index_select(0, rows), sR = s.index_select(0, rows);
    const auto pR = p.index_select(0, rows), bR = b.index_select(0, rows);
    const auto lb = bisect(rows.numel(), d, b.options(), [&](const torch::Tensor& mid) {
      const auto cur = at(indpR, (d - 1) - mid);
      return bR - (at(sbR, mid) - at(sR, mid) * at(pR, cur)) > 0;
    });
    const auto lambda = torch::clamp_min((bR - at(sbR, lb)) / (-at(sR, lb)), 0).unsqueeze(1);
    const auto dR = delta.index_select(0, rows), aR = a.index_select(0, rows);
    delta.index_copy_(0, rows, torch::minimum(lambda, dR) * aR + torch::maximum(-lambda, dR) * (1 - aR));
  }
  return delta * nonzero;
}

torch::Tensor fabProjectionL2(const torch::Tensor& t, torch::Tensor w, const torch::Tensor& b) {
  const int64_t m = w.size(0), d = w.size(1);
  auto c = (w * t).sum(1) - b;
  const auto sign = (c >= 0).to(w.scalar_type()) * 2 - 1;
  w = w * sign.unsqueeze(1);
  c = c * sign;
  const auto tiny = w.abs() < 1e-8;
  // Where each coordinate would leave the box when moving along -w.
  auto r = torch::maximum(t / w, (t - 1) / w).clamp(-1e12, 1e12);
  r.masked_fill_(tiny, 1e12);
  r = torch::where(r == -1e12, -r, r);
  auto [rs, indr] = r.sort(1);
  auto rs2 = torch::cat({rs.slice(1, 1), torch::zeros({m, 1}, rs.options())}, 1);
  rs.masked_fill_(rs == 1e12, 0);
  rs2.masked_fill_(rs2 == 1e12, 0);
  const auto w3s = w.pow(2).gather(1, indr);
  const auto w5 = w3s.sum(1, true);
  const auto ws = w5 - w3s.cumsum(1);
  const auto keep = (~tiny).to(w.scalar_type());
  auto delta = -(r * w) * keep;
  const auto s = torch::cat({-w5 * rs.slice(1, 0, 1), ((rs - rs2) * ws).cumsum(1) - w5 * rs.slice(1, 0, 1)}, 1);
  const auto unclipped = s.select(1, 0) + c < 0;  // the plain projection stays in the box
  const auto corner = (delta * w).sum(1) + c > 0;  // the plane is out of reach: the box corner
  const auto inner = ~(unclipped | corner);

  const auto rowsU = unclipped.nonzero().squeeze(1);
  if (rowsU.numel() > 0) {
    const auto alpha = c.index_select(0, rowsU) / w5.index_select(0, rowsU).squeeze(1);
    delta.index_copy_(0, rowsU, -alpha.unsqueeze(1) * w.index_select(0, rowsU));
  }
  const auto rows = inner.nonzero().squeeze(1);
  if (rows.numel() > 0) {
    const auto sR = s.index_select(0, rows), cR = c.index_select(0, rows);
    const auto lb = bisect(rows.numel(), d, c.options(), [&](const torch::Tensor& mid) { return at(sR, mid) + cR > 0; });
    const auto wsL = at(ws.index_select(0, rows), lb);
    auto alpha = (at(sR, lb) + cR) / wsL + at(rs.index_select(0, rows), lb);
    alpha = torch::where(wsL == 0, torch::zeros_like(alpha), alpha);
    const auto past = (alpha.unsqueeze(1) > r.index_select(0, rows)).to(w.scalar_type());
    delta.index_copy_(0, rows, delta.index_select(0, rows) * past - alpha.unsqueeze(1) * w.index_select(0, rows) * (1 - past));
  }
  return delta * keep;
}

Fab::Fab(AttackOptions options, bool targeted) : Attack(options), targeted_(targeted) {
  if (targeted && options.targeting != Targeting::kNone)
    throw std::invalid_argument("targeted: fab-t picks its own targets (the most likely wrong classes); set targeted = \"none\"");
  if (!targeted && options.targeting != Targeting::kNone)
    throw std::invalid_argument("targeted: fab is untargeted; fab-t is its targeted version");
  if (options.eotIter > 1)
    throw std::invalid_argument("eot_iter: fab's linearisation of the boundary is not averaged over passes; for a randomized model use apgd or autoattack-rand");
}

torch::Tensor Fab::predictUnit(ClassifierImpl& model, const torch::Tensor& u) { return logitsOf(model, toPixels(u)).argmax(1); }

Fab::Linearisation Fab::linearise(ClassifierImpl& model, const torch::Tensor& u, const torch::Tensor& y, const torch::Tensor& t) {
  const double scale = options_.hi - options_.lo;  // d/du = scale * d/dx
  auto xin = toPixels(u).detach().requires_grad_(true);
  torch::AutoGradMode enable(true);
  const auto z = model.forward(xin).to(torch::kFloat32);
  const int64_t m = u.size(0);
  Linearisation l;
  if (targeted_) {
    const auto diff = at(z, t) - at(z, y);
    const auto g = torch::autograd::grad({diff.sum()}, {xin})[0].to(torch::kFloat32) * scale;
    l.df = diff.detach().unsqueeze(1);
    l.dg = g.flatten(1).unsqueeze(1);
    stats_.gradientEvaluations += m;
    reportWork(workShare());
  } else {
    const int64_t k = z.size(1);
    std::vector<torch::Tensor> grads;
    for (int64_t c = 0; c < k; ++c)
      grads.push_back(torch::autograd::grad({z.select(1, c).sum()}, {xin}, {}, /*retain_graph=*/c + 1 < k)[0].to(torch::kFloat32).flatten(1));
    auto g = torch::stack(grads, 1) * scale;  // m x K x D
    const auto zd = z.detach();
    l.df = zd - at(zd, y).unsqueeze(1);
    l.dg = g - g.gather(1, y.view({-1, 1, 1}).expand({m, 1, g.size(2)}));
    l.df.scatter_(1, y.view({-1, 1}), 1e10);
    stats_.gradientEvaluations += m * k;
    reportWork(workShare());
  }
  if (options_.countZeroGradients) {
    const auto zeros = l.dg.eq(0).sum();
    zeroGrads_ = zeroGrads_.defined() ? zeroGrads_ + zeros : zeros;
    stats_.gradElements += l.dg.numel();
  }
  return l;
}

Fab::Found Fab::singleRun(ClassifierImpl& model, const torch::Tensor& u, const torch::Tensor& y, const torch::Tensor& t, bool randomStart) {
  const int64_t bs = u.size(0);
  const double epsU = options_.eps / (options_.hi - options_.lo);
  const auto x0 = u.flatten(1);
  auto x1 = u.clone();
  Found f{u.clone(), torch::full({bs}, 1e10, u.options())};
  if (randomStart) {
    const auto dir = options_.norm == Norm::kLinf ? randUniform(u.sizes(), gen_, u.device()) * 2 - 1 : randNormal(u.sizes(), gen_, u.device());
    x1 = (u + 0.5 * epsU * dir / perExample(rowNorm(dir.flatten(1), options_.norm), dir)).clamp(0, 1);
  }
  for (int64_t it = 0; it < options_.steps; ++it) {
    const auto l = linearise(model, x1, y, t);
    // The closest linearised boundary, and both points' projections onto it.
    const auto dist = l.df.abs() / (dualNorm(l.dg, options_.norm) + 1e-12);
    const auto ind = dist.argmin(1);
    const auto w = l.dg.gather(1, ind.view({-1, 1, 1}).expand({bs, 1, l.dg.size(2)})).squeeze(1);
    const auto b = -at(l.df, ind) + (w * x1.flatten(1)).sum(1);
    const auto points = torch::cat({x1.flatten(1), x0}, 0);
    const auto d3 = options_.norm == Norm::kLinf ? fabProjectionLinf(points, torch::cat({w, w}, 0), torch::cat({b, b}, 0))
                                                 : fabProjectionL2(points, torch::cat({w, w}, 0), torch::cat({b, b}, 0));
    const auto d1 = d3.slice(0, 0, bs).view_as(x1), d2 = d3.slice(0, bs).view_as(x1);
    const auto a0 = torch::clamp_min(rowNorm(d3, options_.norm), 1e-8);
    const auto a1 = a0.slice(0, 0, bs), a2 = a0.slice(0, bs);
    const auto alpha = perExample(torch::clamp(a1 / (a1 + a2), 0.0, kAlphaMax), x1);
    x1 = ((x1 + kEta * d1) * (1 - alpha) + (u + d2 * kEta) * alpha).clamp(0, 1);
    // Keep the smallest adversarial point; step adversarial points back towards the clean input.
    const auto adv = predictUnit(model, x1).ne(y);
    const auto idx = adv.nonzero().squeeze(1);
    if (idx.numel() == 0) continue;
    const auto xi = x1.index_select(0, idx), ui = u.index_select(0, idx);
    const auto n = rowNorm((xi - ui).flatten(1), options_.norm);
    const auto better = n < f.norm.index_select(0, idx);
    f.adv.index_copy_(0, idx, torch::where(perExample(better, xi), xi, f.adv.index_select(0, idx)));
    f.norm.index_copy_(0, idx, torch::where(better, n, f.norm.index_select(0, idx)));
    x1.index_copy_(0, idx, ui + (xi - ui) * kBeta);
  }
  return f;
}

torch::Tensor Fab::run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor&) {
  auto best = x.clone();
  if (options_.eps == 0) return best;
  const auto u = (x - options_.lo) / (options_.hi - options_.lo);
  const auto z = logitsOf(model, x);
  auto done = z.argmax(1).ne(y);  // only the points classified correctly are attacked
  const auto order = std::get<1>(z.sort(1, /*descending=*/true));
  const int64_t classes = order.size(1);
  const int64_t targets = targeted_ ? std::min(options_.targetClasses, classes - 1) : 1;
  for (int64_t rank = 1; rank <= targets; ++rank) {
    const bool left = onSurvivors(best, done, options_.restarts, [&](const torch::Tensor& idx, int64_t r) {
      const auto ys = y.index_select(0, idx);
      const auto ts = targeted_ ? order.index_select(0, idx).select(1, rank) : torch::Tensor();
      const auto found = singleRun(model, u.index_select(0, idx), ys, ts, r > 0);
      const auto xs = toPixels(found.adv);
      const auto within = perExampleNorm(xs - x.index_select(0, idx), options_.norm).to(x.device()) <= options_.eps;
      return std::make_pair(xs, (predictUnit(model, found.adv).ne(ys) & within).nonzero().squeeze(1));
    });
    if (!left) break;
  }
  return best;
}

}  // namespace robustlab
