#include "fixtures.h"

#include "data/hdf5_dataset.h"
#include "data/idx.h"
#include "data/sources.h"
#include "data/tasks.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

using namespace robustlab;
namespace fs = std::filesystem;

namespace {

std::string fashionFile(const std::string& stem) { return std::string(kFashionMnistDir) + "/" + stem + ".gz"; }

void writeBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

}  // namespace

TEST_CASE("IDX reader loads real Fashion-MNIST with the right shapes and labels", "[data]") {
  const auto images = readIdx(fashionFile("train-images-idx3-ubyte"));
  REQUIRE(images.sizes() == torch::IntArrayRef({60000, 28, 28}));
  const auto labels = readIdx(fashionFile("train-labels-idx1-ubyte"));
  REQUIRE(labels.sizes() == torch::IntArrayRef({60000}));
  // Fashion-MNIST is balanced: 6000 of each class.
  const auto counts = torch::bincount(labels.to(torch::kInt64));
  CHECK(counts.size(0) == 10);
  CHECK(counts.min().item<int64_t>() == 6000);
  const Dataset test = loadSplit(DataSourceSpec{}, "test");
  CHECK(test.size() == 10000);
  CHECK(test.images.min().item<float>() >= 0.f);
  CHECK(test.images.max().item<float>() <= 1.f);
}

TEST_CASE("IDX round trip through writeIdxGz", "[data]") {
  const auto dir = test::tempDir("idx-roundtrip");
  auto t = torch::randint(0, 256, {5, 3, 4}, torch::kInt64).to(torch::kUInt8);
  writeIdxGz(dir + "/x.gz", t);
  CHECK(torch::equal(readIdx(dir + "/x.gz"), t));
}

TEST_CASE("truncated, wrong-magic and missing IDX files give one clear error naming the file", "[data]") {
  const auto dir = test::tempDir("idx-bad");
  // A real file cut short: header intact, pixels missing.
  auto images = readIdx(fashionFile("t10k-images-idx3-ubyte")).slice(0, 0, 10);
  writeIdxGz(dir + "/full.gz", images);
  {
    std::ifstream in(dir + "/full.gz", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Uncompressed truncated copy: 16-byte header + half the pixels.
    auto raw = images.contiguous();
    std::string header = {0, 0, 8, 3, 0, 0, 0, 10, 0, 0, 0, 28, 0, 0, 0, 28};
    writeBytes(dir + "/truncated", header + std::string(reinterpret_cast<const char*>(raw.data_ptr<uint8_t>()), 3920));
  }
  REQUIRE_THROWS_WITH(readIdx(dir + "/truncated"), Catch::Contains(dir + "/truncated") && Catch::Contains("truncated") &&
                                                        Catch::Contains("7840"));
  writeBytes(dir + "/magic", std::string{0, 0, 9, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 42});
  REQUIRE_THROWS_WITH(readIdx(dir + "/magic"), Catch::Contains("wrong magic number 0x00000903") && Catch::Contains(dir + "/magic"));
  writeBytes(dir + "/empty", "");
  REQUIRE_THROWS_WITH(readIdx(dir + "/empty"), Catch::Contains("truncated"));
  REQUIRE_THROWS_WITH(readIdx(dir + "/nope.gz"), Catch::Contains(dir + "/nope.gz") && Catch::Contains("not found"));
  REQUIRE_THROWS_WITH(loadIdxDirectory(dir + "/no-such-dir", "train"), Catch::Contains("data directory not found"));
  // A directory with images but labels of another count.
  writeIdxGz(dir + "/train-images-idx3-ubyte.gz", images);
  writeIdxGz(dir + "/train-labels-idx1-ubyte.gz", torch::zeros({7}, torch::kUInt8));
  REQUIRE_THROWS_WITH(loadIdxDirectory(dir, "train"), Catch::Contains("7 labels for 10 images"));
}

TEST_CASE("HDF5 dataset format round-trips and rejects corrupt files", "[data]") {
  const auto dir = test::tempDir("h5ds");
  Dataset d = test::fashionTest().head(50);
  saveHdf5Dataset(dir + "/d.h5", d);
  const Dataset back = loadHdf5Dataset(dir + "/d.h5");
  CHECK(torch::equal(back.images, d.images));
  CHECK(torch::equal(back.labels, d.labels));
  CHECK(back.numClasses == 10);
  writeBytes(dir + "/corrupt.h5", "this is not an HDF5 file at all");
  REQUIRE_THROWS_WITH(loadHdf5Dataset(dir + "/corrupt.h5"), Catch::Contains(dir + "/corrupt.h5") && Catch::Contains("not an HDF5 file"));
  // A truncated copy of a valid file.
  {
    std::ifstream in(dir + "/d.h5", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    writeBytes(dir + "/cut.h5", bytes.substr(0, bytes.size() / 2));
  }
  REQUIRE_THROWS_WITH(loadHdf5Dataset(dir + "/cut.h5"), Catch::Contains(dir + "/cut.h5"));
}

TEST_CASE("class subsets relabel in the listed order and budgets are per class", "[data]") {
  const Dataset& d = test::fashionTrain();
  const Dataset sub = selectClasses(d, {7, 3});
  REQUIRE(sub.numClasses == 2);
  // Every kept example's original label maps 7 -> 0, 3 -> 1.
  const auto orig = d.labels.index_select(0, (d.labels.eq(7) | d.labels.eq(3)).nonzero().squeeze(1));
  CHECK(torch::equal(sub.labels, orig.eq(3).to(torch::kInt64)));
  const Dataset budget = limitPerClass(sub, 25, 5);
  CHECK(budget.size() == 50);
  CHECK(torch::bincount(budget.labels).eq(25).all().item<bool>());
  // Same seed, same subset; another seed, another subset.
  CHECK(torch::equal(limitPerClass(sub, 25, 5).images, budget.images));
  CHECK_FALSE(torch::equal(limitPerClass(sub, 25, 6).images, budget.images));
  REQUIRE_THROWS_WITH(selectClasses(d, {1, 1}), Catch::Contains("listed twice"));
  REQUIRE_THROWS_WITH(selectClasses(d, {10}), Catch::Contains("out of range"));
}

TEST_CASE("validation split is stratified, disjoint and deterministic", "[data]") {
  const Dataset& d = test::fashionTrain();
  auto [train, val] = splitValidation(d, 0.1, 3);
  CHECK(train.size() + val.size() == d.size());
  const auto perClass = torch::bincount(val.labels, {}, 10);
  const auto total = torch::bincount(d.labels, {}, 10);
  CHECK((perClass.to(torch::kFloat64) - 0.1 * total.to(torch::kFloat64)).abs().max().item<double>() <= 0.5);
  auto [train2, val2] = splitValidation(d, 0.1, 3);
  CHECK(torch::equal(val.images, val2.images));
  // Disjoint: no validation image also appears in the training part (images are distinct here).
  const auto vSum = val.images.flatten(1).sum(1), tSum = train.images.flatten(1).sum(1);
  CHECK(torch::isin(vSum, tSum).sum().item<int64_t>() < val.size() / 20);
  REQUIRE_THROWS_WITH(splitValidation(d, 1.0, 0), Catch::Contains("val_fraction"));
}
