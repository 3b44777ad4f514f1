// Models from PyTorch: TorchScript classifiers and backbones (framework/models/torchscript.h), made at
// test time by Debian's python3-torch (tests/make_torchscript_models.py), and robustlab checkpoints read
// back in Python by python/robustlab_io.py.
#include "fixtures.h"
#include "tiny_experiment.h"
#include "tolerance.h"

#include "attacks/registry.h"
#include "data/h5io.h"
#include "data/sha256.h"
#include "data/tasks.h"
#include "framework/models/checkpoint.h"
#include "framework/models/input_grad.h"
#include "framework/runtime/progress.h"
#include "framework/runtime/runtime.h"
#include "framework/training/objectives.h"
#include "framework/training/registry.h"
#include "framework/training/trainer.h"

#include <catch2/catch.hpp>

#include <cfloat>
#include <filesystem>
#include <fstream>

using namespace robustlab;

namespace {

const std::string kScript = std::string(ROBUSTLAB_SOURCE_DIR) + "/tests/make_torchscript_models.py";

/// The folder of TorchScript models, made once per test process (the traced one from the standard fixture).
const std::string& scriptDir() {
  static const std::string dir = [] {
    const std::string d = test::tempDir("torchscript");
    const int rc = test::shell("/usr/bin/python3 " + kScript + " models " + d + " --checkpoint " + test::standardCheckpoint() +
                               " >" + d + "/make.log 2>&1");
    if (rc != 0) FAIL("make_torchscript_models.py failed: " << test::readFile(d + "/make.log"));
    return d;
  }();
  return dir;
}

ModelSpec scriptSpec(const std::string& name, int64_t classes = 10, std::vector<int64_t> shape = {1, 28, 28}) {
  ModelSpec s;
  s.arch = "torchscript";
  s.torchscript = scriptDir() + "/" + name + ".pt";
  s.inChannels = shape[0];
  s.height = shape[1];
  s.width = shape[2];
  s.numClasses = classes;
  return s;
}

/// PyTorch's eval-mode logits of `model` (a .pt file or a robustlab checkpoint) on `images`.
torch::Tensor pythonLogits(const std::string& model, const torch::Tensor& images, const std::string& tag) {
  const std::string dir = scriptDir();
  const std::string in = dir + "/" + tag + "-images.h5", out = dir + "/" + tag + "-logits.h5";
  {
    H5File f(in, H5File::Mode::kTruncate);
    f.writeTensor("/images", images.contiguous());
  }
  const int rc = test::shell("/usr/bin/python3 " + kScript + " logits " + model + " " + in + " /images " + out + " >" + dir + "/" +
                             tag + ".log 2>&1");
  REQUIRE(rc == 0);
  H5File f(out, H5File::Mode::kRead);
  return f.readTensor("/logits");
}

torch::Tensor evalLogits(ClassifierImpl& m, const torch::Tensor& x) {
  torch::NoGradGuard g;
  m.eval();
  return m.forward(x);
}

/// Two fp32 computations of the same network: each layer's result is a sum of at most `longest` terms,
/// within gamma(longest) of the exact sum relative to the sum of magnitudes; through `layers` layers of
/// Lipschitz-1-scale activations the logits differ by at most layers * 2 * gamma(longest) * (1 + |logit|).
void checkSameLogits(const torch::Tensor& a, const torch::Tensor& b, int64_t longest, int64_t layers) {
  REQUIRE(a.sizes() == b.sizes());
  const double bound = layers * 2 * test::gamma(longest, test::kUnitFp32);
  const auto scale = 1 + b.abs().to(torch::kFloat64);
  INFO("largest difference " << (a - b).abs().max().item<double>() << ", bound " << bound << " x (1 + |logit|)");
  CHECK(test::excess(a, b, scale, bound) <= 0);
  CHECK(torch::equal(a.argmax(1), b.argmax(1)));
}

}  // namespace

TEST_CASE("TorchScript classifiers predict what they predict in PyTorch", "[torchscript]") {
  const auto x = test::fashionTest().images.slice(0, 0, 200);
  SECTION("scripted, with BatchNorm statistics and dropout (eval mode)") {
    Classifier m(scriptSpec("bn_cnn"));
    CHECK_FALSE(m->head());
    checkSameLogits(evalLogits(*m, x), pythonLogits(scriptSpec("bn_cnn").torchscript, x, "bn"), 16 * 7 * 7, 3);
  }
  SECTION("traced from a robustlab checkpoint") {
    Classifier m(scriptSpec("traced"));
    Classifier native = test::standardModel();
    checkSameLogits(evalLogits(*m, x), evalLogits(*native, x), 32 * 7 * 7, 3);
  }
  SECTION("normalisation inside the model") {
    checkSameLogits(evalLogits(*Classifier(scriptSpec("normalised")), x), pythonLogits(scriptSpec("normalised").torchscript, x, "norm"),
                    8 * 14 * 14, 2);
  }
  SECTION("inputs in [0, 255] (model.input_range)") {
    ModelSpec s = scriptSpec("range255");
    s.rangeHi = 255;
    checkSameLogits(evalLogits(*Classifier(s), x), pythonLogits(s.torchscript, x, "r255"), 784, 2);
  }
  SECTION("three-channel 32 x 32 input") {
    seedEverything(5);
    const auto rgb = torch::rand({64, 3, 32, 32});
    Classifier m(scriptSpec("rgb", 10, {3, 32, 32}));
    checkSameLogits(evalLogits(*m, rgb), pythonLogits(m->spec().torchscript, rgb, "rgb"), 16 * 8 * 8, 3);
  }
}

TEST_CASE("a plain TorchScript chain runs as robustlab's own layers: the native model's logits and gradient, bit for bit", "[torchscript]") {
  const auto x = test::fashionTest().images.slice(0, 0, 100);
  const auto y = test::fashionTest().labels.slice(0, 0, 100);
  Classifier traced(scriptSpec("traced"));
  Classifier native = test::standardModel();
  Classifier withBatchNorm(scriptSpec("bn_cnn"));
  for (auto* m : {traced.get(), native.get(), withBatchNorm.get()}) {
    m->eval();
    for (auto& p : m->parameters()) p.requires_grad_(false);
  }
  CHECK(supportsManualInputGrad(*traced));
  INFO("BatchNorm and pooling are not in the plain set: that script runs as it is, gradients by autograd");
  CHECK_FALSE(supportsManualInputGrad(*withBatchNorm));
  const auto a = crossEntropyInputGrad(*traced, x, y, false), b = crossEntropyInputGrad(*native, x, y, false);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(torch::equal(a->grad, b->grad));
  CHECK(torch::equal(a->loss, b->loss));
  CHECK(torch::equal(evalLogits(*traced, x), evalLogits(*native, x)));
  INFO("in training mode the script itself runs (no dropout or BatchNorm here: the same function)");
  torch::NoGradGuard g;
  traced->train();
  checkSameLogits(traced->forward(x), evalLogits(*native, x), 32 * 7 * 7, 3);
}

TEST_CASE("a traced copy of a robustlab model has the native model's robust accuracy", "[torchscript]") {
  const Dataset test = test::fashionTest().head(500);
  Classifier native = test::standardModel();
  Classifier traced(scriptSpec("traced"));
  for (const std::string name : {"pgd", "apgd-ce"}) {
    AttackOptions o;
    o.eps = 0.1;
    o.steps = 20;
    o.seed = 1;
    auto robust = [&](ClassifierImpl& m) {
      const auto xadv = makeAttack(name, o)->perturb(m, test.images, test.labels);
      return evalLogits(m, xadv).argmax(1).eq(test.labels).to(torch::kFloat64).mean().item<double>();
    };
    const double a = robust(*native), b = robust(*traced);
    INFO(name << ": native " << a << ", traced " << b << " (1 point = 5 of 500 images)");
    CHECK(std::abs(a - b) < 0.01);
  }
}

TEST_CASE("the attack contract holds over TorchScript models: one with BatchNorm and dropout, one lowered", "[torchscript]") {
  const auto x = test::fashionTest().images.slice(0, 0, 32);
  const auto y = test::fashionTest().labels.slice(0, 0, 32);
  for (const std::string script : {"bn_cnn", "traced"})
  for (const auto& name : attackNames()) {
    DYNAMIC_SECTION(script << " " << name) {
      Classifier m(scriptSpec(script));
      AttackOptions o;
      o.eps = 0.1;
      o.steps = 5;
      o.queries = 200;
      o.seed = 3;
      std::vector<torch::Tensor> buffers, params;
      for (const auto& b : m->buffers()) buffers.push_back(b.clone());
      for (const auto& p : m->parameters()) params.push_back(p.clone());
      const auto xCopy = x.clone();
      m->train();
      const auto xadv = makeAttack(name, o)->perturb(*m, x, y);
      CHECK((xadv - x).abs().max().item<double>() <= o.eps * (1 + 1e-6));
      CHECK(xadv.min().item<float>() >= 0.f);
      CHECK(xadv.max().item<float>() <= 1.f);
      CHECK(torch::equal(x, xCopy));
      INFO("BatchNorm statistics, weights and their gradients are as before");
      auto bs = m->buffers();
      for (size_t i = 0; i < bs.size(); ++i) CHECK(torch::equal(bs[i], buffers[i]));
      auto ps = m->parameters();
      for (size_t i = 0; i < ps.size(); ++i) {
        CHECK(torch::equal(ps[i], params[i]));
        CHECK_FALSE(ps[i].grad().defined());
        CHECK(ps[i].requires_grad());
      }
      CHECK(m->is_training());
      if (script == "bn_cnn") {
        INFO("training mode restored inside the script: dropout is active again");
        torch::NoGradGuard g;
        CHECK_FALSE(torch::equal(m->forward(x), m->forward(x)));
      }
    }
  }
}

TEST_CASE("a cut TorchScript classifier is a backbone: same logits, then fine-tuned, saved, reloaded and read in Python", "[torchscript]") {
  Progress::setQuiet(true);
  const auto dir = test::tempDir("torchscript-finetune");
  const auto x = test::fashionTest().images.slice(0, 0, 200);
  ModelSpec s = scriptSpec("bn_cnn");
  s.cut = "fc";
  Classifier cut(s);
  REQUIRE(cut->head());
  CHECK(cut->featureDim() == 16 * 7 * 7);
  INFO("the head is the cut layer: the cut model computes the uncut model's logits");
  checkSameLogits(evalLogits(*cut, x), evalLogits(*Classifier(scriptSpec("bn_cnn")), x), 16 * 7 * 7, 3);

  // Fine-tune on a 5-class task: a new head, every script parameter trained.
  const Dataset task = limitPerClass(selectClasses(test::fashionTrain(), {5, 6, 7, 8, 9}), 200, 1);
  const Dataset heldOut = selectClasses(test::fashionTest(), {5, 6, 7, 8, 9});
  ModelSpec s5 = s;
  s5.numClasses = 5;
  seedEverything(2);
  Classifier fine(s5);
  std::vector<torch::Tensor> before;
  for (const auto& p : fine->backbone()->parameters()) before.push_back(p.clone());
  CrossEntropyObjective ce;
  TrainOptions opt;
  opt.epochs = 3;
  opt.batchSize = 64;
  opt.optim.lr = 0.05;
  const auto history = train(*fine, ce, task, Dataset{}, opt, torch::kCPU);
  CHECK(history.back().loss < history.front().loss);
  const double acc = accuracy(*fine, heldOut, torch::kCPU);
  INFO("held-out accuracy on 5 classes " << acc);
  CHECK(acc > 0.6);
  size_t changed = 0;
  auto after = fine->backbone()->parameters();
  for (size_t i = 0; i < after.size(); ++i) changed += !torch::equal(after[i], before[i]);
  CHECK(changed == after.size());

  // The checkpoint holds the script's bytes: it reloads with the .pt file gone.
  const std::string moved = dir + "/bn_cnn.pt";
  std::filesystem::copy_file(s.torchscript, moved);
  ModelSpec sMoved = s5;
  sMoved.torchscript = moved;
  Classifier fromMoved(sMoved);
  torch::NoGradGuard g;
  for (auto& p : fromMoved->named_parameters()) p.value().copy_(fine->named_parameters()[p.key()]);
  for (auto& b : fromMoved->named_buffers()) b.value().copy_(fine->named_buffers()[b.key()]);
  saveCheckpoint(dir + "/fine.h5", *fromMoved, "");
  std::filesystem::remove(moved);
  Classifier reloaded = loadClassifier(dir + "/fine.h5");
  const auto logits = evalLogits(*fine, x);
  CHECK(torch::equal(evalLogits(*reloaded, x), logits));
  INFO("python/robustlab_io.py: the checkpoint as a torch.nn.Module, with the head back in the script");
  checkSameLogits(pythonLogits(dir + "/fine.h5", x, "fine"), logits, 16 * 7 * 7, 3);
}

TEST_CASE("a TorchScript backbone trains with every objective, fully and as a linear probe", "[torchscript]") {
  Progress::setQuiet(true);
  const Dataset task = limitPerClass(selectClasses(test::fashionTrain(), {0, 1, 2, 3, 4}), 100, 3);
  ModelSpec s = scriptSpec("bn_cnn", 5);
  s.cut = "fc";
  for (const std::string objective : {"standard", "pgd", "trades"}) {
    for (const bool linear : {false, true}) {
      DYNAMIC_SECTION(objective << (linear ? " linear" : " full")) {
        seedEverything(4);
        Classifier m(s);
        // The script's weights and BatchNorm statistics; not the cut layer's fixed identity (a buffer).
        auto trainable = [&] {
          std::vector<torch::Tensor> v = m->backbone()->parameters();
          for (const auto& b : m->backbone()->named_buffers())
            if (b.key().find(".fc.") == std::string::npos) v.push_back(b.value());
          return v;
        };
        std::vector<torch::Tensor> backbone, head;
        for (const auto& t : trainable()) backbone.push_back(t.clone());
        for (const auto& t : m->head()->parameters()) head.push_back(t.clone());
        ObjectiveParams p;
        p.adversary.eps = 0.1;
        p.adversary.steps = 3;
        auto obj = makeObjective(objective, p, *m);
        TrainOptions opt;
        opt.epochs = 3;
        opt.batchSize = 50;
        opt.optim.lr = 0.05;
        opt.headOnly = linear;
        const auto h = train(*m, *obj, task, Dataset{}, opt, torch::kCPU);
        INFO("loss " << h.front().loss << " -> " << h.back().loss);
        CHECK(h.back().loss < h.front().loss);
        const auto after = trainable();
        size_t same = 0;
        for (size_t i = 0; i < after.size(); ++i) same += torch::equal(after[i], backbone[i]);
        INFO("a linear probe leaves the script's weights and BatchNorm statistics exactly as they were; full training changes them");
        if (linear) CHECK(same == after.size());
        else CHECK(same == 0);
        CHECK_FALSE(torch::equal(m->head()->weight, head[0]));
      }
    }
  }
}

TEST_CASE("python/robustlab_io.py loads native checkpoints with robustlab's logits", "[torchscript]") {
  const auto dir = test::tempDir("robustlab-io");
  const auto x = test::fashionTest().images.slice(0, 0, 100);
  SECTION("the trained small CNN") {
    checkSameLogits(pythonLogits(test::standardCheckpoint(), x, "std"), evalLogits(*test::standardModel(), x), 32 * 7 * 7, 3);
  }
  SECTION("a CNN with BatchNorm, pooling and dropout, a pre-activation ResNet and a WideResNet") {
    ModelSpec bn = test::smallCnn(10, true);
    bn.layers.insert(bn.layers.begin() + 6, {{"maxpool", 0, 2, 2}, {"dropout"}});  // before the fc layer
    ModelSpec res;
    res.arch = "resnet";
    res.resnetWidth = 4;
    res.resnetBlocks = {1, 1};
    res.mean = 0.3;
    res.stdev = 0.4;
    ModelSpec wrn;
    wrn.arch = "wrn";
    wrn.wrnDepth = 10;
    wrn.wrnWidth = 1;
    for (const ModelSpec& spec : {bn, res, wrn}) {
      seedEverything(7);
      Classifier m(spec);
      m->train();
      {
        torch::NoGradGuard g;
        m->forward(test::fashionTrain().images.slice(0, 0, 256));  // non-trivial BatchNorm statistics
      }
      saveCheckpoint(dir + "/" + spec.arch + ".h5", *m, "");
      checkSameLogits(pythonLogits(dir + "/" + spec.arch + ".h5", x, spec.arch), evalLogits(*m, x), 32 * 9 * 7, 12);
    }
  }
}

TEST_CASE("bad TorchScript inputs are one clear line naming the file", "[torchscript]") {
  auto oneLine = [](const ModelSpec& s, const std::string& expected) {
    try {
      Classifier m(s);
      FAIL("no error for " << s.torchscript);
    } catch (const std::exception& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find('\n') == std::string::npos);
      CHECK(msg.find(expected) != std::string::npos);
      CHECK(msg.find(std::filesystem::path(s.torchscript).filename().string()) != std::string::npos);
    }
  };
  const auto dir = test::tempDir("torchscript-bad");
  {
    std::ofstream(dir + "/garbage.pt") << "not a zip archive";
  }
  ModelSpec garbage = scriptSpec("bn_cnn");
  garbage.torchscript = dir + "/garbage.pt";
  oneLine(garbage, "not a TorchScript file");
  ModelSpec missing = garbage;
  missing.torchscript = dir + "/missing.pt";
  oneLine(missing, "cannot be read");
  oneLine(scriptSpec("tuple"), "returned Tuple, expected one Tensor");
  oneLine(scriptSpec("nan"), "NaN or Inf");
  oneLine(scriptSpec("rgb"), "forward on a 2 x 1 x 28 x 28 input failed");
  oneLine(scriptSpec("bn_cnn", 5), "returns 10 logits but the data has 5 classes");
  ModelSpec noLayer = scriptSpec("bn_cnn");
  noLayer.cut = "classifier";
  oneLine(noLayer, "no submodule 'classifier'");
  ModelSpec notLinear = scriptSpec("bn_cnn");
  notLinear.cut = "bn1";
  oneLine(notLinear, "is not a linear layer");
  ModelSpec pinned = scriptSpec("bn_cnn");
  pinned.torchscriptSha256 = std::string(64, '0');
  oneLine(pinned, "is pinned");
  INFO("a TorchScript classifier used as it is has no head to replace");
  Classifier asIs(scriptSpec("bn_cnn"));
  CHECK_THROWS_WITH(asIs->resetHead(5), Catch::Contains("model.cut"));
}

namespace {

int runRobustlab(const std::string& args, const std::string& dir) {
  return test::shell(std::string(ROBUSTLAB_BINARY) + " " + args + " >" + dir + "/out 2>" + dir + "/err");
}

}  // namespace

TEST_CASE("robustlab attack --model evaluates a TorchScript file, with every example and a RobustBench JSON on request", "[torchscript]") {
  const auto dir = test::tempDir("torchscript-cli");
  const std::string pt = scriptDir() + "/traced.pt";
  REQUIRE(runRobustlab("attack --model " + pt + " --attack fgsm,pgd --eps 0,0.1 --steps 10 --limit 200 --save-examples --no-sanity --json " +
                        dir + "/entry.json -o " + dir + "/r.h5",
                    dir) == 0);
  H5File f(dir + "/r.h5", H5File::Mode::kRead);
  CHECK(f.attrString("/", "torchscript") == pt);
  CHECK(f.attrString("/", "torchscript_sha256") == sha256Hex(test::readFile(pt)));
  INFO("--save-examples: all 200 examples per eps, for each attack");
  CHECK(f.readTensor("/eval/model/attacks/pgd/examples").sizes() == torch::IntArrayRef({2, 200, 1, 28, 28}));
  const double clean = f.attrDouble("/eval/model", "clean_accuracy");
  const auto pgd = f.readTensor("/eval/model/attacks/pgd/robust_accuracy");
  INFO("the JSON holds the file's numbers");
  const std::string check = "import json,sys; d=json.load(open(sys.argv[1])); "
                            "assert d['threat_model']=='Linf' and d['eps']==0.1 and d['number_of_examples']==200, d; "
                            "assert abs(float(d['clean_acc'])-float(sys.argv[2]))<0.006, d; "
                            "assert abs(float(d['per_eps'][1]['attacks']['pgd'])-float(sys.argv[3]))<0.006, d; "
                            "assert d['autoattack_acc'] is None and d['dataset']=='fashion-mnist'";
  CHECK(test::shell("/usr/bin/python3 -c \"" + check + "\" " + dir + "/entry.json " + std::to_string(100 * clean) + " " +
                    std::to_string(100 * pgd[1].item<double>()) + " >" + dir + "/json.log 2>&1") == 0);
  INFO(test::readFile(dir + "/json.log"));
  INFO("a wrong declared shape is one line naming the field");
  CHECK(runRobustlab("attack --model " + pt + " --input-shape 3,32,32 --limit 10 -o " + dir + "/x.h5", dir) != 0);
  CHECK(test::readFile(dir + "/err").find("model.input_shape: declared [3, 32, 32] but data.source 'fashion-mnist' has 1 x 28 x 28") !=
        std::string::npos);
}

TEST_CASE("a config's TorchScript backbone is pinned by its SHA-256 and runs the experiment", "[torchscript]") {
  const auto dir = test::tempDir("torchscript-run");
  const std::string pt = dir + "/backbone.pt";
  std::filesystem::copy_file(scriptDir() + "/bn_cnn.pt", pt);
  std::string config = test::readFile(test::writeTiny(dir));
  config += "\n[model]\narch = \"torchscript\"\ntorchscript = \"" + pt + "\"\ncut = \"fc\"\ninput_shape = [1, 28, 28]\n";
  std::ofstream(dir + "/ts.toml") << config;
  REQUIRE(runRobustlab("run " + dir + "/ts.toml --dump-config", dir) == 0);
  const std::string dumped = test::readFile(dir + "/out");
  CHECK(dumped.find("torchscript_sha256 = \"" + sha256Hex(test::readFile(pt)) + "\"") != std::string::npos);
  REQUIRE(runRobustlab("run " + dir + "/ts.toml -q -o " + dir + "/r.h5", dir) == 0);
  H5File f(dir + "/r.h5", H5File::Mode::kRead);
  CHECK(f.has("/arms/pre-adv"));
  INFO("run writes a RobustBench-style entry per arm x seed, with the unit files' numbers");
  const double clean = f.attrDouble("/arms/pre-adv/seed_1/eval", "clean_accuracy");
  const std::string check = "import json,sys; d=json.load(open(sys.argv[1])); "
                            "assert [e['name'] for e in d]==['tiny/scratch/seed_0','tiny/scratch/seed_1','tiny/pre-adv/seed_0','tiny/pre-adv/seed_1'], d; "
                            "assert abs(float(d[3]['clean_acc'])-float(sys.argv[2]))<0.006 and d[3]['architecture'].startswith('torchscript '), d";
  CHECK(test::shell("/usr/bin/python3 -c \"" + check + "\" " + dir + "/r.robustbench.json " + std::to_string(100 * clean) + " >" + dir +
                    "/json.log 2>&1") == 0);
  INFO(test::readFile(dir + "/json.log"));
  INFO("a changed file is a different model: the pinned hash refuses it");
  std::filesystem::copy_file(scriptDir() + "/normalised.pt", pt, std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir + "/pinned.toml") << dumped;
  CHECK(runRobustlab("run " + dir + "/pinned.toml -q -o " + dir + "/r2.h5", dir) != 0);
  CHECK(test::readFile(dir + "/err").find("is pinned") != std::string::npos);
}
