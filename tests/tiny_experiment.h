#pragma once
// A tiny real-data experiment (two arms, two seeds, small label budgets) shared by the experiment
// and report tests.
#include <fstream>
#include <string>

namespace robustlab::test {

inline constexpr const char* kTinyConfig = R"(name = "tiny"
seeds = [0, 1]
[data]
test_limit = 200
[pretrain]
classes = [0, 1, 2, 3, 4]
per_class = 300
epochs = 1
[pretrain.variants.clean]
objective = "standard"
[finetune]
classes = [5, 6, 7, 8, 9]
per_class = 40
epochs = 10
lr = 0.05
adv_steps = 3
[[arms]]
name = "scratch"
pretrain = "none"
[[arms]]
name = "pre-adv"
pretrain = "clean"
objective = "pgd"
baseline = "scratch"
[attack]
attacks = ["fgsm", "pgd"]
eps = [0, 0.05, 0.1]
steps = 5
)";

/// Writes the tiny config into `dir` and returns its path.
inline std::string writeTiny(const std::string& dir) {
  std::ofstream(dir + "/tiny.toml") << kTinyConfig;
  return dir + "/tiny.toml";
}

}  // namespace robustlab::test
