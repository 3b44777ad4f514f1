#pragma once
// Shared test fixtures: small slices of real Fashion-MNIST and models trained on them once per
// build (cached as checkpoints in the build tree), all with fixed seeds.
#include "data/dataset.h"
#include "framework/models/model.h"

#include <string>
#include <vector>

namespace robustlab::test {

/// First `n` training images of Fashion-MNIST (all 10 classes).
const Dataset& fashionTrain();   // 6000 images
const Dataset& fashionTest();    // 1000 held-out test images

/// The default small CNN trained normally on fashionTrain() (8 epochs, seed 0).
Classifier standardModel();
/// The same CNN trained with PGD adversarial training (Linf eps 0.1, 7 steps).
Classifier adversarialModel();
/// A path of the cached checkpoint of standardModel().
std::string standardCheckpoint();

/// The whole content of a file ("" when it cannot be read).
std::string readFile(const std::string& path);
/// Runs a shell command; returns its exit code (-1 when it did not exit normally).
int shell(const std::string& command);

/// A fresh temporary directory for one test.
std::string tempDir(const std::string& name);

/// A module's parameters, then its buffers, as detached copies.
std::vector<torch::Tensor> snapshot(torch::nn::Module& m);
/// Whether the two lists hold equal tensors, bit for bit, in the same order.
bool sameTensors(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b);

/// The small CNN spec sized for Fashion-MNIST with `classes` classes; optional BatchNorm after convs.
ModelSpec smallCnn(int64_t classes = 10, bool batchNorm = false);

}  // namespace robustlab::test
