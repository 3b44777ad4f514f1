#include "fixtures.h"

#include "framework/config/config.h"
#include "framework/toml/toml_reader.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <set>
#include <filesystem>
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
  CHECK(c.runArms().size() == 6);
  CHECK(c.runVariants().size() == 3);
  CHECK(c.runSeeds() == std::vector<int64_t>{0, 1, 2});  // the fewest seeds that give a verdict
  CHECK(c.finetune.classes == std::vector<int64_t>{5, 6, 7, 8, 9});
  CHECK(c.model.layers.size() == 6);
  const std::string dumped = c.toToml();
  const Config again = parseConfig(dumped, "dumped");
  CHECK(again.toToml() == dumped);
}

TEST_CASE("every shipped config parses, round-trips and sets up the experiment its header describes", "[config]") {
  const std::string dir = std::string(ROBUSTLAB_SOURCE_DIR) + "/experiments/configs/";
  std::vector<std::string> found;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".toml") found.push_back(e.path().filename().string());
  std::sort(found.begin(), found.end());
  // A new shipped config must be added here with what it promises.
  CHECK(found == std::vector<std::string>{"cifar10-pretrain-linf8.toml", "default.toml", "methods.toml", "robustness-axes.toml", "study.toml",
                                          "sweep-example.toml", "transfer.toml"});
  for (const auto& f : found) {
    INFO(f);
    const Config c = loadConfig(dir + f);
    CHECK(parseConfig(c.toToml(), "dumped").toToml() == c.toToml());
    for (const auto& arm : c.runArms())
      if (!arm.baseline.empty()) CHECK(arm.pretrain != "none");  // every comparison is pre-trained against a baseline
  }
  const Config transfer = loadConfig(dir + "transfer.toml");
  CHECK(transfer.runSeeds().size() >= 3);
  CHECK(transfer.data.source.source == "mnist");
  CHECK(transfer.runArms().size() == 13);
  for (const auto& [name, v] : transfer.runVariants()) {
    INFO(name);
    CHECK(v.dataSource == "fashion-mnist");
    CHECK(v.classes.empty());
  }
  // The training methods, each from scratch and after adversarial pre-training, 3 seeds, AutoAttack at
  // Linf 0.1: PGD-AT, FGSM-RS, TRADES, MART, PGD-AT with AWP, half-adversarial batches.
  const Config methods = loadConfig(dir + "methods.toml");
  CHECK(methods.runSeeds().size() >= 3);
  CHECK(methods.attack.attacks == std::vector<std::string>{"autoattack"});
  CHECK(methods.attack.eps.back() == 0.1);
  std::set<std::string> recipes;
  for (const auto& arm : methods.runArms()) {
    const StageConfig s = methods.finetuneFor(arm);
    recipes.insert(s.objective + (s.awpGamma > 0 ? "+awp" : "") + (s.advFraction < 1 ? "+half" : "") + (arm.pretrain == "none" ? "" : "+pre"));
  }
  CHECK(recipes == std::set<std::string>{"pgd", "fgsm-rs", "trades", "mart", "pgd+awp", "pgd+half", "pgd+pre", "fgsm-rs+pre", "trades+pre",
                                         "mart+pre", "pgd+awp+pre", "pgd+half+pre"});
  // Every robustness axis, each pair of arms (clean, 40% wrong labels, 10:1 imbalance) pre-trained
  // against scratch, five seeds.
  const Config axes = loadConfig(dir + "robustness-axes.toml");
  CHECK(axes.runSeeds().size() == 5);
  CHECK(axes.robustness.calibration);
  CHECK(axes.robustness.oodSources.size() == 4);
  CHECK(axes.robustness.corruptionList().size() >= 14);
  int noisy = 0, imbalanced = 0;
  for (const auto& arm : axes.runArms()) {
    noisy += axes.robustnessFor(arm).labelNoise == 0.4;
    imbalanced += axes.robustnessFor(arm).imbalance == 10;
  }
  CHECK(noisy == 2);
  CHECK(imbalanced == 2);
  const Config cifar = loadConfig(dir + "cifar10-pretrain-linf8.toml");
  CHECK(cifar.model.arch == "wrn");
  CHECK(cifar.model.wrnDepth == 28);
  CHECK(cifar.model.wrnWidth == 10);
  CHECK(cifar.data.source.source == "cifar10");
  CHECK(cifar.attack.eps.back() == Approx(8.0 / 255).epsilon(1e-15));
  CHECK(cifar.finetune.adversary.eps == Approx(8.0 / 255).epsilon(1e-15));
  CHECK(cifar.finetune.adversary.steps == 10);
  CHECK(cifar.runVariants().front().second.dataSource == "cifar100");
  CHECK(cifar.runSeeds().size() >= 3);
}

TEST_CASE("config errors name the file, the field and what was expected", "[config]") {
  SECTION("unknown key") {
    const auto p = writeConfig("unknown", "seed = 1\n[train]\nepochz = 3\n");
    REQUIRE_THROWS_WITH(loadConfig(p), Catch::StartsWith(p + ":3: unknown key 'train.epochz'; did you mean 'train.epochs'?"));
  }
  SECTION("wrong type") {
    const auto p = writeConfig("type", "[train]\nepochs = \"three\"\n");
    REQUIRE_THROWS_WITH(loadConfig(p), Catch::StartsWith(p + ":2: field 'train.epochs'") && Catch::Contains("expected an integer, got string"));
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
  SECTION("eps out of range") {
    REQUIRE_THROWS_WITH(loadConfig(writeConfig("epsneg", "[attack]\neps = [-0.1, 0.1]\n")), Catch::Contains("attack.eps") && Catch::Contains(">= 0"));
    REQUIRE_THROWS_WITH(loadConfig(writeConfig("adveps", "[finetune]\nadv_eps = -1\n")), Catch::Contains("finetune.adv_eps") && Catch::Contains("out of range"));
  }
  SECTION("arms naming unknown variants or baselines") {
    REQUIRE_THROWS_WITH(loadConfig(writeConfig("arm", "[[arms]]\nname = \"a\"\npretrain = \"simclr\"\n")),
                        Catch::Contains("arms[0].pretrain") && Catch::Contains("'simclr'") && Catch::Contains("base"));
    REQUIRE_THROWS_WITH(loadConfig(writeConfig("base", "[[arms]]\nname = \"a\"\nbaseline = \"b\"\n")), Catch::Contains("arms[0].baseline"));
    REQUIRE_THROWS_WITH(loadConfig(writeConfig("dup", "[[arms]]\nname = \"a\"\n[[arms]]\nname = \"a\"\n")), Catch::Contains("used twice"));
    REQUIRE_THROWS_WITH(loadConfig(writeConfig("var", "[pretrain.variants.x]\nmode = \"moco\"\n")),
                        Catch::Contains("pretrain.variants.x.mode") && Catch::Contains("rotation"));
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

TEST_CASE("a config round-trips when its arms leave keys to [finetune], and auto precision is resolved once", "[config]") {
  const Config c = parseConfig("precision = \"auto\"\n[[arms]]\nname = \"a\"\n[[arms]]\nname = \"b\"\nbaseline = \"a\"\nobjective = \"trades\"\n", "<test>");
  CHECK(c.arms[0].objective.empty());
  const Config d = parseConfig(c.toToml(), "<dump>");
  CHECK(d.toToml() == c.toToml());
  // The request stays "auto" in the text; what it resolved to on this machine is what runs.
  CHECK(c.precision == PrecisionChoice::kAuto);
  CHECK(c.toToml().find("precision = \"auto\"") != std::string::npos);
  CHECK(c.resolvedPrecision == resolvePrecision(PrecisionChoice::kAuto));
  REQUIRE_THROWS_WITH(parseConfig("[[arms]]\nname = \"a\"\nobjective = \"tradez\"\n", "<test>"),
                      Catch::Contains("arms[0].objective") && Catch::Contains("standard, pgd, fgsm-rs, trades, mart"));
}
