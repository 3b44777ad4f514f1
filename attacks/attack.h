#pragma once
// The attack interface. Every attack goes through Attack::perturb, which does the work that
// established libraries got wrong at least once (../shared/ATTACK-CORRECTNESS.md): eval mode during
// the attack and each module's mode restored after; the caller's input never written; gradients taken
// with respect to the input only (parameter .grad untouched); result projected onto the eps-ball
// around the clean input and clipped to [lo, hi], then checked.
//
// Inputs: images N x C x H x W in pixel space [lo, hi] (default [0,1]), labels N int64. The losses an
// attack ascends are in losses.h, the threat model's geometry (norms, boxes, projections) in geometry.h.
#include "attacks/geometry.h"
#include "attacks/losses.h"
#include "framework/models/model.h"

#include <ATen/core/Generator.h>
#include <torch/types.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace robustlab {

enum class Targeting { kNone, kGiven, kRandom, kLeastLikely };
Targeting parseTargeting(const std::string& name);  ///< none | given | random | least-likely
std::string targetingName(Targeting t);

/// Options shared by all attacks; each attack reads the fields it uses.
struct AttackOptions {
  double eps = 0.1;             ///< radius of the threat model, in `norm`
  Norm norm = Norm::kLinf;
  double lo = 0.0, hi = 1.0;    ///< valid input range
  Targeting targeting = Targeting::kNone;
  uint64_t seed = 0;            ///< random start and random targets
  int64_t steps = 20;           ///< pgd, apgd
  double stepSize = 0.0;        ///< pgd: absolute step; 0 means relStepSize * eps
  double relStepSize = 0.0;     ///< pgd: step relative to eps; 0 means 2.5 / steps (Madry et al.)
  bool randomStart = true;      ///< pgd: uniform in the Linf box / in the L2 ball
  double startSigma = 0.0;      ///< pgd: > 0 starts at x + startSigma * N(0, 1) instead (TRADES: 0.001)
  int64_t restarts = 1;         ///< pgd, apgd: worst case per example over restarts
  bool earlyStop = true;        ///< pgd: stop stepping examples already fooled
  bool lastIterate = false;     ///< pgd: return the last iterate (adversarial training), no per-example best
  bool countZeroGradients = true;  ///< count exactly-zero input-gradient entries (the sanity check); off in training
  double rho = 0.75;            ///< apgd: step-size halving threshold
  int64_t targetClasses = 9;    ///< apgd-t, fab-t: target the 2nd..(k+1)-th most likely classes, k capped at classes - 1
  int64_t queries = 5000;       ///< square: model queries per example and restart (AutoAttack's budget)
  double pInit = 0.8;           ///< square: the first squares' share of the image area (AutoAttack's 0.8)
  int64_t suiteSteps = 100;     ///< autoattack: iterations of its APGD-CE, APGD-T and FAB-T (the reference's 100)
  /// Gradient attacks: average the input gradient over this many forward-backward passes, expectation
  /// over transformation for randomized models (Athalye et al. 2018; AutoAttack's eot_iter). 1: one pass.
  int64_t eotIter = 1;
  /// apgd, L1: the reference's schedule for L1 (use_largereps): the steps split 30/30/40% over radii
  /// 3, 2 and 1 times eps, each started from the last's best point. AutoAttack's L1 members set it.
  bool l1LargeEps = false;
  /// Throws std::invalid_argument naming the field and the allowed range.
  void validate() const;
  /// The step size PGD actually takes.
  double effectiveStepSize() const;
};

/// Counters an attack fills while it runs (reset by each perturb call).
struct AttackStats {
  int64_t gradientEvaluations = 0;  ///< forward+backward passes, per example
  int64_t zeroGradElements = 0;     ///< input-gradient entries exactly 0 (sign(0) = 0 stalls a step)
  int64_t gradElements = 0;
  int64_t queries = 0;              ///< forward-only model queries, per example (square)
  /// Suites (autoattack): the robust examples left after the clean pass and after each attack in order.
  std::vector<std::string> stageNames;
  std::vector<int64_t> stageRobust;
  double zeroGradFraction() const { return gradElements ? double(zeroGradElements) / double(gradElements) : 0.0; }
};

class Attack {
 public:
  explicit Attack(AttackOptions options);
  virtual ~Attack() = default;
  virtual std::string name() const = 0;
  /// A suite's stages ("clean", then its members in order), whose robust counts stats() reports;
  /// empty for a single attack.
  virtual std::vector<std::string> stages() const { return {}; }

  /// Adversarial examples for (x, y), same shape and device as x. `targets` is needed only for
  /// Targeting::kGiven. The model's mode and parameter gradients are as they were afterwards.
  torch::Tensor perturb(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y,
                        const torch::Tensor& targets = torch::Tensor());

  const AttackOptions& options() const { return options_; }
  const AttackStats& stats() const { return stats_; }
  /// Called, on the thread that called perturb, as a perturb call's work goes on: the share of its
  /// expected work done (0..0.99, an estimate: restarts and targets run on the examples still robust)
  /// and the running stage ("", or a suite's member). The evaluation shows it as progress within a batch.
  using ProgressHook = std::function<void(double share, const std::string& stage)>;
  void setProgressHook(ProgressHook hook) { progressHook_ = std::move(hook); }
  /// Gradient evaluations plus queries a perturb call expects per example at most (for progress).
  virtual double workPerExample() const {
    return static_cast<double>(std::max<int64_t>(1, options_.steps)) * static_cast<double>(std::max<int64_t>(1, options_.restarts)) *
           static_cast<double>(std::max<int64_t>(1, options_.eotIter));
  }
  /// The targets used by the last targeted perturb call.
  const torch::Tensor& lastTargets() const { return lastTargets_; }
  /// The loss the attack ascends (cross-entropy unless the attack or its caller chose another). A loss
  /// that is not perExample() needs an attack that runsWholeBatches(); perturb says so otherwise.
  void setLoss(std::shared_ptr<AttackLoss> loss) { loss_ = std::move(loss); }
  const AttackLoss& loss() const { return *loss_; }
  /// Whether run() scores every batch it is handed whole (no restarts, early stopping or row subsets).
  virtual bool runsWholeBatches() const { return false; }
  /// The threat models the attack implements; perturb refuses others with one line.
  virtual bool supportsNorm(Norm n) const { return n != Norm::kL1; }
  /// Draw the attack's random numbers (start, random targets) from `gen`, the caller's stream, instead
  /// of the attack's own stream seeded by options().seed (a training objective's batch generator).
  void shareGenerator(const at::Generator& gen) { gen_ = gen; }

 protected:
  /// One attack's algorithm. x is a private clone on the model's device, in eval mode, with
  /// parameter gradients switched off; `target` is defined iff the attack is targeted.
  virtual torch::Tensor run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) = 0;

  /// The attack loss (`loss_`) per example, its input gradient and the outputs it scored (logits).
  /// The loss is summed over the batch, so each example's gradient is independent of the batch when the
  /// loss is perExample(). With options().eotIter = k > 1, the gradient is the mean of k passes' and
  /// the loss and logits are the last pass's (as AutoAttack's EOT).
  struct LossGrad {
    torch::Tensor loss, grad, logits;
  };
  LossGrad lossAndGrad(ClassifierImpl& model, const torch::Tensor& xadv, const torch::Tensor& y, const torch::Tensor& target);
  LossGrad lossAndGradOnce(ClassifierImpl& model, const torch::Tensor& xadv, const torch::Tensor& y, const torch::Tensor& target);
  /// Per-example loss and logits without a gradient.
  LossGrad lossOnly(ClassifierImpl& model, const torch::Tensor& xadv, const torch::Tensor& y, const torch::Tensor& target);
  /// fn(begin, end) over contiguous row ranges covering [0, x.size(0)), concatenated along rows. Where
  /// lossAndGrad's graph-free gradient splits x across cores (CPU, a model it follows, chunksFor > 1),
  /// the ranges are the very chunks it would split every step into, each run whole on its own core
  /// (runChunks), so a loop of many steps hands over work once instead of once per step, with the same
  /// numbers. Otherwise one range. fn must treat rows independently (no batch-wide statistics) and
  /// must not draw random numbers (the stream's order would depend on the cores).
  torch::Tensor inRowChunks(ClassifierImpl& model, const torch::Tensor& x, const std::function<torch::Tensor(int64_t, int64_t)>& fn);
  /// Restarts on survivors, the loop every attack and suite runs: round k = 0, 1, ... < `rounds` calls
  /// `round(idx, k)` on the rows `idx` no earlier round fooled (never empty), which returns a candidate
  /// for each of those rows and the positions (into idx) of the ones it fooled; those rows of `best`
  /// take their candidate and `fooled` marks them. Returns false when it stopped because no example was
  /// left to attack.
  using Round = std::function<std::pair<torch::Tensor, torch::Tensor>(const torch::Tensor& idx, int64_t k)>;
  static bool onSurvivors(torch::Tensor& best, torch::Tensor& fooled, int64_t rounds, const Round& round);
  /// Rows `idx` of t, or t itself when undefined (the target of an untargeted attack).
  static torch::Tensor rowsOf(const torch::Tensor& t, const torch::Tensor& idx) { return t.defined() ? t.index_select(0, idx) : t; }
  /// The model's logits without a gradient (clean predictions, checking a result, a target order).
  static torch::Tensor logitsOf(ClassifierImpl& model, const torch::Tensor& x);
  /// Success per example: misclassified (untargeted) or classified as the target (targeted).
  static torch::Tensor success(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& target);
  /// projectToBall with the attack's norm, eps and range (Linf: the clamp into linfBox(x)).
  torch::Tensor project(const torch::Tensor& xadv, const torch::Tensor& x) const {
    return options_.norm == Norm::kLinf ? linfBox(x).clamp(xadv) : projectToBall(xadv, x, options_.norm, options_.eps, options_.lo, options_.hi);
  }
  /// The attack's Linf box around x, so each step's projection is one element-wise clamp: the shared
  /// box when x is the tensor a live SharedBox was made for, else computed anew.
  LinfBox linfBox(const torch::Tensor& x) const {
    return x.is_same(boxOf_) ? box_ : robustlab::linfBox(x, options_.eps, options_.lo, options_.hi);
  }
  /// While it lives (Linf norm), linfBox(x) and project(., x) for this very tensor x use one box
  /// computed here, instead of one per call: perturb makes one for the batch it hands to run (shared by
  /// the random start, the steps and the final projection), an attack with restarts on a subset one
  /// per restart. Restores the previous one when it ends, however it ends.
  class SharedBox {
   public:
    SharedBox(Attack& attack, const torch::Tensor& x);
    ~SharedBox();
    SharedBox(const SharedBox&) = delete;
    SharedBox& operator=(const SharedBox&) = delete;

   private:
    Attack& attack_;
    LinfBox previous_;
    torch::Tensor previousOf_;
  };
  /// A uniform random point of the eps-ball (Linf: the box; L2: the ball, radius eps * u^(1/d)), clipped;
  /// with options().startSigma > 0, x + startSigma * N(0, 1) instead, unprojected (TRADES' start).
  torch::Tensor randomStart(const torch::Tensor& x);
  torch::Tensor ascentDirection(const torch::Tensor& grad) const { return steepestAscent(grad, options_.norm); }

  /// The share of the running perturb call's expected work its stats show (call under statsMutex_).
  double workShare() const;
  /// Passes `share` to the progress hook when there is one and this is the perturb call's thread.
  void reportWork(double share);
  /// The classes of the model the running perturb call attacks.
  int64_t classes() const { return classes_; }

  AttackOptions options_;
  ProgressHook progressHook_;
  std::shared_ptr<AttackLoss> loss_ = crossEntropyLoss();  ///< what lossAndGrad and lossOnly compute
  AttackStats stats_;        ///< updated under statsMutex_ (lossAndGrad may run in several row chunks at once)
  std::mutex statsMutex_;
  torch::Tensor zeroGrads_;  ///< running count on the model's device, read once per perturb (no sync per step)
  at::Generator gen_;

 private:
  /// A norm the attack does not implement, or a whole-batch loss in an attack that splits batches:
  /// std::invalid_argument naming it.
  void refuseUnsupported() const;
  torch::Tensor lastTargets_;
  std::thread::id perturbThread_;
  int64_t perturbRows_ = 0, classes_ = 0;
  LinfBox box_;          ///< the live SharedBox's box
  torch::Tensor boxOf_;  ///< the tensor it was made for (undefined: none)
};

/// Sets a module tree to eval mode and restores every submodule's own mode on destruction.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(torch::nn::Module& m);
  ~EvalModeGuard();

 private:
  std::vector<std::pair<std::shared_ptr<torch::nn::Module>, bool>> modes_;
  torch::nn::Module& root_;
  bool rootMode_;
};

/// Switches off requires_grad on a module's parameters (so attacks neither compute nor touch
/// parameter gradients) and restores the flags on destruction.
class FrozenParamsGuard {
 public:
  explicit FrozenParamsGuard(torch::nn::Module& m);
  ~FrozenParamsGuard();

 private:
  std::vector<std::pair<torch::Tensor, bool>> flags_;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> casts_;  ///< parameter, its own fp32 data
};

}  // namespace robustlab
