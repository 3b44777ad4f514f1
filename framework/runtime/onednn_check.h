#pragma once
// A check of LibTorch's oneDNN convolutions on the CPU in use, once per process.
//
// On an AMD EPYC of family 26 (Zen 5 class), LibTorch 2.6 (Debian trixie, oneDNN 3.7.2) computes
// some fp32 convolutions wrongly with oneDNN's jit:avx512_core kernels: results off by the size of
// the output, NaN in some, for shapes as plain as a one-channel 4x4 stride-2 input gradient of a
// 28 x 40 image (BENCHMARKS.md); LibTorch 1.13 (oneDNN 2.6) on the same CPU, and oneDNN held to AVX2,
// are right. robustlab's numbers rest on those convolutions wherever its own kernels do not run, so
// every process checks a few such convolutions in fp32 against fp64 (which LibTorch computes without
// oneDNN) and, when one is off by more than fp32's bound for its length, switches oneDNN off for the
// process: LibTorch's own kernels then run, slower and right.
#include <string>

namespace robustlab {

/// Runs the check once (later calls return the first answer): the forward pass and the input gradient
/// of a few small convolutions in fp32 against fp64. When one fails, switches oneDNN off
/// (at::globalContext().setUserEnabledMkldnn(false)) and writes one line on stderr naming the case.
/// Returns whether oneDNN was switched off. Does nothing on a LibTorch without oneDNN or with it off.
bool guardOnednnConvolutions();

/// The check itself, in LibTorch's current state: empty when every case is within fp32's bound, else
/// which case failed (for tests).
std::string checkConvolutions();

/// What the check found: empty when it passed or has not run, else the line it wrote.
std::string onednnCheckFailure();

}  // namespace robustlab
