// CIFAR-10 and CIFAR-100 readers (data/cifar.h) on files written here in the authors' binary format
// (the real files are not reachable from this machine), and a colour experiment end to end.
#include "fixtures.h"

#include "data/cifar.h"
#include "data/h5io.h"
#include "data/sources.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

using namespace robustlab;
namespace fs = std::filesystem;

namespace {

/// Image k of a generated set: class c = k % classes draws a bright row 3c in the red plane, a bright
/// column 3c in the blue plane; every other pixel is (k * 7 + i) % 251 (so planes and order are checkable).
uint8_t pixel(int64_t k, int64_t i, int64_t label) {
  const int64_t plane = i / 1024, y = (i % 1024) / 32, x = i % 32;
  if (plane == 0 && y == 3 * (label % 10)) return 250;
  if (plane == 2 && x == 3 * (label % 10)) return 240;
  return static_cast<uint8_t>((k * 7 + i) % 251);
}

/// Writes `n` records starting at image index `first`; CIFAR-100 records carry a coarse label first.
void writeBin(const std::string& path, int64_t first, int64_t n, bool hundred) {
  std::ofstream out(path, std::ios::binary);
  for (int64_t k = first; k < first + n; ++k) {
    const int64_t label = hundred ? k % 100 : k % 10;
    if (hundred) out.put(static_cast<char>(label / 5));  // coarse label
    out.put(static_cast<char>(label));
    for (int64_t i = 0; i < 3072; ++i) out.put(static_cast<char>(pixel(k, i, label)));
  }
}

std::string cifar10Dir(const std::string& name, int64_t perFile, int64_t test) {
  const std::string dir = test::tempDir(name) + "/cifar-10-batches-bin";
  fs::create_directories(dir);
  for (int b = 0; b < 5; ++b) writeBin(dir + "/data_batch_" + std::to_string(b + 1) + ".bin", b * perFile, perFile, false);
  writeBin(dir + "/test_batch.bin", 100000, test, false);
  return fs::path(dir).parent_path().string();
}

}  // namespace

TEST_CASE("CIFAR-10 binary files read as N x 3 x 32 x 32 in R, G, B plane order with their labels", "[data]") {
  const std::string dir = cifar10Dir("cifar10", 8, 6);
  const Dataset train = loadCifar(dir, "train", false), test = loadCifar(dir, "test", false);
  CHECK(train.images.sizes() == torch::IntArrayRef({40, 3, 32, 32}));
  CHECK(test.images.sizes() == torch::IntArrayRef({6, 3, 32, 32}));
  CHECK(train.numClasses == 10);
  CHECK(train.labels[13].item<int64_t>() == 3);  // image 13 of the five files in order: label 13 % 10
  CHECK(train.images[13][0][9][5].item<float>() == Approx(250 / 255.0));  // red plane, row 3 * 3
  CHECK(train.images[13][2][17][9].item<float>() == Approx(240 / 255.0));  // blue plane, column 3 * 3
  CHECK(train.images[13][1][0][1].item<float>() == Approx(((13 * 7 + 1024 + 1) % 251) / 255.0));  // green plane, row 0, column 1
  CHECK(test.labels[0].item<int64_t>() == 0);
  train.validate("cifar10 train");
  INFO("the config path: data.source = \"cifar10\" with data.dir");
  DataSourceSpec spec;
  spec.source = "cifar10";
  spec.dir = dir + "/cifar-10-batches-bin";  // the archive's own folder works too
  CHECK(torch::equal(loadSplit(spec, "train").images, train.images));
}

TEST_CASE("CIFAR-100 binary files read with their fine labels", "[data]") {
  const std::string dir = test::tempDir("cifar100") + "/cifar-100-binary";
  fs::create_directories(dir);
  writeBin(dir + "/train.bin", 0, 120, true);
  writeBin(dir + "/test.bin", 0, 20, true);
  const Dataset train = loadCifar(dir, "train", true);
  CHECK(train.images.sizes() == torch::IntArrayRef({120, 3, 32, 32}));
  CHECK(train.numClasses == 100);
  CHECK(train.labels[57].item<int64_t>() == 57);  // the fine label, not the coarse 57 / 5
  CHECK(train.images[57][0][21][0].item<float>() == Approx(250 / 255.0));  // 57 % 10 = 7: row 21
}

TEST_CASE("a truncated, mislabelled or missing CIFAR file is one error naming it", "[data]") {
  const std::string dir = cifar10Dir("cifar10-bad", 4, 4) + "/cifar-10-batches-bin";
  auto fails = [&](const std::string& expected) {
    try {
      loadCifar(dir, "train", false);
      FAIL("no error");
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find(expected) != std::string::npos);
      CHECK(msg.find('\n') == std::string::npos);
    }
  };
  fs::resize_file(dir + "/data_batch_3.bin", 4 * 3073 - 100);
  fails("data_batch_3.bin: 12192 bytes is not a whole number of 3073-byte records");
  writeBin(dir + "/data_batch_3.bin", 0, 4, false);
  {
    std::fstream f(dir + "/data_batch_2.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3073);
    f.put(static_cast<char>(17));
  }
  fails("data_batch_2.bin: label 17 out of range, expected 0..9");
  fs::remove(dir + "/data_batch_2.bin");
  fails("data_batch_2.bin: missing or unreadable CIFAR file");
  CHECK_THROWS_WITH(loadCifar(test::tempDir("cifar-empty"), "train", false), Catch::Contains("no data_batch_1.bin here"));
}

TEST_CASE("a colour CIFAR-format experiment runs end to end: pre-train, fine-tune, attack, report with colour images", "[experiment]") {
  const std::string dir = cifar10Dir("cifar-run", 40, 100);
  const std::string cfg = dir + "/cifar.toml";
  std::ofstream(cfg) << "name = \"cifar\"\nseeds = [0]\n[data]\nsource = \"cifar10\"\ndir = \"" << dir
                     << "\"\nval_fraction = 0.1\n[pretrain]\nclasses = [0, 1, 2, 3, 4]\nepochs = 2\n[pretrain.variants.clean]\n"
                        "objective = \"standard\"\n[finetune]\nclasses = [5, 6, 7, 8, 9]\nepochs = 3\nadv_steps = 2\n"
                        "[[arms]]\nname = \"scratch\"\npretrain = \"none\"\n[[arms]]\nname = \"pre\"\npretrain = \"clean\"\nbaseline = \"scratch\"\n"
                        "[attack]\nattacks = [\"fgsm\", \"pgd\"]\neps = [0, 0.03]\nsteps = 3\n";
  REQUIRE(test::shell(std::string(ROBUSTLAB_BINARY) + " run -q " + cfg + " -o " + dir + "/r.h5 >" + dir + "/out 2>&1") == 0);
  H5File f(dir + "/r.h5", H5File::Mode::kRead);
  CHECK(f.readTensor("/arms/pre/seed_0/eval/example_inputs").size(1) == 3);
  CHECK(f.readTensor("/arms/pre/seed_0/eval/attacks/pgd/examples").size(2) == 3);
  INFO("the report's gallery shows colour: its PNGs are RGB (IHDR colour type 2)");
  const std::string png = test::readFile(dir + "/r-report/figures/example-0.png");
  REQUIRE(png.size() > 26);
  CHECK(static_cast<int>(png[25]) == 2);
  INFO("the gallery names CIFAR-10's classes: the fine-tuning task's (5-9), never the pre-training's");
  const std::string html = test::readFile(dir + "/r-report/report.html");
  CHECK(html.find("automobile") == std::string::npos);
  int named = 0;
  for (const std::string name : {"dog", "frog", "horse", "ship", "truck"}) named += html.find("true " + name) != std::string::npos;
  CHECK(named > 0);
}

TEST_CASE("pre-training reads its own data set: MNIST digits, then fine-tuning on Fashion-MNIST; a shape mismatch is one line", "[experiment]") {
  const std::string dir = test::tempDir("cross-data");
  const std::string mnist = std::string(ROBUSTLAB_SOURCE_DIR) + "/data/cache/mnist";  // data/fetch_mnist.sh, run by scripts/setup.sh
  REQUIRE(fs::exists(mnist + "/train-images-idx3-ubyte.gz"));
  const std::string common = "seeds = [0]\n[data]\nsource = \"fashion-mnist\"\ntest_limit = 200\n[pretrain]\nepochs = 4\nper_class = 200\n"
                             "[finetune]\nclasses = [0, 1, 2, 3, 4]\nper_class = 30\nepochs = 3\n"
                             "[[arms]]\nname = \"scratch\"\npretrain = \"none\"\n[[arms]]\nname = \"digits\"\npretrain = \"digits\"\nbaseline = \"scratch\"\n"
                             "[attack]\nattacks = [\"fgsm\"]\neps = [0, 0.05]\n";
  std::ofstream(dir + "/cross.toml") << "name = \"cross\"\n" << common << "[pretrain.variants.digits]\nobjective = \"standard\"\ndata_source = \"idx\"\ndata_dir = \""
                                     << mnist << "\"\n";
  REQUIRE(test::shell(std::string(ROBUSTLAB_BINARY) + " run -q " + dir + "/cross.toml -o " + dir + "/r.h5 >" + dir + "/out 2>&1") == 0);
  H5File f(dir + "/r.h5", H5File::Mode::kRead);
  INFO("the pre-training's own test accuracy is on the digits (10 classes), the arms' on the clothing task");
  CHECK(f.attrDouble("/pretrain/digits/seed_0", "test_accuracy") > 0.5);
  CHECK(f.has("/comparisons/digits_vs_scratch"));

  const std::string cifar = cifar10Dir("cross-cifar", 20, 20);
  std::ofstream(dir + "/shape.toml") << "name = \"shape\"\n" << common << "[pretrain.variants.digits]\nobjective = \"standard\"\ndata_source = \"cifar10\"\ndata_dir = \""
                                     << cifar << "\"\n";
  CHECK(test::shell(std::string(ROBUSTLAB_BINARY) + " run -q " + dir + "/shape.toml -o " + dir + "/s.h5 >" + dir + "/out 2>" + dir + "/err") != 0);
  const std::string err = test::readFile(dir + "/err");
  INFO(err);
  CHECK(err.find("trained on 3 x 32 x 32 images but this task's are 1 x 28 x 28") != std::string::npos);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);
}
