// Catch2's main, compiled once (~12 s). A run that asks for what this machine lacks (ROBUSTLAB_KERNELS
// naming a kernel path the CPU cannot run) exits 77 before any test, which CTest reports as skipped.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

namespace robustlab::test {
/// 0; 77 after one line on stderr saying what is skipped and why; 2 when ROBUSTLAB_KERNELS is not a
/// path name (tests/fixtures.cpp).
int skipCode();
}  // namespace robustlab::test

int main(int argc, char** argv) {
  if (const int code = robustlab::test::skipCode()) return code;
  return Catch::Session().run(argc, argv);
}
