#pragma once
// The TorchScript test models (made once per test process by Debian's python3-torch with
// tests/make_torchscript_models.py) and the comparisons the TorchScript tests share. Include after Catch.
#include "fixtures.h"
#include "tolerance.h"

#include "data/h5io.h"
#include "framework/models/model.h"

#include <string>
#include <vector>

namespace robustlab::test {

inline const std::string kScript = std::string(ROBUSTLAB_SOURCE_DIR) + "/tests/make_torchscript_models.py";

/// The folder of TorchScript models, made once per test process (the traced one from the standard fixture).
inline const std::string& scriptDir() {
  static const std::string dir = [] {
    const std::string d = tempDir("torchscript");
    const int rc = shell("/usr/bin/python3 " + kScript + " models " + d + " --checkpoint " + standardCheckpoint() + " >" + d +
                         "/make.log 2>&1");
    if (rc != 0) FAIL("make_torchscript_models.py failed: " << readFile(d + "/make.log"));
    return d;
  }();
  return dir;
}

inline ModelSpec scriptSpec(const std::string& name, int64_t classes = 10, std::vector<int64_t> shape = {1, 28, 28}) {
  ModelSpec s;
  s.arch = "torchscript";
  s.torchscript = scriptDir() + "/" + name + ".pt";
  s.inChannels = shape[0];
  s.height = shape[1];
  s.width = shape[2];
  s.numClasses = classes;
  return s;
}

/// PyTorch's eval-mode logits of `model` (a .pt file or a robustlab checkpoint) on `images`.
inline torch::Tensor pythonLogits(const std::string& model, const torch::Tensor& images, const std::string& tag) {
  const std::string dir = scriptDir();
  const std::string in = dir + "/" + tag + "-images.h5", out = dir + "/" + tag + "-logits.h5";
  {
    H5File f(in, H5File::Mode::kTruncate);
    f.writeTensor("/images", images.contiguous());
  }
  const int rc = shell("/usr/bin/python3 " + kScript + " logits " + model + " " + in + " /images " + out + " >" + dir + "/" +
                       tag + ".log 2>&1");
  REQUIRE(rc == 0);
  H5File f(out, H5File::Mode::kRead);
  return f.readTensor("/logits");
}

inline torch::Tensor evalLogits(ClassifierImpl& m, const torch::Tensor& x) {
  torch::NoGradGuard g;
  m.eval();
  return m.forward(x);
}

/// Two fp32 computations of the same network: each layer's result is a sum of at most `longest` terms,
/// within gamma(longest) of the exact sum relative to the sum of magnitudes; through `layers` layers of
/// Lipschitz-1-scale activations the logits differ by at most layers * 2 * gamma(longest) * (1 + |logit|).
inline void checkSameLogits(const torch::Tensor& a, const torch::Tensor& b, int64_t longest, int64_t layers) {
  REQUIRE(a.sizes() == b.sizes());
  const double bound = layers * 2 * gamma(longest, kUnitFp32);
  const auto scale = 1 + b.abs().to(torch::kFloat64);
  INFO("largest difference " << (a - b).abs().max().item<double>() << ", bound " << bound << " x (1 + |logit|)");
  CHECK(excess(a, b, scale, bound) <= 0);
  CHECK(torch::equal(a.argmax(1), b.argmax(1)));
}


}  // namespace robustlab::test
