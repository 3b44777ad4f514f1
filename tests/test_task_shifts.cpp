// Label corruption and class imbalance of a training set, on real Fashion-MNIST.
#include "fixtures.h"

#include "data/task_shifts.h"

#include <catch2/catch.hpp>

using namespace robustlab;

TEST_CASE("label noise changes exactly the seeded share of labels, each to another class; flip maps each class to one", "[data]") {
  const Dataset& train = test::fashionTrain();  // 6,000 images, 10 classes
  for (const auto kind : {LabelNoise::kUniform, LabelNoise::kFlip}) {
    const auto [noisy, mask] = corruptLabels(train, 0.3, kind, 7);
    CHECK(mask.sum().item<int64_t>() == 1800);
    CHECK(torch::equal(noisy.labels.ne(train.labels), mask));  // every chosen label moved, no other did
    CHECK(torch::equal(noisy.images, train.images));
    const auto again = corruptLabels(train, 0.3, kind, 7);
    CHECK(torch::equal(again.first.labels, noisy.labels));
    CHECK_FALSE(torch::equal(corruptLabels(train, 0.3, kind, 8).first.labels, noisy.labels));
    const auto from = train.labels.masked_select(mask), to = noisy.labels.masked_select(mask);
    for (int64_t c = 0; c < 10; ++c) {
      const auto targets = std::get<0>(at::_unique(to.masked_select(from.eq(c))));
      if (kind == LabelNoise::kFlip) CHECK(targets.numel() == 1);
      else CHECK(targets.numel() == 9);  // 180 draws over 9 classes reach all of them
    }
  }
  CHECK(corruptLabels(train, 0.0, LabelNoise::kUniform, 1).second.sum().item<int64_t>() == 0);
  CHECK_THROWS_WITH(corruptLabels(train, 1.5, LabelNoise::kUniform, 1), Catch::Contains("label_noise"));
  CHECK_THROWS_WITH(parseLabelNoise("sym"), Catch::Contains("uniform or flip"));
}

TEST_CASE("imbalance keeps the stated geometric counts per class, seeded", "[data]") {
  const Dataset& train = test::fashionTrain();
  const int64_t nMax = torch::bincount(train.labels, {}, 10).min().item<int64_t>();
  const auto counts = imbalancedCounts(nMax, 10, 10.0);
  CHECK(counts.front() == nMax);
  CHECK(counts.back() == std::llround(nMax / 10.0));  // largest / smallest = rho
  const Dataset tail = imbalance(train, 10.0, 3);
  const auto got = torch::bincount(tail.labels, {}, 10);
  for (int64_t c = 0; c < 10; ++c) CHECK(got[c].item<int64_t>() == counts[static_cast<size_t>(c)]);
  CHECK(torch::equal(imbalance(train, 10.0, 3).images, tail.images));
  CHECK(torch::bincount(imbalance(train, 1.0, 3).labels, {}, 10).eq(nMax).all().item<bool>());
  CHECK_THROWS_WITH(imbalance(train, 0.5, 3), Catch::Contains("imbalance"));
}
