#pragma once
// The losses an attack ascends, per example.
#include <torch/types.h>

namespace robustlab {

/// The loss an attack ascends.
enum class AttackLoss {
  kCrossEntropy,  ///< CE on the true label (untargeted), -CE on the target (targeted)
  kDlr,           ///< Croce & Hein's difference of logits ratio (untargeted and targeted forms)
};

/// Cross-entropy per example, to be maximised: CE on the true label y (untargeted), -CE on the target
/// (targeted, `target` defined).
torch::Tensor ceLoss(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& target = torch::Tensor());

/// DLR per example (Croce & Hein 2020), to be maximised. Untargeted: -(z_y - max_{i!=y} z_i) /
/// (z_pi1 - z_pi3 + 1e-12), with z sorted in decreasing order as z_pi1 >= z_pi2 >= ...; it needs at
/// least 3 classes. Targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12); it needs at least
/// 4. Invariant to shifting and (positively) scaling the logits. Fewer classes throw
/// std::invalid_argument saying how many are needed.
torch::Tensor dlrLoss(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& target = torch::Tensor());

}  // namespace robustlab
