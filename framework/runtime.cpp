#include "framework/runtime.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <stdexcept>

namespace robustlab {

torch::Device resolveDevice(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available()) throw std::invalid_argument("device: 'cuda' requested but no CUDA device is available");
    return torch::kCUDA;
  }
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  throw std::invalid_argument("device: unknown device '" + name + "', expected auto, cpu or cuda");
}

int configureThreads(int n) {
  const int threads = n > 0 ? n : kDefaultCpuThreads;
  at::set_num_threads(threads);
  return threads;
}

void seedEverything(uint64_t seed) { torch::manual_seed(seed); }

at::Generator makeGenerator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

}  // namespace robustlab
