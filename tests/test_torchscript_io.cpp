// Models from PyTorch, continued: a cut TorchScript backbone fine-tuned with every objective, saved,
// reloaded without its file and read back by python/robustlab_io.py (as native checkpoints are), and
// the commands: attack --model with --json and --save-examples, a config's script through run.
#include <catch2/catch.hpp>

#include "tiny_experiment.h"
#include "torchscript_models.h"

#include "data/sha256.h"
#include "data/tasks.h"
#include "framework/models/checkpoint.h"
#include "framework/runtime/progress.h"
#include "framework/runtime/runtime.h"
#include "framework/training/objectives.h"
#include "framework/training/registry.h"
#include "framework/training/trainer.h"

#include <filesystem>
#include <fstream>

using namespace robustlab;
using namespace robustlab::test;

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
  for (const std::string objective : {"standard", "pgd", "trades", "fgsm-rs", "mart"}) {
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
  SECTION("per-channel normalisation on 3-channel images: robustlab's, PyTorch's, and read back from a config's text") {
    ModelSpec mlp;
    mlp.arch = "mlp";
    mlp.hidden = {32};
    mlp.inChannels = 3;
    mlp.channelMean = {0.1, 0.2, 0.3};
    mlp.channelStd = {0.5, 0.6, 0.7};
    const auto x3 = torch::cat({x, x * 0.5, 1 - x}, 1);
    seedEverything(7);
    Classifier m(mlp);
    torch::NoGradGuard g;
    m->eval();
    const auto mean = torch::tensor({0.1, 0.2, 0.3}).to(torch::kFloat32).view({1, 3, 1, 1});
    const auto stdev = torch::tensor({0.5, 0.6, 0.7}).to(torch::kFloat32).view({1, 3, 1, 1});
    CHECK(torch::equal(m->features(x3), m->backbone()->forward((x3 - mean) / stdev)));
    saveCheckpoint(dir + "/mlp3.h5", *m, "");
    checkSameLogits(pythonLogits(dir + "/mlp3.h5", x3, "mlp3"), evalLogits(*m, x3), 3 * 28 * 28, 2);
    const ModelSpec back = parseModelSpec(mlp.toToml(), "spec");
    CHECK(back.channelMean == mlp.channelMean);
    CHECK(back.channelStd == mlp.channelStd);
    INFO("a per-channel mean with another channel count than the images is one error naming the field");
    ModelSpec wrong = mlp;
    wrong.inChannels = 1;
    CHECK_THROWS_WITH(Classifier(wrong), Catch::Contains("model.mean: 3 per-channel values for 1-channel images"));
  }
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
