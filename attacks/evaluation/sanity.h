#pragma once
// Gradient-masking sanity checks (Carlini et al. 2019, "On Evaluating Adversarial Robustness"),
// run with every evaluation and stored with it. A failed check is a visible warning, never silence.
// Data-parallel ranks (options.comm) share the checks' examples and all reach the same verdicts.
#include "attacks/evaluation/evaluation.h"

namespace robustlab {

/// Appends the checks to r.checks:
///  - pgd_not_weaker_than_fgsm: PGD robust accuracy <= FGSM's at every eps (+1 example of slack)
///  - monotone_in_eps: no attack's raw accuracy rises with eps
///  - zero_gradients: fraction of exactly-zero input gradients below 50%
///  - eps_zero_identity: every attack at eps = 0 returns the input and the clean accuracy
///  - large_eps_breaks_model: PGD at a huge eps (Linf 0.5; L2 0.5 * sqrt(d)) leaves <= 5% accuracy
///  - black_box_not_stronger: Square (alone or inside autoattack) fools at most 1% of the examples that
///    every white-box attack left robust at the same eps (more: masked gradients); the count is stated
///  - more_steps_stable: PGD with 2x steps and 2 restarts moves accuracy by <= 3 points
///  - deterministic_model: 5 passes over the same inputs agree (AutoAttack's randomness check); a
///    randomized model passes only when evaluated with EOT (autoattack-rand or eot_iter > 1)
void runSanityChecks(ClassifierImpl& model, const Dataset& data, const EvalOptions& options, torch::Device device, EvalResult& r);

}  // namespace robustlab
