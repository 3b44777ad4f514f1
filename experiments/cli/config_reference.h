#pragma once
// The configuration reference (docs/configuration.md), generated from what the config reader asks
// for: every key with its type, range or valid names, default and meaning.
#include <string>
#include <utility>
#include <vector>

namespace robustlab {

/// The reference as Markdown. Keys the reader asks for that have no meaning in configKeyHelp() are
/// listed as "(undocumented)" (a test fails on that).
std::string configReference();

/// The meaning of each key, by section: "name" (top level), "data.source", "stage.epochs" (the keys
/// [train], [pretrain] and [finetune] share), "pretrain.mode", "finetune.mode", "model.layers.type",
/// "arms.name", "attack.eps", "sweep.mode", "sweep.random.low".
const std::vector<std::pair<std::string, std::string>>& configKeyHelp();

}  // namespace robustlab
