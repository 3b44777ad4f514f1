#include "attacks/losses.h"

#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <stdexcept>
#include <string>

namespace robustlab {
namespace F = torch::nn::functional;

torch::Tensor ceLoss(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& target) {
  return target.defined() ? -F::cross_entropy(logits, target, F::CrossEntropyFuncOptions().reduction(torch::kNone))
                          : F::cross_entropy(logits, y, F::CrossEntropyFuncOptions().reduction(torch::kNone));
}

torch::Tensor dlrLoss(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& target) {
  const int64_t k = logits.size(1), need = target.defined() ? 4 : 3;
  if (k < need)
    throw std::invalid_argument(std::string(target.defined() ? "targeted DLR" : "DLR") + " loss: needs at least " + std::to_string(need) +
                                " classes (it reads the " + (need == 3 ? "third" : "fourth") + "-largest logit), the model has " +
                                std::to_string(k));
  const auto z = logits.to(torch::kFloat32);
  const auto sorted = std::get<0>(z.sort(1, /*descending=*/true));
  const auto zy = z.gather(1, y.view({-1, 1})).squeeze(1);
  if (target.defined()) {
    const auto zt = z.gather(1, target.view({-1, 1})).squeeze(1);
    return -(zy - zt) / (sorted.select(1, 0) - 0.5 * (sorted.select(1, 2) + sorted.select(1, 3)) + 1e-12);
  }
  // The largest logit other than y's: the second-largest when y's is the largest.
  const auto yIsTop = z.argmax(1).eq(y);
  const auto other = torch::where(yIsTop, sorted.select(1, 1), sorted.select(1, 0));
  return -(zy - other) / (sorted.select(1, 0) - sorted.select(1, 2) + 1e-12);
}

namespace {

class CrossEntropyAttackLoss : public AttackLoss {
 public:
  std::string name() const override { return "ce"; }
  torch::Tensor operator()(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& target) const override {
    return ceLoss(logits, y, target);
  }
  bool isCrossEntropy() const override { return true; }
};

class DlrAttackLoss : public AttackLoss {
 public:
  std::string name() const override { return "dlr"; }
  torch::Tensor operator()(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& target) const override {
    return dlrLoss(logits, y, target);
  }
};

}  // namespace

std::shared_ptr<AttackLoss> crossEntropyLoss() { return std::make_shared<CrossEntropyAttackLoss>(); }
std::shared_ptr<AttackLoss> dlrAttackLoss() { return std::make_shared<DlrAttackLoss>(); }

void KlToCleanLoss::prepare(ClassifierImpl& model, const torch::Tensor& x) {
  torch::NoGradGuard noGrad;
  clean_ = torch::softmax(model.forward(x), 1);
}

torch::Tensor KlToCleanLoss::operator()(const torch::Tensor& logits, const torch::Tensor&, const torch::Tensor&) const {
  if (!clean_.defined() || clean_.size(0) != logits.size(0))
    throw std::logic_error("kl loss: scores whole batches only, after prepare() on the same batch (Pgd's last-iterate loop)");
  return F::kl_div(torch::log_softmax(logits, 1), clean_, F::KLDivFuncOptions().reduction(torch::kSum));
}

}  // namespace robustlab
