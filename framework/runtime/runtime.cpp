#include "framework/runtime/runtime.h"

#include "framework/runtime/chunks.h"
#include "framework/runtime/cpu_info.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <torch/version.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <sched.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <utility>

namespace robustlab {

DeviceChoice parseDeviceChoice(const std::string& name) {
  if (name == "auto") return DeviceChoice::kAuto;
  if (name == "cpu") return DeviceChoice::kCpu;
  if (name == "cuda") return DeviceChoice::kCuda;
  throw std::invalid_argument("device: unknown device '" + name + "', expected auto, cpu or cuda");
}

std::string deviceChoiceName(DeviceChoice d) { return d == DeviceChoice::kAuto ? "auto" : d == DeviceChoice::kCpu ? "cpu" : "cuda"; }

torch::Device resolveDevice(DeviceChoice d) {
  if (d == DeviceChoice::kCpu) return torch::kCPU;
  if (d == DeviceChoice::kCuda) {
    if (!torch::cuda::is_available()) throw std::invalid_argument("device: 'cuda' requested but no CUDA device is available");
    return torch::kCUDA;
  }
  return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

torch::Device resolveDevice(const std::string& name) { return resolveDevice(parseDeviceChoice(name)); }

void synchronizeDevice(torch::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

int configureThreads(int n, int workers) {
  const int threads = n > 0 ? n : kDefaultCpuThreads;
  detail::setBatchWorkers(workers > 0 ? workers : threads);  // first: a new worker resets the process default
  at::set_num_threads(threads);
  detail::setBlasThreads(threads);
  return threads;
}

int usableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

int defaultEvalThreads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return static_cast<int>(std::max(1u, std::min(2u, hw)));
}

int defaultTrainThreads(Precision p) { return p == Precision::kBf16 ? defaultEvalThreads() : kDefaultCpuThreads; }

bool cpuHasNativeBf16() {
  const auto& flags = cpuInfo().flags;
  return std::find(flags.begin(), flags.end(), "avx512_bf16") != flags.end() || std::find(flags.begin(), flags.end(), "amx_bf16") != flags.end();
}

PrecisionChoice parsePrecisionChoice(const std::string& name) {
  if (name == "fp32") return PrecisionChoice::kFp32;
  if (name == "bf16") return PrecisionChoice::kBf16;
  if (name == "auto") return PrecisionChoice::kAuto;
  throw std::invalid_argument("precision: unknown precision '" + name + "', expected fp32, bf16 or auto");
}

std::string precisionChoiceName(PrecisionChoice c) {
  return c == PrecisionChoice::kAuto ? "auto" : c == PrecisionChoice::kBf16 ? "bf16" : "fp32";
}

Precision resolvePrecision(PrecisionChoice c) {
  if (c == PrecisionChoice::kFp32) return Precision::kFp32;
  if (c == PrecisionChoice::kBf16) return Precision::kBf16;
  // With oneDNN held below AVX-512, CPU bf16 runs LibTorch's own (emulated, slow) kernels: fp32 then.
  return (cpuHasNativeBf16() && !onednnLacksBf16()) || torch::cuda::is_available() ? Precision::kBf16 : Precision::kFp32;
}

Precision parsePrecision(const std::string& name) { return resolvePrecision(parsePrecisionChoice(name)); }

std::string precisionName(Precision p) { return p == Precision::kBf16 ? "bf16" : "fp32"; }

// The autocast API was renamed in LibTorch 2.4 (device-type arguments instead of per-device names).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define ROBUSTLAB_AUTOCAST_V2 1
#endif

bool onednnLacksBf16() {
  static const bool lacks = [] {
    const char* v = std::getenv("ONEDNN_MAX_CPU_ISA");
    if (!v || !*v) v = std::getenv("DNNL_MAX_CPU_ISA");
    if (!v || !*v) return false;
    std::string isa = v;
    for (auto& ch : isa) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    return !(isa == "ALL" || isa.rfind("AVX512_CORE", 0) == 0 || isa.rfind("AVX10", 0) == 0);
  }();
  return lacks;
}

namespace {

/// CPU and CUDA autocast on or off, and whether they are: the per-version API in one place.
std::pair<bool, bool> autocastEnabled() {
#ifdef ROBUSTLAB_AUTOCAST_V2
  return {at::autocast::is_autocast_enabled(at::kCPU), at::autocast::is_autocast_enabled(at::kCUDA)};
#else
  return {at::autocast::is_cpu_enabled(), at::autocast::is_enabled()};
#endif
}

void setAutocastEnabled(bool cpu, bool cuda) {
#ifdef ROBUSTLAB_AUTOCAST_V2
  at::autocast::set_autocast_enabled(at::kCPU, cpu);
  at::autocast::set_autocast_enabled(at::kCUDA, cuda);
#else
  at::autocast::set_cpu_enabled(cpu);
  at::autocast::set_enabled(cuda);
#endif
}

}  // namespace

PrecisionGuard::PrecisionGuard(Precision p) {
  if (p != Precision::kBf16) return;
  active_ = true;
  if (onednnLacksBf16() && at::globalContext().userEnabledMkldnn()) {
    at::globalContext().setUserEnabledMkldnn(false);
    mkldnnOff_ = true;
  }
  std::tie(cpuWas_, cudaWas_) = autocastEnabled();
#ifdef ROBUSTLAB_AUTOCAST_V2
  cpuDtypeWas_ = at::autocast::get_autocast_dtype(at::kCPU);
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
  cpuDtypeWas_ = at::autocast::get_autocast_cpu_dtype();
  at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
  setAutocastEnabled(true, true);
}

PrecisionGuard::~PrecisionGuard() {
  if (!active_) return;
  if (mkldnnOff_) at::globalContext().setUserEnabledMkldnn(true);
  setAutocastEnabled(cpuWas_, cudaWas_);
#ifdef ROBUSTLAB_AUTOCAST_V2
  at::autocast::set_autocast_dtype(at::kCPU, cpuDtypeWas_);
#else
  at::autocast::set_autocast_cpu_dtype(cpuDtypeWas_);
#endif
  at::autocast::clear_cache();
}

AutocastOff::AutocastOff() {
  std::tie(cpuWas_, cudaWas_) = autocastEnabled();
  setAutocastEnabled(false, false);
}

AutocastOff::~AutocastOff() { setAutocastEnabled(cpuWas_, cudaWas_); }

at::ScalarType cpuComputeDtype(const torch::Tensor& x) {
#ifdef ROBUSTLAB_AUTOCAST_V2
  const bool on = at::autocast::is_autocast_enabled(at::kCPU);
  const auto dtype = at::autocast::get_autocast_dtype(at::kCPU);
#else
  const bool on = at::autocast::is_cpu_enabled();
  const auto dtype = at::autocast::get_autocast_cpu_dtype();
#endif
  return on && x.scalar_type() == torch::kFloat32 ? dtype : x.scalar_type();
}

void tuneAllocator() {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest allowed value on 64-bit
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

void seedEverything(uint64_t seed) { torch::manual_seed(seed); }

at::Generator makeGenerator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

namespace {

/// For a device other than the CPU, a generator of that device seeded by one draw from `gen`.
std::optional<at::Generator> deviceGenerator(at::Generator& gen, torch::Device device) {
  if (device.is_cpu()) return std::nullopt;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 6)
  uint64_t seed = 0;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
  }
  at::Generator g = at::globalContext().getAcceleratorHooksInterface(device.type()).getNewGenerator(device.index());
  g.set_current_seed(seed);
  return g;
#else
  return std::nullopt;
#endif
}

}  // namespace

torch::Tensor randUniform(at::IntArrayRef shape, at::Generator& gen, torch::Device device) {
  if (auto g = deviceGenerator(gen, device)) return torch::rand(shape, *g, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  return torch::rand(shape, gen, torch::kFloat32).to(device);
}

torch::Tensor randNormal(at::IntArrayRef shape, at::Generator& gen, torch::Device device) {
  if (auto g = deviceGenerator(gen, device)) return torch::randn(shape, *g, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  return torch::randn(shape, gen, torch::kFloat32).to(device);
}

}  // namespace robustlab
