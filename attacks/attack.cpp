#include "attacks/attack.h"

#include "framework/models/input_grad.h"
#include "framework/runtime/chunks.h"
#include "framework/runtime/runtime.h"

#include <torch/autograd.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace robustlab {

Targeting parseTargeting(const std::string& name) {
  if (name == "none") return Targeting::kNone;
  if (name == "given") return Targeting::kGiven;
  if (name == "random") return Targeting::kRandom;
  if (name == "least-likely") return Targeting::kLeastLikely;
  throw std::invalid_argument("targeted: unknown mode '" + name + "', expected none, given, random or least-likely");
}

std::string targetingName(Targeting t) {
  switch (t) {
    case Targeting::kNone: return "none";
    case Targeting::kGiven: return "given";
    case Targeting::kRandom: return "random";
    default: return "least-likely";
  }
}

void AttackOptions::validate() const {
  auto bad = [](const std::string& field, const std::string& msg) { throw std::invalid_argument(field + ": " + msg); };
  if (!(eps >= 0) || !std::isfinite(eps)) bad("eps", "must be a finite number >= 0");
  if (!(lo < hi)) bad("lo/hi", "valid range needs lo < hi");
  if (steps <= 0) bad("steps", "must be >= 1, got " + std::to_string(steps));
  if (!(stepSize >= 0)) bad("step_size", "must be >= 0 (0: relative to eps)");
  if (!(relStepSize >= 0)) bad("rel_step_size", "must be >= 0 (0: 2.5 / steps)");
  if (restarts <= 0) bad("restarts", "must be >= 1, got " + std::to_string(restarts));
  if (restarts > 1 && !randomStart) bad("restarts", "more than one restart needs random_start = true (restarts would be identical)");
  if (restarts > 1 && lastIterate) bad("restarts", "the last-iterate loop (adversarial training) runs one start, got " + std::to_string(restarts));
  if (!(rho > 0 && rho < 1)) bad("rho", "must be in (0, 1)");
  if (targetClasses < 1) bad("target_classes", "must be >= 1, got " + std::to_string(targetClasses));
  if (queries < 1) bad("queries", "must be >= 1, got " + std::to_string(queries));
  if (!(pInit > 0 && pInit <= 1)) bad("p_init", "must be in (0, 1]");
  if (!(startSigma >= 0) || !std::isfinite(startSigma)) bad("start_sigma", "must be a finite number >= 0");
  if (suiteSteps < 1) bad("autoattack_steps", "must be >= 1, got " + std::to_string(suiteSteps));
  if (eotIter < 1) bad("eot_iter", "must be >= 1, got " + std::to_string(eotIter));
}

double AttackOptions::effectiveStepSize() const {
  if (stepSize > 0) return stepSize;
  return (relStepSize > 0 ? relStepSize : 2.5 / static_cast<double>(steps)) * eps;
}

Attack::Attack(AttackOptions options) : options_(options), gen_(makeGenerator(options.seed)) { options_.validate(); }

void Attack::refuseUnsupported() const {
  if (!supportsNorm(options_.norm))
    throw std::invalid_argument("norm: " + name() + " does not attack in " + normName(options_.norm) +
                                "; the l1 attacks are apgd-ce, apgd-dlr, apgd-t and autoattack");
  if (!loss_->perExample() && !runsWholeBatches())
    throw std::invalid_argument(name() + ": the " + loss_->name() +
                                " loss scores whole batches only; it runs in pgd's last-iterate loop (last_iterate = true)");
}

torch::Tensor Attack::perturb(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& targets) {
  if (x.dim() < 2) throw std::invalid_argument(name() + ": input must be a batch N x ..., got " + std::to_string(x.dim()) + " dims");
  if (!y.defined() || y.dim() != 1 || y.size(0) != x.size(0))
    throw std::invalid_argument(name() + ": labels must be a 1-D tensor with one label per input");
  if (x.size(0) == 0) return x.clone();
  if (x.min().item<double>() < options_.lo || x.max().item<double>() > options_.hi)
    throw std::invalid_argument(name() + ": input values outside the valid range [" + std::to_string(options_.lo) + ", " +
                                std::to_string(options_.hi) + "]");
  stats_ = AttackStats{};
  perturbThread_ = std::this_thread::get_id();
  perturbRows_ = x.size(0);
  classes_ = model.spec().numClasses;
  const auto params = model.parameters();
  const torch::Device device = params.empty() ? x.device() : params.front().device();
  refuseUnsupported();
  EvalModeGuard evalMode(model);
  FrozenParamsGuard frozen(model);
  std::vector<std::unique_ptr<EvalModeGuard>> lossModes;
  std::vector<std::unique_ptr<FrozenParamsGuard>> lossFrozen;
  for (auto* m : loss_->modules()) {
    lossModes.push_back(std::make_unique<EvalModeGuard>(*m));
    lossFrozen.push_back(std::make_unique<FrozenParamsGuard>(*m));
  }
  // A private copy: nothing the attack does can reach the caller's storage.
  const torch::Tensor x0 = x.detach().to(device, torch::kFloat32).clone();
  const torch::Tensor y0 = y.detach().to(device, torch::kInt64);
  torch::Tensor target;
  if (options_.targeting != Targeting::kNone) {
    const int64_t k = model.spec().numClasses;
    if (options_.targeting == Targeting::kGiven) {
      if (!targets.defined() || targets.sizes() != y.sizes())
        throw std::invalid_argument(name() + ": targeted = given needs one target label per input");
      target = targets.detach().to(device, torch::kInt64);
    } else if (options_.targeting == Targeting::kRandom) {
      // Uniform over the classes other than the true one.
      auto offset = torch::randint(1, k, {x.size(0)}, gen_, torch::kInt64).to(device);
      target = (y0 + offset).remainder(k);
    } else {
      torch::NoGradGuard noGrad;
      target = model.forward(x0).argmin(1);
    }
    lastTargets_ = target.cpu();
  }
  zeroGrads_ = torch::Tensor();
  loss_->prepare(model, x0);
  const SharedBox box(*this, x0);
  torch::Tensor xadv = project(run(model, x0, y0, target).detach(), x0);
  if (zeroGrads_.defined()) stats_.zeroGradElements = zeroGrads_.item<int64_t>();
  // The check every result passes: in the ball (with float tolerance) and in range.
  const auto norms = perExampleNorm(xadv - x0, options_.norm);
  const double worst = norms.numel() ? norms.max().item<double>() : 0.0;
  if (worst > options_.eps * (1 + 1e-6) + 1e-7)
    throw std::logic_error(name() + ": internal error: perturbation norm " + std::to_string(worst) + " exceeds eps " + std::to_string(options_.eps));
  if (xadv.min().item<double>() < options_.lo || xadv.max().item<double>() > options_.hi)
    throw std::logic_error(name() + ": internal error: result outside the valid range");
  return xadv.to(x.device(), x.scalar_type());
}

Attack::SharedBox::SharedBox(Attack& attack, const torch::Tensor& x)
    : attack_(attack), previous_(attack.box_), previousOf_(attack.boxOf_) {
  if (attack.options_.norm != Norm::kLinf) return;
  attack.box_ = robustlab::linfBox(x, attack.options_.eps, attack.options_.lo, attack.options_.hi);
  attack.boxOf_ = x;
}

Attack::SharedBox::~SharedBox() {
  attack_.box_ = previous_;
  attack_.boxOf_ = previousOf_;
}

Attack::LossGrad Attack::lossAndGrad(ClassifierImpl& model, const torch::Tensor& xadv, const torch::Tensor& y, const torch::Tensor& target) {
  if (options_.eotIter <= 1) return lossAndGradOnce(model, xadv, y, target);
  LossGrad out = lossAndGradOnce(model, xadv, y, target);
  auto sum = out.grad;
  for (int64_t k = 1; k < options_.eotIter; ++k) {
    out = lossAndGradOnce(model, xadv, y, target);
    sum = sum + out.grad;
  }
  out.grad = sum / static_cast<double>(options_.eotIter);
  return out;
}

Attack::LossGrad Attack::lossAndGradOnce(ClassifierImpl& model, const torch::Tensor& xadv, const torch::Tensor& y, const torch::Tensor& target) {
  LossGrad out;
  if (loss_->isCrossEntropy())
    if (auto manual = crossEntropyInputGrad(model, xadv.detach(), target.defined() ? target : y, target.defined())) {
    // The same kernels autograd would call, without building its graph (framework/input_grad.h).
    out.loss = manual->loss;
    out.logits = manual->logits;
    out.grad = manual->grad;
  }
  if (!out.grad.defined()) {
    auto xin = xadv.detach().requires_grad_(true);
    torch::AutoGradMode enable(true);
    out.logits = loss_->outputs(model, xin);
    out.loss = (*loss_)(out.logits, y, target);
    out.grad = torch::autograd::grad({out.loss.sum()}, {xin})[0].detach();
    out.loss = out.loss.detach();
    out.logits = out.logits.detach();
  }
  const auto zeros = options_.countZeroGradients ? out.grad.eq(0).sum() : torch::Tensor();
  double share = 0;
  {
    std::lock_guard<std::mutex> lock(statsMutex_);
    stats_.gradientEvaluations += xadv.size(0);
    if (zeros.defined()) {
      zeroGrads_ = zeroGrads_.defined() ? zeroGrads_ + zeros : zeros;
      stats_.gradElements += out.grad.numel();
    }
    share = workShare();
  }
  reportWork(share);
  return out;
}

bool Attack::onSurvivors(torch::Tensor& best, torch::Tensor& fooled, int64_t rounds, const Round& round) {
  for (int64_t k = 0; k < rounds; ++k) {
    const auto idx = (~fooled).nonzero().squeeze(1);
    if (idx.numel() == 0) return false;
    const auto [candidates, hit] = round(idx, k);
    if (hit.numel() == 0) continue;
    const auto rows = idx.index_select(0, hit);
    best.index_copy_(0, rows, candidates.index_select(0, hit));
    fooled.index_fill_(0, rows, true);
  }
  return true;
}

double Attack::workShare() const {
  const double expected = static_cast<double>(std::max<int64_t>(1, perturbRows_)) * workPerExample();
  return std::min(0.99, static_cast<double>(stats_.gradientEvaluations + stats_.queries) / expected);
}

void Attack::reportWork(double share) {
  if (progressHook_ && std::this_thread::get_id() == perturbThread_) progressHook_(share, "");
}

torch::Tensor Attack::inRowChunks(ClassifierImpl& model, const torch::Tensor& x, const std::function<torch::Tensor(int64_t, int64_t)>& fn) {
  const int64_t n = x.size(0);
  const int chunks = x.device().is_cpu() && loss_->isCrossEntropy() ? chunksFor(n) : 1;
  if (chunks == 1 || !supportsManualInputGrad(model)) return fn(0, n);
  // The row ranges crossEntropyInputGrad splits a batch of n rows into (chunkRows).
  std::vector<torch::Tensor> parts(static_cast<size_t>(chunks));
  runChunks(chunks, [&](int i) {
    const auto [b, e] = chunkRows(n, chunks, i);
    parts[static_cast<size_t>(i)] = fn(b, e);
  });
  return torch::cat(parts);
}

Attack::LossGrad Attack::lossOnly(ClassifierImpl& model, const torch::Tensor& xadv, const torch::Tensor& y, const torch::Tensor& target) {
  torch::NoGradGuard noGrad;
  LossGrad out;
  out.logits = loss_->outputs(model, xadv);
  out.loss = (*loss_)(out.logits, y, target);
  return out;
}

torch::Tensor Attack::logitsOf(ClassifierImpl& model, const torch::Tensor& x) {
  torch::NoGradGuard noGrad;
  return model.forward(x);
}

torch::Tensor Attack::success(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& target) {
  auto pred = logits.argmax(1);
  return target.defined() ? pred.eq(target) : pred.ne(y);
}

torch::Tensor Attack::randomStart(const torch::Tensor& x) {
  const double eps = options_.eps;
  if (options_.startSigma > 0) return x + options_.startSigma * randNormal(x.sizes(), gen_, x.device());
  if (options_.norm == Norm::kLinf) {
    auto noise = (randUniform(x.sizes(), gen_, x.device()) * 2.0 - 1.0) * eps;
    return project(x + noise, x);
  }
  // Uniform in the L2 ball: Gaussian direction, radius eps * u^(1/d).
  const int64_t n = x.size(0);
  const double d = static_cast<double>(x.numel() / std::max<int64_t>(n, 1));
  auto dir = randNormal(x.sizes(), gen_, x.device());
  dir = dir / perExample(dir.flatten(1).norm(2, 1).clamp_min(1e-12), dir);
  auto radius = randUniform({n}, gen_, x.device()).pow(1.0 / d) * eps;
  return project(x + dir * perExample(radius, dir), x);
}

EvalModeGuard::EvalModeGuard(torch::nn::Module& m) : root_(m), rootMode_(m.is_training()) {
  for (const auto& child : m.modules(/*include_self=*/false)) modes_.emplace_back(child, child->is_training());
  m.eval();
}

EvalModeGuard::~EvalModeGuard() {
  // Module::train() recurses, so restore the root first and then each submodule's own flag.
  // modules() is pre-order, so each child's own flag is set after its parent's recursive train().
  root_.train(rootMode_);
  for (auto& [mod, mode] : modes_) mod->train(mode);
}

FrozenParamsGuard::FrozenParamsGuard(torch::nn::Module& m) {
  for (auto& p : m.parameters()) {
    flags_.emplace_back(p, p.requires_grad());
    p.requires_grad_(false);
  }
  // Under CPU autocast, convolutions and linear layers compute with their weights cast to the autocast
  // dtype, on every forward pass: autocast caches casts only of parameters that require a gradient.
  // Cast them once here instead; the forward passes compute exactly the same numbers.
  for (const auto& mod : m.modules()) {
    if (!dynamic_cast<torch::nn::Conv2dImpl*>(mod.get()) && !dynamic_cast<torch::nn::LinearImpl*>(mod.get())) continue;
    for (auto& p : mod->parameters(/*recurse=*/false)) {
      if (!p.device().is_cpu() || p.scalar_type() != torch::kFloat32) continue;
      const auto dtype = cpuComputeDtype(p);
      if (dtype == p.scalar_type()) continue;
      casts_.emplace_back(p, p.data());
      p.set_data(p.to(dtype));
    }
  }
}

FrozenParamsGuard::~FrozenParamsGuard() {
  for (auto& [p, data] : casts_) p.set_data(data);
  for (auto& [p, flag] : flags_) p.requires_grad_(flag);
}

}  // namespace robustlab
