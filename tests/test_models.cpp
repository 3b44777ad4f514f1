#include "fixtures.h"

#include "data/h5io.h"
#include "framework/checkpoint.h"
#include "framework/runtime.h"

#include <catch2/catch.hpp>

#include <fstream>

using namespace robustlab;

TEST_CASE("model families build from specs and give one logit per class", "[models]") {
  const auto x = test::fashionTest().images.slice(0, 0, 4);
  ModelSpec cnn = test::smallCnn(10, true);
  Classifier a(cnn);
  CHECK(a->forward(x).sizes() == torch::IntArrayRef({4, 10}));
  CHECK(a->featureDim() == 100);
  ModelSpec mlp;
  mlp.arch = "mlp";
  mlp.hidden = {64, 32};
  mlp.numClasses = 3;
  CHECK(Classifier(mlp)->forward(x).sizes() == torch::IntArrayRef({4, 3}));
  ModelSpec res;
  res.arch = "resnet";
  res.resnetWidth = 8;
  res.resnetBlocks = {1, 1};
  CHECK(Classifier(res)->forward(x).sizes() == torch::IntArrayRef({4, 10}));
  ModelSpec bad = cnn;
  bad.layers[0].type = "convolution";
  REQUIRE_THROWS_WITH(Classifier(bad), Catch::Contains("unknown layer type 'convolution'"));
}

TEST_CASE("checkpoints round-trip weights, spec and config", "[models]") {
  const auto dir = test::tempDir("ckpt");
  seedEverything(1);
  Classifier a(test::smallCnn(10, true));
  saveCheckpoint(dir + "/a.h5", *a, "seed = 1\n");
  Classifier b = loadClassifier(dir + "/a.h5");
  a->eval();
  b->eval();
  const auto x = test::fashionTest().images.slice(0, 0, 16);
  CHECK(torch::equal(a->forward(x), b->forward(x)));
  CHECK(readCheckpointConfig(dir + "/a.h5") == "seed = 1\n");
  CHECK(readCheckpointSpec(dir + "/a.h5").toToml() == a->spec().toToml());
}

TEST_CASE("loading a checkpoint into another architecture is a clear error, not a crash", "[models]") {
  const auto dir = test::tempDir("ckpt-arch");
  Classifier a(test::smallCnn());
  saveCheckpoint(dir + "/a.h5", *a, "");
  ModelSpec wider = test::smallCnn();
  wider.layers[0].channels = 32;
  Classifier b(wider);
  REQUIRE_THROWS_WITH(loadWeights(dir + "/a.h5", *b, false), Catch::Contains(dir + "/a.h5") && Catch::Contains("architecture differs"));
  // Same backbone, another head size: full load names the head tensor; backbone-only load works.
  Classifier c(test::smallCnn(5));
  REQUIRE_THROWS_WITH(loadWeights(dir + "/a.h5", *c, false), Catch::Contains("head.weight") && Catch::Contains("shape"));
  REQUIRE_NOTHROW(loadWeights(dir + "/a.h5", *c, true));
  // Not a checkpoint at all.
  std::ofstream(dir + "/junk.h5") << "junk";
  REQUIRE_THROWS_WITH(loadClassifier(dir + "/junk.h5"), Catch::Contains("not an HDF5 file"));
  H5File(dir + "/other.h5", H5File::Mode::kTruncate).setAttr("/", "format", std::string("something-else"));
  REQUIRE_THROWS_WITH(loadClassifier(dir + "/other.h5"), Catch::Contains("not a robustlab checkpoint"));
}

TEST_CASE("a run killed while writing leaves the previous checkpoint intact", "[models]") {
  const auto dir = test::tempDir("ckpt-atomic");
  Classifier a(test::smallCnn());
  saveCheckpoint(dir + "/a.h5", *a, "first");
  // A writer that dies halfway (an exception mid-write stands in for the kill).
  REQUIRE_THROWS(saveCheckpoint(dir + "/a.h5", *a, "second", [](H5File&) { throw std::runtime_error("killed"); }));
  CHECK(readCheckpointConfig(dir + "/a.h5") == "first");
  CHECK_FALSE(std::filesystem::exists(dir + "/a.h5.tmp"));
}
