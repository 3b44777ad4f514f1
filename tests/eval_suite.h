#pragma once
// The evaluation the evaluation and data-parallel tests share: FGSM and PGD-10 at eps 0, 0.02, 0.05
// and 0.1, four examples kept, the sanity checks on 200 examples.
#include "attacks/evaluation/evaluation.h"
#include "framework/runtime/progress.h"

namespace robustlab::test {

inline EvalOptions fgsmPgdSuite() {
  Progress::setQuiet(true);
  EvalOptions e;
  for (const std::string n : {"fgsm", "pgd"}) {
    AttackOptions o;
    o.steps = 10;
    e.attacks.push_back({n, o});
  }
  e.epsGrid = {0.0, 0.02, 0.05, 0.1};
  e.keepExamples = 4;
  e.sanityLimit = 200;
  return e;
}

}  // namespace robustlab::test
