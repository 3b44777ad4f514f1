#include "framework/runtime/cpu_info.h"

#include "framework/runtime/onednn_check.h"

#include "data/h5io.h"
#include "framework/models/kernels/conv_kernels.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace robustlab {
namespace {

/// The flags that decide kernel choices here (robustlab's, ATen's, oneDNN's), in this order.
constexpr const char* kFlagsThatMatter[] = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_bf16"};

CpuInfo readCpuInfo() {
  CpuInfo info{"unknown", {}};
  std::ifstream in("/proc/cpuinfo");
  std::string flagsLine;
  for (std::string line; std::getline(in, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && info.model == "unknown") info.model = value;
    if (key == "flags" && flagsLine.empty()) flagsLine = " " + value + " ";
  }
  for (const char* f : kFlagsThatMatter)
    if (flagsLine.find(" " + std::string(f) + " ") != std::string::npos) info.flags.emplace_back(f);
  return info;
}

/// The kernels ATen dispatches to, decided as ATen decides it (its own function is not exported by
/// LibTorch 1.13): ATEN_CPU_CAPABILITY when it names one, else avx512 with AVX-512 VL, BW, DQ and FMA,
/// avx2 with AVX2 and FMA, else default.
std::string atenCapability() {
  if (const char* v = std::getenv("ATEN_CPU_CAPABILITY")) {
    const std::string env = v;
    if (env == "default" || env == "avx2" || env == "avx512") return env;
  }
#if defined(__x86_64__) && defined(__GNUC__)
  const bool fma = __builtin_cpu_supports("fma");
  if (fma && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")) return "avx512";
  if (fma && __builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "default";
}

}  // namespace

const CpuInfo& cpuInfo() {
  static const CpuInfo info = readCpuInfo();
  return info;
}

std::vector<std::pair<std::string, std::string>> machineFacts() {
  const CpuInfo& c = cpuInfo();
  std::string flags;
  for (const auto& f : c.flags) flags += (flags.empty() ? "" : " ") + f;
  std::vector<std::pair<std::string, std::string>> facts{
      {"cpu_model", c.model}, {"cpu_flags", flags}, {"kernel_path", kernelPathName(kernelPath())}, {"aten_cpu_capability", atenCapability()}};
  if (const char* v = std::getenv("ATEN_CPU_CAPABILITY"); v && *v) facts.emplace_back("aten_cpu_capability_env", v);
  if (const char* v = std::getenv("ONEDNN_MAX_CPU_ISA"); v && *v) facts.emplace_back("onednn_max_cpu_isa", v);
  if (const char* v = std::getenv("ROBUSTLAB_DIRECT_CONV"); v && *v) facts.emplace_back("robustlab_direct_conv", v);
  if (guardOnednnConvolutions()) facts.emplace_back("onednn", "off: its fp32 convolutions failed robustlab's check on this CPU");
  return facts;
}

std::string machineSummary() {
  const auto facts = machineFacts();
  std::ostringstream s;
  s << "CPU " << facts[0].second << "; flags " << (facts[1].second.empty() ? "(none of avx2 fma avx512 amx)" : facts[1].second) << "; kernels "
    << facts[2].second << "; ATen " << facts[3].second;
  for (size_t i = 4; i < facts.size(); ++i) s << "; " << facts[i].first << "=" << facts[i].second;
  return s.str();
}

void writeMachineFacts(H5File& f, const std::string& object) {
  for (const auto& [key, value] : machineFacts()) f.setAttr(object, key, value);
}

}  // namespace robustlab
