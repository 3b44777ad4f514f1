#pragma once
// The input gradient of a classifier's cross-entropy without an autograd graph, for the attack loop.
//
// Every PGD step differentiates the same small network once. Autograd records a graph of nodes and
// saved tensors for it and then walks it; for the small CNN on CPU that bookkeeping is a large part
// of a step. For models made only of layers whose backward is one kernel call (Conv, ReLU, Flatten,
// Linear, Dropout in eval mode), this file calls those kernels directly, in the order and with the
// arguments autograd uses, so the gradient is bit-identical to autograd's (tested) and cheaper.
#include "framework/models/model.h"

#include <optional>

namespace robustlab {

struct InputGrad {
  torch::Tensor loss;    ///< per-example cross-entropy, negated when `negate`
  torch::Tensor logits;  ///< fp32
  torch::Tensor grad;    ///< d(sum of loss)/dx, x's shape and dtype
};

/// Whether crossEntropyInputGrad can handle this model: a backbone of Conv (zero padding given as
/// numbers), ReLU, Flatten, Linear and Dropout layers, in eval mode, with parameters that do not
/// require a gradient.
bool supportsManualInputGrad(ClassifierImpl& model);

/// Per-example cross-entropy of model(x) against `labels` (negated when `negate`, for targeted
/// attacks), the logits and the input gradient of the summed loss, under the calling thread's autocast
/// state. std::nullopt when x is not on the CPU or supportsManualInputGrad is false (use autograd then).
std::optional<InputGrad> crossEntropyInputGrad(ClassifierImpl& model, const torch::Tensor& x, const torch::Tensor& labels, bool negate);

}  // namespace robustlab
