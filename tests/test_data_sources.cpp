// The data source registry: a toy source registered here, in this file alone, is a valid data.source
// for configs and loads like the built-in ones.
#include "data/sources.h"
#include "framework/config/config.h"

#include <catch2/catch.hpp>

#include <algorithm>

using namespace robustlab;

namespace {

/// The toy: 2 classes of 4 x 4 grey images, class c filled with (c + 1) / 3; 6 training, 4 test images.
Dataset toyBlobs(const DataSourceSpec&, const std::string& split) {
  const int64_t n = split == "train" ? 6 : 4;
  Dataset ds;
  ds.labels = torch::arange(n, torch::kInt64).remainder(2);
  ds.images = ((ds.labels.to(torch::kFloat32) + 1) / 3).view({n, 1, 1, 1}).expand({n, 1, 4, 4}).contiguous();
  ds.numClasses = 2;
  ds.name = "toy-blobs:" + split;
  return ds;
}

const DataSourceRegistration kToy("toy-blobs", toyBlobs);

void registerTwice() { DataSourceRegistration again("toy-blobs", toyBlobs); }

}  // namespace

TEST_CASE("a data source registered in a test loads through loadSplit and is a valid data.source", "[data]") {
  const auto names = dataSourceNames();
  CHECK(std::find(names.begin(), names.end(), "toy-blobs") != names.end());
  CHECK(names.front() == "fashion-mnist");  // the built-in ones first, in their order
  DataSourceSpec spec;
  spec.source = "toy-blobs";
  const Dataset test = loadSplit(spec, "test");
  CHECK(test.size() == 4);
  CHECK(torch::equal(test.sourceIndex, torch::arange(4, torch::kInt64)));
  CHECK(test.images[1].max().item<float>() == Approx(2.0 / 3));
  const Config c = parseConfig("[data]\nsource = \"toy-blobs\"\n", "<test>");
  CHECK(c.data.source.source == "toy-blobs");
  CHECK_THROWS_WITH(parseConfig("[data]\nsource = \"toy-blob\"\n", "<test>"), Catch::Contains("toy-blobs"));
  CHECK_THROWS_WITH(registerTwice(), Catch::Contains("registered twice"));
}
