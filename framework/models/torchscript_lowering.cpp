// A TorchScript forward graph that is a plain chain of convolutions, ReLUs, flattens, linear layers
// (and dropout, identity in eval mode) as robustlab's own layers, sharing the script's tensors: in
// eval mode the script then runs robustlab's CPU kernels and the attack gradient without an autograd
// graph (framework/models/input_grad.h), as a native model does. Anything else in the graph (BatchNorm,
// pooling, residual additions, shape arithmetic) leaves the script as it is.
#include "framework/models/torchscript.h"

#include "framework/models/conv.h"

#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/linear.h>
#include <torch/utils.h>

#include <map>
#include <optional>

namespace robustlab {
namespace {

using torch::jit::Node;
using torch::jit::Value;
namespace nn = torch::nn;

/// What the walk needs: the script's tensors by dotted name, and the graph's `self` input.
struct Walk {
  std::map<std::string, torch::Tensor> tensors;
  Value* self = nullptr;

  /// The tensor a value names through a prim::GetAttr chain from self ("conv1.weight"); undefined when
  /// it is None or not such a chain.
  std::optional<torch::Tensor> attr(Value* v) const {
    std::string path;
    while (v != self) {
      Node* n = v->node();
      if (n->kind() == c10::prim::Constant && v->type()->kind() == c10::TypeKind::NoneType) return torch::Tensor();
      if (n->kind() != c10::prim::GetAttr) return std::nullopt;
      path = n->s(c10::attr::name) + (path.empty() ? "" : "." + path);
      v = n->input(0);
    }
    auto it = tensors.find(path);
    if (it == tensors.end()) return std::nullopt;
    return it->second;
  }
};

std::optional<std::vector<int64_t>> ints(Value* v) {
  auto iv = torch::jit::toIValue(v);
  if (!iv || !iv->isIntList()) return std::nullopt;
  return iv->toIntVector();
}

std::optional<int64_t> integer(Value* v) {
  auto iv = torch::jit::toIValue(v);
  if (!iv || !iv->isInt()) return std::nullopt;
  return iv->toInt();
}

/// A scalar constant or a one-element tensor attribute equal to `value` (identity normalisation).
bool equals(const Walk& w, Value* v, double value) {
  if (auto iv = torch::jit::toIValue(v)) {
    if (iv->isInt()) return static_cast<double>(iv->toInt()) == value;
    if (iv->isDouble()) return iv->toDouble() == value;
  }
  auto t = w.attr(v);
  return t && t->defined() && t->numel() == 1 && t->item<double>() == value;
}

/// conv2d(x, w, b, stride, padding, dilation, groups) or _convolution(x, w, b, stride, padding, dilation,
/// transposed, output_padding, groups, ...), groups 1, no dilation, not transposed.
std::shared_ptr<ConvImpl> convLayer(const Walk& w, Node* n, bool traced) {
  const auto weight = w.attr(n->input(1)), bias = w.attr(n->input(2));
  const auto stride = ints(n->input(3)), padding = ints(n->input(4)), dilation = ints(n->input(5));
  const auto groups = integer(n->input(traced ? 8 : 6));
  if (!weight || !weight->defined() || weight->dim() != 4 || !bias || !stride || !padding || !dilation || !groups) return nullptr;
  if (traced) {
    auto transposed = torch::jit::toIValue(n->input(6));
    if (!transposed || !transposed->isBool() || transposed->toBool()) return nullptr;
  }
  if (*groups != 1 || *dilation != std::vector<int64_t>{1, 1} || stride->size() != 2 || padding->size() != 2) return nullptr;
  auto conv = std::make_shared<ConvImpl>(nn::Conv2dOptions(weight->size(1), weight->size(0), {weight->size(2), weight->size(3)})
                                             .stride({(*stride)[0], (*stride)[1]})
                                             .padding(std::vector<int64_t>{(*padding)[0], (*padding)[1]})
                                             .bias(bias->defined()));
  conv->weight = *weight;  // the script's tensors themselves
  if (bias->defined()) conv->bias = *bias;
  return conv;
}

std::shared_ptr<nn::LinearImpl> linearLayer(const Walk& w, Node* n) {
  const auto weight = w.attr(n->input(1)), bias = w.attr(n->input(2));
  if (!weight || !weight->defined() || weight->dim() != 2 || !bias) return nullptr;
  auto lin = std::make_shared<nn::LinearImpl>(nn::LinearOptions(weight->size(1), weight->size(0)).bias(bias->defined()));
  lin->weight = *weight;
  if (bias->defined()) lin->bias = *bias;
  return lin;
}

/// Appends one node of the chain to `chain` (nothing for a node that is the identity in eval mode);
/// false when the node is outside the plain set.
bool addLayer(const Walk& w, Node* n, nn::Sequential& chain) {
  const auto k = n->kind();
  if (k == c10::aten::conv2d && n->inputs().size() == 7) {
    if (auto m = convLayer(w, n, false)) return chain->push_back(Conv(m)), true;
  } else if (k == c10::aten::_convolution && n->inputs().size() >= 9) {
    if (auto m = convLayer(w, n, true)) return chain->push_back(Conv(m)), true;
  } else if (k == c10::aten::relu || k == c10::aten::relu_) {
    return chain->push_back(nn::ReLU()), true;
  } else if (k == c10::aten::flatten && n->inputs().size() == 3) {
    const auto start = integer(n->input(1)), end = integer(n->input(2));
    if (start && end && *start == 1 && *end == -1) return chain->push_back(nn::Flatten()), true;
  } else if (k == c10::aten::linear && n->inputs().size() == 3) {
    if (auto m = linearLayer(w, n)) return chain->push_back(nn::Linear(m)), true;
  } else if (k == c10::aten::dropout || k == c10::aten::dropout_) {
    return true;
  } else if ((k == c10::aten::sub || k == c10::aten::sub_) && n->inputs().size() == 3 && equals(w, n->input(1), 0) && equals(w, n->input(2), 1)) {
    return true;  // x - 0 (a wrapper's identity normalisation)
  } else if ((k == c10::aten::div || k == c10::aten::div_) && n->inputs().size() == 2 && equals(w, n->input(1), 1)) {
    return true;  // x / 1
  }
  return false;
}

}  // namespace

torch::nn::Sequential lowerScript(torch::jit::Module& script) {
  std::shared_ptr<torch::jit::Graph> graph;
  try {
    graph = script.get_method("forward").graph()->copy();
  } catch (const std::exception&) {
    return nullptr;
  }
  torch::jit::Inline(*graph);
  torch::jit::ConstantPropagation(graph);
  if (graph->inputs().size() != 2 || graph->outputs().size() != 1) return nullptr;
  Walk w;
  w.self = graph->inputs()[0];
  for (const auto& p : script.named_parameters(/*recurse=*/true)) w.tensors[p.name] = p.value;
  for (const auto& b : script.named_buffers(/*recurse=*/true)) w.tensors[b.name] = b.value;
  Value* cur = graph->inputs()[1];
  nn::Sequential chain;
  for (Node* n : graph->nodes()) {
    const auto k = n->kind();
    if (k == c10::prim::Constant || k == c10::prim::GetAttr || k == c10::prim::ListConstruct) continue;
    if (n->inputs().empty() || n->input(0) != cur || n->outputs().size() != 1) return nullptr;
    for (size_t i = 1; i < n->inputs().size(); ++i)
      if (n->input(i) == cur) return nullptr;
    if (!addLayer(w, n, chain)) return nullptr;
    cur = n->output();
  }
  if (graph->outputs()[0] != cur || chain->size() == 0) return nullptr;
  chain->eval();
  return chain;
}

}  // namespace robustlab
