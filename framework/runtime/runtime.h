#pragma once
// Process-wide runtime choices: device, thread count, seeding.
#include <torch/types.h>

#include <cstdint>
#include <string>

namespace robustlab {

/// What a config asks for; resolved once per process by resolveDevice.
enum class DeviceChoice { kAuto, kCpu, kCuda };
DeviceChoice parseDeviceChoice(const std::string& name);  ///< auto | cpu | cuda; throws listing them
std::string deviceChoiceName(DeviceChoice d);
/// kAuto picks CUDA when available, else CPU. Throws std::invalid_argument on a CUDA request without a
/// CUDA device.
torch::Device resolveDevice(DeviceChoice d);
torch::Device resolveDevice(const std::string& name);
/// Waits for the work queued on a CUDA device (timings there are of finished work); no-op on CPU.
void synchronizeDevice(torch::Device device);

/// Threads used by default on CPU. Measured on the 2-vCPU development machine: the small CNN trains
/// faster in fp32 with 1 intra-op thread than with 2 (see BENCHMARKS.md), so 1 is the default.
inline constexpr int kDefaultCpuThreads = 1;

/// Sets LibTorch's intra-op thread count (n <= 0 means kDefaultCpuThreads) and how many chunks the
/// graph-free attack gradient splits a CPU batch into, each on its own single-threaded core
/// (framework/runtime/chunks.h; workers <= 0 means as many as the threads). Returns the thread count.
int configureThreads(int n, int workers = 0);

/// Cores this process may run on: its affinity mask (which containers and taskset narrow), else
/// std::thread::hardware_concurrency(); at least 1.
int usableCores();

/// Threads for attack evaluation when the config leaves it to us: all cores up to 2. Measured here:
/// PGD-20 on 1000 images ran 1.47x faster with 2 threads than 1, while training ran 1.7x slower.
int defaultEvalThreads();

/// Keeps freed tensor memory in the process instead of handing it back to the kernel after every
/// batch. With glibc's defaults each activation tensor of a batch (a few MiB) is mmap'ed and unmapped,
/// or the heap top trimmed, once per step, and every reuse pays page faults: measured here, PGD-10
/// adversarial training ran 1.5x faster with the mmap threshold at 32 MiB and the trim threshold at
/// 1 GiB (BENCHMARKS.md). Peak memory is what the tensors need either way. No-op off glibc.
void tuneAllocator();

/// Seeds LibTorch's global generators (initialisation, dropout); data order and attack noise use
/// explicit generators derived from the same seed.
void seedEverything(uint64_t seed);

/// Arithmetic precision of the forward and backward passes.
enum class Precision { kFp32, kBf16 };
/// "fp32" | "bf16" | "auto": bf16 where the hardware computes it natively (a CPU with AVX-512 BF16
/// or AMX, unless onednnLacksBf16(), or a CUDA device), else fp32 (BENCHMARKS.md has the measurements behind it). Throws
/// std::invalid_argument on anything else.
Precision parsePrecision(const std::string& name);
/// What a config asks for: a precision, or "auto", resolved once (resolvePrecision) and stored
/// resolved beside the request, so results and cache keys say what ran.
enum class PrecisionChoice { kFp32, kBf16, kAuto };
PrecisionChoice parsePrecisionChoice(const std::string& name);  ///< fp32 | bf16 | auto; throws listing them
std::string precisionChoiceName(PrecisionChoice c);
Precision resolvePrecision(PrecisionChoice c);
/// Whether /proc/cpuinfo lists avx512_bf16 or amx_bf16.
bool cpuHasNativeBf16();
std::string precisionName(Precision p);

/// Training threads when the config leaves it to us. Measured here (BENCHMARKS.md): in fp32 the small
/// CNN trains faster on 1 thread than on 2 (clean and adversarial); in bf16, 2 threads win (PGD-10
/// adversarial training 1.5x), so bf16 takes all cores up to 2.
int defaultTrainThreads(Precision p);

/// Whether ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) holds oneDNN below AVX-512 (AVX2, say): its bf16
/// kernels then do not exist, but LibTorch, which decides from the CPU itself, still sends bf16
/// convolutions and matrix products to oneDNN, which fails ("could not create a primitive descriptor").
bool onednnLacksBf16();

/// Turns LibTorch autocast on (bf16) for the current thread on CPU and CUDA, and restores the
/// previous state on destruction. With kFp32 it does nothing. Where onednnLacksBf16(), oneDNN is also
/// switched off process-wide while the guard lives, so that bf16 runs LibTorch's own kernels: what a CPU
/// without AVX-512 runs (and, with ATEN_CPU_CAPABILITY=avx2, the way to run that on an AVX-512 CPU).
class PrecisionGuard {
 public:
  explicit PrecisionGuard(Precision p);
  ~PrecisionGuard();
  PrecisionGuard(const PrecisionGuard&) = delete;
  PrecisionGuard& operator=(const PrecisionGuard&) = delete;

 private:
  bool active_ = false, cpuWas_ = false, cudaWas_ = false, mkldnnOff_ = false;
  at::ScalarType cpuDtypeWas_ = at::kBFloat16;
};

/// Switches CPU and CUDA autocast off for its scope and restores them after, without touching
/// PrecisionGuard's oneDNN switch: a backward pass inside a PrecisionGuard runs as it would outside
/// one (autograd's backward is not autocast), on what the guard let oneDNN compute.
class AutocastOff {
 public:
  AutocastOff();
  ~AutocastOff();
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;

 private:
  bool cpuWas_ = false, cudaWas_ = false;
};

/// The dtype a CPU operation on `x` computes in: the autocast dtype when CPU autocast is on and `x`
/// is fp32, else x's own dtype.
at::ScalarType cpuComputeDtype(const torch::Tensor& x);

/// A CPU generator with a given seed: the stream every random draw of an attack or a training run
/// follows (randUniform, randNormal).
at::Generator makeGenerator(uint64_t seed);

/// Noise of `shape` (fp32) on `device` from the stream `gen` (a makeGenerator generator): U[0, 1) and
/// N(0, 1). On CPU drawn from `gen` itself, so CPU runs reproduce bit for bit. On a CUDA device (with
/// LibTorch >= 2.6) drawn there by a fresh device generator that one draw from `gen` seeds: the same
/// seed gives the same noise on the same GPU and LibTorch, but not the CPU's noise. Drawing 10,000
/// images' noise on the CPU and copying it over took longer than the PGD-20 attack itself on an H200
/// (BENCHMARKS.md). Older LibTorch: drawn on CPU and copied.
torch::Tensor randUniform(at::IntArrayRef shape, at::Generator& gen, torch::Device device);
torch::Tensor randNormal(at::IntArrayRef shape, at::Generator& gen, torch::Device device);

}  // namespace robustlab
