#pragma once
// The machine behind a number: CPU model, the instruction sets that decide which kernels run, and the
// kernel paths chosen (robustlab's own, ATen's, oneDNN's limit). Printed by `robustlab bench` and stored
// in every results file, so that a figure says which kind of CPU made it.
#include <string>
#include <utility>
#include <vector>

namespace robustlab {

class H5File;

/// What /proc/cpuinfo says of this CPU.
struct CpuInfo {
  std::string model;               ///< "model name", or "unknown"
  std::vector<std::string> flags;  ///< of avx2, fma, avx512f, avx512bw, avx512vl, avx512_bf16, amx_bf16: those present
};

/// Read once per process.
const CpuInfo& cpuInfo();

/// name -> value pairs of the machine facts that change numbers or speed: cpu_model, cpu_flags
/// (space-separated), kernel_path (robustlab's single-channel kernels), aten_cpu_capability (the
/// kernels ATen dispatches to), and aten_cpu_capability_env / onednn_max_cpu_isa when those variables
/// narrow what runs.
std::vector<std::pair<std::string, std::string>> machineFacts();

/// One line: "CPU <model>; flags <...>; kernels <path>; ATen <capability>[; ...]".
std::string machineSummary();

/// Writes machineFacts() as string attributes of `object` (usually "/").
void writeMachineFacts(H5File& f, const std::string& object);

}  // namespace robustlab
