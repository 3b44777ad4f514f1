#pragma once
// Checkpoints are HDF5 files (readable from h5py):
//   /state/<parameter or buffer name>   tensors, e.g. /state/backbone.0.weight
//   attributes on /: format = "robustlab-checkpoint-1", model_spec (TOML), config (TOML of the run)
// plus anything the caller adds (training curves under /history).
#include "data/h5io.h"
#include "framework/models/model.h"

#include <functional>
#include <string>

namespace robustlab {

inline constexpr const char* kCheckpointFormat = "robustlab-checkpoint-1";

/// Writes atomically (temporary file + rename): a killed run leaves any earlier checkpoint intact.
void saveCheckpoint(const std::string& path, ClassifierImpl& model, const std::string& configToml,
                    const std::function<void(H5File&)>& extra = nullptr);

/// The spec stored in a checkpoint. Throws std::runtime_error naming the file when it is missing,
/// not HDF5 or not a robustlab checkpoint.
ModelSpec readCheckpointSpec(const std::string& path);
/// The config text stored in a checkpoint ("" when none).
std::string readCheckpointConfig(const std::string& path);

/// Builds the stored architecture and loads all weights.
Classifier loadClassifier(const std::string& path);

/// Loads weights into an existing model. With `backboneOnly`, the head is left as it is (fine-tuning
/// on a new task). A checkpoint of another architecture is a std::runtime_error naming the first
/// parameter that differs, never a crash.
void loadWeights(const std::string& path, ClassifierImpl& model, bool backboneOnly);

}  // namespace robustlab
