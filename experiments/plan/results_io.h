#pragma once
// Writing results to HDF5. Layout (docs/results-format.md is the reference):
//   /                      attrs: format, robustlab_version, command, config (resolved TOML), created
//   /eval/<model>/         attrs: clean_accuracy, norm, n_examples; datasets labels, clean_pred,
//                          eps, worst_accuracy, raw_worst_accuracy, worst_robust (N x E), example_inputs
//   /eval/<model>/attacks/<attack>/  robust_accuracy, success_rate, mean_norm, max_norm, mean_linf,
//                          mean_l2, zero_grad_fraction, gradient_evaluations, queries, seconds (each E),
//                          robust (N x E), adv_pred (N x E), examples (E x K x C x H x W float32);
//                          suites (autoattack) also stage_names (S) and stage_robust_accuracy (E x S)
//   /eval/<model>/sanity/  names, passed, details
//   /train/<stage>/        history curves (epoch, lr, loss, accuracy, val_loss, val_accuracy, seconds)
#include "attacks/evaluation/evaluation.h"
#include "data/h5io.h"
#include "framework/training/trainer.h"

#include <string>

namespace robustlab {

inline constexpr const char* kResultsFormat = "robustlab-results-1";
inline constexpr const char* kVersion = "0.1.0";

void writeResultsHeader(H5File& f, const std::string& configToml, const std::string& command);
void writeEvaluation(H5File& f, const std::string& group, const EvalResult& r);
/// Reads back the accuracy table of one evaluation group (used by tests and reports).
struct StoredEval {
  double cleanAccuracy = 0;
  torch::Tensor eps, worstAccuracy;
  std::vector<std::string> attacks;
};
StoredEval readEvaluation(const std::string& path, const std::string& group);

}  // namespace robustlab
