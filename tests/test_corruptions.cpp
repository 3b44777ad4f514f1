// The common-corruption suite on real Fashion-MNIST: every registered corruption stays in [0, 1], is
// the same for the same seed and changes the images more as its severity grows; a toy corruption
// registered here, in this file alone, runs like the built-in ones.
#include "attacks/corruptions/corruptions.h"

#include "fixtures.h"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace robustlab;

namespace {

const CorruptionRegistration kToy("toy_invert", "toy", "1 - x, blended in by severity / 5",
                                  [](const torch::Tensor& x, int s, at::Generator&) { return x + (1 - 2 * x) * (s / 5.0); });

}  // namespace

TEST_CASE("every corruption stays in [0,1], is seeded, and changes the images more with each severity", "[data]") {
  const auto x = test::fashionTest().images.slice(0, 0, 200);
  const auto names = corruptionNames();
  CHECK(names.size() >= 15);
  CHECK(std::find(names.begin(), names.end(), "toy_invert") != names.end());
  for (const auto& name : names) {
    INFO(name);
    double previous = 0;
    for (int s = 1; s <= 5; ++s) {
      INFO("severity " << s);
      const auto y = corrupt(name, x, s, 11);
      REQUIRE(y.sizes() == x.sizes());
      CHECK(y.min().item<float>() >= 0.0f);
      CHECK(y.max().item<float>() <= 1.0f);
      CHECK(torch::equal(y, corrupt(name, x, s, 11)));
      const double change = (y - x).abs().mean().item<double>();
      CHECK(change > previous);
      previous = change;
    }
  }
  // The random ones draw from the seed.
  for (const std::string name : {"gaussian_noise", "impulse_noise", "rotate", "translate", "fog", "stripe", "zigzag", "motion_blur"})
    CHECK_FALSE(torch::equal(corrupt(name, x, 3, 11), corrupt(name, x, 3, 12)));
  CHECK_THROWS_WITH(corrupt("fog", x, 6, 1), Catch::Contains("1..5"));
  CHECK_THROWS_WITH(corrupt("frost", x, 1, 1), Catch::Contains("zigzag"));
}
