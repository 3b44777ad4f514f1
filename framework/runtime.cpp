#include "framework/runtime.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <dlfcn.h>

#include <algorithm>
#include <stdexcept>
#include <thread>

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
  // OpenBLAS keeps its own thread pool, which at::set_num_threads does not reach: busy-waiting
  // BLAS threads cost a core's worth of system time for no speed-up on the small models here.
  using SetThreads = void (*)(int);
  if (auto* fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(threads);
  return threads;
}

int defaultEvalThreads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return static_cast<int>(std::max(1u, std::min(2u, hw)));
}

void seedEverything(uint64_t seed) { torch::manual_seed(seed); }

at::Generator makeGenerator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

}  // namespace robustlab
