// "From scratch" for a model brought from PyTorch: a stage without a pre-trained backbone starts a
// TorchScript model from a fresh initialisation (PyTorch's own rules per layer type), never from the
// weights the file holds; an arm may start from the file's weights only when it says so.
// LibTorch's headers first: their glog CHECK must not replace Catch's, which comes after them.
#include "fixtures.h"

#include "data/h5io.h"
#include "framework/models/torchscript.h"
#include "framework/runtime/progress.h"
#include "framework/runtime/runtime.h"
#include "framework/training/trainer.h"

#include <catch2/catch.hpp>

#include "tiny_experiment.h"
#include "torchscript_models.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

using namespace robustlab;
using namespace robustlab::test;

namespace {

ScriptModel loadScript(const std::string& name, const std::string& cut = "") {
  return ScriptModel(readFile(scriptDir() + "/" + name), name, cut, 0.0, 1.0);
}

std::map<std::string, torch::Tensor> tensorsOf(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value();
  for (const auto& b : m.named_buffers()) out[b.key()] = b.value();
  return out;
}

/// `t`'s values look like independent draws of U(-bound, bound): none outside, and the sample mean and
/// variance within 6 standard errors of the distribution's (mean 0, variance b^2/3; the variance's
/// standard error from the fourth moment b^4/5).
void checkUniform(const torch::Tensor& t, double bound) {
  const auto x = t.to(torch::kFloat64).flatten();
  const double n = static_cast<double>(x.numel());
  INFO("bound " << bound << ", n " << n);
  CHECK(x.abs().max().item<double>() <= bound);
  CHECK(std::abs(x.mean().item<double>()) <= 6 * bound / std::sqrt(3 * n));
  const double var = x.var(/*unbiased=*/false).item<double>(), want = bound * bound / 3;
  CHECK(std::abs(var - want) <= 6 * bound * bound * std::sqrt(1.0 / 5 - 1.0 / 9) / std::sqrt(n));
}

}  // namespace

TEST_CASE("a TorchScript model started from scratch gets PyTorch's own initialisation, bit for bit and by its statistics", "[torchscript]") {
  ScriptModel m = loadScript("init_zoo.pt");
  CHECK(m->modulesWithoutInitRule().empty());
  seedEverything(5);
  m->initialiseFresh();
  auto got = tensorsOf(*m);
  INFO("every tensor equals what torch.manual_seed(5); InitZoo() gives in PyTorch");
  H5File ref(scriptDir() + "/init_zoo_fresh_5.h5", H5File::Mode::kRead);
  for (const auto& [name, t] : got) {
    INFO(name);
    if (name.find("num_batches_tracked") != std::string::npos) {
      CHECK(t.item<int64_t>() == 0);
      continue;
    }
    REQUIRE(ref.has("/" + name));
    CHECK(torch::equal(t, ref.readTensor("/" + name).to(t.dtype()).reshape(t.sizes())));
  }

  INFO("the rules, checked on their own: uniform bounds 1/sqrt(fan_in) for weights and biases, N(0,1) embeddings, ones and zeros for norms");
  checkUniform(got["conv.weight"], 1 / std::sqrt(25.0));
  checkUniform(got["conv.bias"], 1 / std::sqrt(25.0));
  checkUniform(got["conv1d.weight"], 1 / std::sqrt(12.0));
  checkUniform(got["deconv.weight"], 1 / std::sqrt(8 * 9.0));  // ConvTranspose: fan_in from weight.size(1) = out channels
  checkUniform(got["fc1.weight"], 1 / std::sqrt(1024.0));
  checkUniform(got["fc1.bias"], 1 / std::sqrt(1024.0));
  checkUniform(got["fc2.weight"], 1 / std::sqrt(256.0));
  const auto emb = got["emb.weight"].to(torch::kFloat64);
  CHECK(torch::equal(emb[7], torch::zeros({64}, torch::kFloat64)));  // padding_idx
  const auto rows = torch::cat({emb.slice(0, 0, 7), emb.slice(0, 8)}).flatten();
  const double n = static_cast<double>(rows.numel());
  CHECK(std::abs(rows.mean().item<double>()) <= 6 / std::sqrt(n));
  CHECK(std::abs(rows.var(false).item<double>() - 1) <= 6 * std::sqrt(2 / n));
  for (const char* ones : {"bn.weight", "bn.running_var", "gn.weight", "ln.weight"}) CHECK(torch::all(got[ones] == 1).item<bool>());
  for (const char* zeros : {"bn.bias", "bn.running_mean", "gn.bias", "ln.bias"}) CHECK(torch::all(got[zeros] == 0).item<bool>());
  CHECK(got["prelu.weight"].item<float>() == 0.25f);

  INFO("one seed reproduces, another differs (and is PyTorch's for that seed)");
  ScriptModel again = loadScript("init_zoo.pt"), other = loadScript("init_zoo.pt");
  seedEverything(5);
  again->initialiseFresh();
  seedEverything(6);
  other->initialiseFresh();
  H5File ref6(scriptDir() + "/init_zoo_fresh_6.h5", H5File::Mode::kRead);
  auto same = tensorsOf(*again), six = tensorsOf(*other);
  for (const auto& [name, t] : got) CHECK(torch::equal(t, same[name]));
  CHECK_FALSE(torch::equal(got["fc1.weight"], six["fc1.weight"]));
  CHECK(torch::equal(six["fc1.weight"], ref6.readTensor("/fc1.weight")));

  INFO("a traced model (its types mangled, padding_idx not recorded) gets the same weights, the padding row aside");
  ScriptModel traced = loadScript("init_zoo_traced.pt");
  seedEverything(5);
  traced->initialiseFresh();
  auto tr = tensorsOf(*traced);
  for (const auto& [name, t] : got) {
    INFO(name);
    if (name == "emb.weight") CHECK(torch::equal(tr[name].slice(0, 8), t.slice(0, 8)));
    else CHECK(torch::equal(tr[name], t));
  }
}

TEST_CASE("a TorchScript layer type with parameters and no known rule: the error names it and the way out", "[torchscript]") {
  ScriptModel m = loadScript("custom.pt");
  const auto unknown = m->modulesWithoutInitRule();
  REQUIRE(unknown.size() == 1);
  CHECK(unknown[0] == "(the top-level module) of type Custom");
  try {
    m->initialiseFresh();
    FAIL("no error");
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    CHECK(msg.find("(the top-level module) of type Custom holds parameters") != std::string::npos);
    CHECK(msg.find("model.torchscript_init") != std::string::npos);
  }
  INFO("model.torchscript_init: the untrained model's weights, taken as they are");
  ScriptModel zoo = loadScript("init_zoo.pt");
  zoo->copyWeightsFrom(readFile(scriptDir() + "/init_zoo_fresh.pt"), "init_zoo_fresh.pt");
  ScriptModel fresh = loadScript("init_zoo_fresh.pt");
  auto a = tensorsOf(*zoo), b = tensorsOf(*fresh);
  for (const auto& [name, t] : a) CHECK(torch::equal(t, b[name]));
  CHECK_THROWS_WITH(zoo->copyWeightsFrom(readFile(scriptDir() + "/custom.pt"), "custom.pt"),
                    Catch::Contains("model.torchscript_init: custom.pt has no tensor 'conv.weight'"));
}

TEST_CASE("a trained TorchScript classifier started from scratch is at chance; its own weights are not", "[torchscript]") {
  const Dataset& test = fashionTest();
  ModelSpec s = scriptSpec("traced");
  s.cut = "head";
  seedEverything(3);
  Classifier trained(s);
  const double own = accuracy(*trained, test, torch::kCPU);
  seedEverything(3);
  Classifier fresh(s);
  const std::string how = fresh->initialiseFresh();
  CHECK(how.find("PyTorch's reset_parameters()") != std::string::npos);
  const double scratch = accuracy(*fresh, test, torch::kCPU);
  INFO("the file's weights " << own << ", from scratch " << scratch << " (10 classes)");
  CHECK(own > 0.7);
  CHECK(scratch < 0.25);
  INFO("the head (the cut layer's weights) is fresh too");
  CHECK_FALSE(torch::equal(fresh->head()->weight, trained->head()->weight));
}

TEST_CASE("run: a trained TorchScript backbone against adversarial training from scratch gives two different arms", "[torchscript]") {
  Progress::setQuiet(true);
  const auto dir = tempDir("torchscript-scratch-run");
  const std::string config = "name = \"ts\"\nseeds = [0]\n[data]\ntest_limit = 300\n[model]\narch = \"torchscript\"\ntorchscript = \"" +
                             scriptDir() + "/traced.pt\"\ncut = \"head\"\n[finetune]\nclasses = [5, 6, 7, 8, 9]\nper_class = 40\nepochs = 2\n"
                             "lr = 0.05\nadv_steps = 3\nobjective = \"pgd\"\n[[arms]]\nname = \"scratch-adv\"\npretrain = \"none\"\n"
                             "[[arms]]\nname = \"backbone+adv-ft\"\npretrain = \"torchscript\"\nbaseline = \"scratch-adv\"\n"
                             "[attack]\nattacks = [\"pgd\"]\neps = [0, 0.1]\nsteps = 5\n";
  std::ofstream(dir + "/ts.toml") << config;
  const int rc = shell(std::string(ROBUSTLAB_BINARY) + " run " + dir + "/ts.toml -q -o " + dir + "/r.h5 >" + dir + "/out 2>" + dir + "/err");
  INFO(readFile(dir + "/err"));
  REQUIRE(rc == 0);
  H5File f(dir + "/r.h5", H5File::Mode::kRead);
  const double scratch = f.attrDouble("/arms/scratch-adv/seed_0/eval", "clean_accuracy");
  const double backbone = f.attrDouble("/arms/backbone+adv-ft/seed_0/eval", "clean_accuracy");
  INFO("clean accuracy: from scratch " << scratch << ", from the script's weights " << backbone);
  CHECK(backbone - scratch > 0.1);
  CHECK(f.attrString("/arms/scratch-adv/seed_0", "initialisation").find("fresh: PyTorch's reset_parameters() rules") == 0);
  CHECK(f.attrString("/arms/backbone+adv-ft/seed_0", "initialisation").find("the TorchScript file's own weights") == 0);
}

TEST_CASE("finetune without a checkpoint says what a TorchScript model starts from, and does it", "[torchscript]") {
  const auto dir = tempDir("torchscript-finetune-note");
  std::filesystem::copy_file(scriptDir() + "/traced.pt", dir + "/traced.pt");
  const std::string base = std::string(ROBUSTLAB_BINARY) + " finetune --set model.arch=torchscript --set model.torchscript=" + dir +
                           "/traced.pt --set model.cut=head --set finetune.epochs=0 --set finetune.classes=[] --set data.test_limit=300";
  REQUIRE(shell(base + " -o " + dir + "/fresh.h5 >" + dir + "/out 2>" + dir + "/err") == 0);
  const std::string note = readFile(dir + "/err");
  INFO(note);
  CHECK(note.find("from scratch: a fresh initialisation of model.torchscript") != std::string::npos);
  REQUIRE(shell(base + " --from-script -o " + dir + "/own.h5 >" + dir + "/out2 2>" + dir + "/err2") == 0);
  CHECK(readFile(dir + "/err2").find("the TorchScript file's own weights") != std::string::npos);
  H5File fresh(dir + "/fresh.h5", H5File::Mode::kRead), own(dir + "/own.h5", H5File::Mode::kRead);
  const double a = fresh.attrDouble("/task", "test_accuracy"), b = own.attrDouble("/task", "test_accuracy");
  INFO("test accuracy without training: fresh " << a << ", the file's weights " << b);
  CHECK(a < 0.25);
  CHECK(b > 0.7);
  INFO("the checkpoint holds the script: attack --checkpoint reads its stored config and model with the .pt file gone");
  std::filesystem::remove(dir + "/traced.pt");
  CHECK(shell(std::string(ROBUSTLAB_BINARY) + " attack -q --checkpoint " + dir + "/own.h5 --attack fgsm --eps 0,0.1 --limit 100 --no-sanity -o " +
              dir + "/a.h5 >/dev/null 2>" + dir + "/err3") == 0);
  INFO(readFile(dir + "/err3"));
  CHECK(std::filesystem::exists(dir + "/a.h5"));
}

TEST_CASE("attack --model: preprocessing recorded, a model of other inputs refused, a near-chance score flagged", "[torchscript]") {
  const auto dir = tempDir("torchscript-preprocessing");
  const std::string bin = std::string(ROBUSTLAB_BINARY);
  INFO("a 3-channel model on grey Fashion-MNIST is refused before it runs, unless its shape is declared");
  CHECK(shell(bin + " attack --model " + scriptDir() + "/rgb.pt --limit 20 -o " + dir + "/x.h5 >/dev/null 2>" + dir + "/err") != 0);
  CHECK(readFile(dir + "/err").find("its first layer 'conv1' (Conv2d) takes 3 channels but the data has 1 x 28 x 28 images") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir + "/x.h5"));

  INFO("a trained model with the normalisation it expects (none): recorded in the results and the JSON, no warning");
  REQUIRE(shell(bin + " attack --model " + scriptDir() + "/traced.pt --attack fgsm --eps 0,8/255 --mean 0 --std 1 --limit 300 --no-sanity --json " +
                dir + "/e.json -o " + dir + "/a.h5 >/dev/null 2>" + dir + "/err") == 0);
  CHECK(readFile(dir + "/err").find("near chance") == std::string::npos);
  {
    H5File f(dir + "/a.h5", H5File::Mode::kRead);
    CHECK(f.attrString("/", "preprocessing") == "{\"input_range\": [0, 1], \"mean\": 0, \"std\": 1}");
    CHECK(f.attrString("/", "command").find("robustlab attack --model ") == 0);
  }
  CHECK(readFile(dir + "/e.json").find("\"preprocessing\": {\"input_range\": [0, 1], \"mean\": 0, \"std\": 1}") != std::string::npos);

  INFO("an untrained model scores about chance: the warning says what to check");
  REQUIRE(shell(bin + " attack --model " + scriptDir() + "/range255.pt --attack fgsm --eps 0,0.1 --limit 500 --no-sanity -o " + dir +
                "/c.h5 >/dev/null 2>" + dir + "/err") == 0);
  CHECK(readFile(dir + "/err").find("is near chance (10.0% for 10 classes): check the input range and normalisation") != std::string::npos);
}

TEST_CASE("a wrong model.cut is refused when the config is read, listing the script's linear layers", "[torchscript]") {
  const auto dir = tempDir("torchscript-cut");
  const int rc = shell(std::string(ROBUSTLAB_BINARY) + " run --dump-config --set model.arch=torchscript --set model.torchscript=" + scriptDir() +
                       "/traced.pt --set model.cut=fc >/dev/null 2>" + dir + "/err");
  CHECK(rc != 0);
  const std::string err = readFile(dir + "/err");
  INFO(err);
  CHECK(err.find("--set model.cut=fc: field 'model.cut': ") != std::string::npos);
  CHECK(err.find("has no submodule 'fc' (its linear layers: ") != std::string::npos);
  CHECK(err.find("head)") != std::string::npos);
}
