#pragma once
// The architectures a config's `model.arch` names, as a registry: a name and the function that builds
// the backbone (everything but the linear head) from a ModelSpec sized for the data. A new architecture
// is one file and one registration (model.cpp registers cnn, mlp, resnet and wrn; a TorchScript model
// is built apart, from its file). Code outside the library registers with a static
// ArchitectureRegistration, as tests/test_models.cpp's toy architecture does.
#include "framework/models/model_spec.h"

#include <torch/nn/modules/container/sequential.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace robustlab {

/// Appends the backbone's modules to `seq`; its output is N x features (flattened). Throws
/// std::invalid_argument naming the field when the spec cannot be built.
using BackboneBuilder = std::function<void(torch::nn::Sequential& seq, const ModelSpec& spec)>;

/// The registered architectures by name (the built-in ones and any registered since).
const std::map<std::string, BackboneBuilder>& architectures();
/// Every valid `model.arch`: the registered names and "torchscript", sorted.
std::vector<std::string> architectureNames();

/// Registers an architecture at static-initialisation time; a name registered twice is an error.
struct ArchitectureRegistration {
  ArchitectureRegistration(const std::string& name, BackboneBuilder build);
};

}  // namespace robustlab
