#include "attacks/fgsm.h"

namespace robustlab {

torch::Tensor Fgsm::run(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& target) {
  const auto lg = lossAndGrad(model, x, y, target);
  return project(x + options_.eps * ascentDirection(lg.grad), x);
}

}  // namespace robustlab
