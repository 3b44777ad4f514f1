#pragma once
// The config's sections, one place each (framework/config/config.h is the public face): the field
// tables that read and write every section's keys (sections.cpp), the validation of the whole config
// (validation.cpp), and the reading of a resolved config from TOML text with overrides (loading.cpp).
// Internal to framework/config.
#include "framework/config/config.h"
#include "framework/config/fields.h"

#include <toml++/toml.h>

#include <string>
#include <vector>

namespace robustlab::config {

/// The keys of every stage table: [train], [pretrain], [finetune] and [pretrain.variants.NAME] ("variant").
Fields<StageConfig> stageFields(const std::string& section);
Fields<AttackConfig> attackFields();
Fields<DataConfig> dataFields();
/// The top-level keys (name, seed, seeds, device, threads, precision, output, keep_models).
Fields<Config> topFields();
Fields<ArmConfig> armFields();
Fields<RobustnessConfig> robustnessFields();

/// Every rule across sections, after reading; ConfigError naming `what` and the field.
void validate(const Config& c, const std::string& what);

/// The config of a TOML table (read, then validated); `what` names it in errors.
Config fromTable(const toml::table& table, const std::string& what);

}  // namespace robustlab::config
