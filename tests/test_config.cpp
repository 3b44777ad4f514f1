#include "fixtures.h"

#include "experiments/config.h"
#include "framework/toml_reader.h"

#include <catch2/catch.hpp>

#include <fstream>

using namespace robustlab;

namespace {

std::string writeConfig(const std::string& name, const std::string& text) {
  const std::string path = test::tempDir("config-" + name) + "/" + name + ".toml";
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST_CASE("the embedded default config parses and round-trips through --dump-config text", "[config]") {
  const Config c = loadConfig("");
  CHECK(c.pretrain.classes == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(c.finetune.classes == std::vector<int64_t>{5, 6, 7, 8, 9});
  CHECK(c.model.layers.size() == 6);
  const std::string dumped = c.toToml();
  const Config again = parseConfig(dumped, "dumped");
  CHECK(again.toToml() == dumped);
}

TEST_CASE("config errors name the file, the field and what was expected", "[config]") {
  SECTION("unknown key") {
    const auto p = writeConfig("unknown", "[train]\nepochz = 3\n");
    REQUIRE_THROWS_WITH(loadConfig(p), Catch::Contains(p) && Catch::Contains("unknown key 'train.epochz'") && Catch::Contains("epochs"));
  }
  SECTION("wrong type") {
    const auto p = writeConfig("type", "[train]\nepochs = \"three\"\n");
    REQUIRE_THROWS_WITH(loadConfig(p), Catch::Contains(p) && Catch::Contains("train.epochs") && Catch::Contains("expected an integer"));
  }
  SECTION("negative epochs") {
    const auto p = writeConfig("negative", "[pretrain]\nepochs = -1\n");
    REQUIRE_THROWS_WITH(loadConfig(p), Catch::Contains("pretrain.epochs") && Catch::Contains("out of range"));
  }
  SECTION("malformed TOML gives file:line") {
    const auto p = writeConfig("syntax", "seed = 1\n[train\nepochs = 2\n");
    REQUIRE_THROWS_WITH(loadConfig(p), Catch::StartsWith(p + ":2:") && Catch::Contains("TOML syntax error"));
  }
  SECTION("unknown layer type") {
    const auto p = writeConfig("layer", "[[model.layers]]\ntype = \"convolution\"\nchannels = 8\n");
    REQUIRE_THROWS_WITH(loadConfig(p), Catch::Contains("model.layers[0].type") && Catch::Contains("'convolution'") && Catch::Contains("conv"));
  }
  SECTION("unknown attack and bad eps grid") {
    REQUIRE_THROWS_WITH(loadConfig(writeConfig("attack", "[attack]\nattacks = [\"pgd\", \"cw\"]\n")), Catch::Contains("unknown attack 'cw'"));
    REQUIRE_THROWS_WITH(loadConfig(writeConfig("eps", "[attack]\neps = [0.1, 0.05]\n")), Catch::Contains("strictly increasing"));
  }
  SECTION("missing file") {
    REQUIRE_THROWS_WITH(loadConfig("/nonexistent/robustlab.toml"), Catch::Contains("/nonexistent/robustlab.toml: config file not found"));
  }
}

TEST_CASE("--set overrides apply on top of the file and are validated the same way", "[config]") {
  const Config c = loadConfig("", {"finetune.epochs=3", "attack.eps=[0.1, 0.2]", "finetune.optimizer=adam", "seed=5"});
  CHECK(c.finetune.train.epochs == 3);
  CHECK(c.attack.eps == std::vector<double>{0.1, 0.2});
  CHECK(c.finetune.train.optim.name == "adam");
  CHECK(c.seed == 5);
  CHECK(c.finetune.train.seed == 5);
  REQUIRE_THROWS_WITH(loadConfig("", {"finetune.optimizer=rmsprop"}), Catch::Contains("finetune.optimizer") && Catch::Contains("sgd, adam"));
  REQUIRE_THROWS_WITH(loadConfig("", {"train.epochs=-2"}), Catch::Contains("train.epochs"));
  REQUIRE_THROWS_AS(loadConfig("", {"noequals"}), ConfigError);
}
