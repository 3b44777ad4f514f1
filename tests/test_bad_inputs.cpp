// The bad-input corpus (tests/bad-inputs/corpus.tsv): configs, config files, flags, checkpoints, data
// files and executor options that robustlab must refuse. Every case must exit 1 with one line on
// stderr that says what is wrong, and leave the results already in its folder byte-identical. Then the
// cases a corpus line cannot express: a full disk (a small tmpfs, where this machine lets the test
// mount one) and a read-only folder.
#include "fixtures.h"

#include "data/h5io.h"
#include "framework/models/checkpoint.h"

#include <catch2/catch.hpp>

#include "torchscript_models.h"

#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

using namespace robustlab;
namespace fs = std::filesystem;

namespace {

struct Case {
  int line = 0;
  std::string expect, args;
};

std::vector<Case> readCorpus() {
  std::ifstream in(std::string(ROBUSTLAB_SOURCE_DIR) + "/tests/bad-inputs/corpus.tsv");
  std::vector<Case> out;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    const auto tab = line.find('\t');
    if (tab == std::string::npos) continue;
    out.push_back({n, line.substr(0, tab), line.substr(tab + 1)});
  }
  return out;
}

std::string replaceAll(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

/// The broken files the corpus names, made once.
struct BrokenFiles {
  std::string dir, nanCkpt, nanData, floatLabels, junk, pt;
  BrokenFiles() {
    dir = test::tempDir("bad-inputs-files");
    junk = dir + "/junk.h5";
    std::ofstream(junk) << "not an HDF5 file at all";
    pt = dir + "/model.pt";  // starts as torch.jit.save's and torch.save's zip archives do
    std::ofstream(pt, std::ios::binary) << std::string("PK\x03\x04", 4) << "archive/constants.pkl";
    // A checkpoint whose weights diverged: one NaN in the first layer.
    Classifier m = test::standardModel();
    {
      torch::NoGradGuard g;
      m->parameters().front().view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
    }
    nanCkpt = dir + "/nan-weights.h5";
    saveCheckpoint(nanCkpt, *m, readCheckpointConfig(test::standardCheckpoint()));
    // Data files written past the writer's own checks: NaN pixels, and labels 5.5.
    auto images = test::fashionTest().images.slice(0, 0, 20).clone();
    auto labels = test::fashionTest().labels.slice(0, 0, 20).clone();
    {
      auto bad = images.clone();
      bad[3][0][5][5] = std::numeric_limits<float>::quiet_NaN();
      nanData = dir + "/nan-pixels.h5";
      H5File f(nanData, H5File::Mode::kTruncate);
      f.writeTensor("/images", bad);
      f.writeTensor("/labels", labels);
      f.setAttr("/", "num_classes", int64_t{10});
    }
    {
      floatLabels = dir + "/float-labels.h5";
      auto fl = labels.to(torch::kFloat64);
      fl[2] = 5.5;
      H5File f(floatLabels, H5File::Mode::kTruncate);
      f.writeTensor("/images", images);
      f.writeTensor("/labels", fl);
      f.setAttr("/", "num_classes", int64_t{10});
    }
  }
};

struct Run {
  int code = -1;
  std::string err;
};

/// Runs robustlab in `dir`; its output goes elsewhere (the folder may be read-only or full).
Run runIn(const std::string& dir, const std::string& args) {
  static int counter = 0;
  const std::string logs = test::tempDir("bad-input-logs-" + std::to_string(counter++));
  const std::string cmd = "cd '" + dir + "' && " + std::string(ROBUSTLAB_BINARY) + " " + args + " >" + logs + "/out 2>" + logs + "/err";
  Run r;
  r.code = test::shell(cmd);
  r.err = test::readFile(logs + "/err");
  return r;
}

/// A folder with earlier results in it: a results file (the trained checkpoint's bytes) and a note.
std::string folderWithResults(const std::string& name) {
  const std::string dir = test::tempDir(name);
  fs::copy_file(test::standardCheckpoint(), dir + "/keep.h5", fs::copy_options::overwrite_existing);
  std::ofstream(dir + "/keep.txt") << "notes the user wrote\n";
  return dir;
}

bool leftUntouched(const std::string& dir) {
  return test::readFile(dir + "/keep.h5") == test::readFile(test::standardCheckpoint()) &&
         test::readFile(dir + "/keep.txt") == "notes the user wrote\n";
}

}  // namespace

TEST_CASE("every case of the bad-input corpus gets one clear line, exit 1, and earlier results stay byte-identical", "[cli]") {
  const auto corpus = readCorpus();
  REQUIRE(corpus.size() >= 60);
  static const BrokenFiles files;
  ::unlink("/tmp/robustlab-pwned");
  int index = 0;
  for (const auto& c : corpus) {
    const std::string dir = folderWithResults("bad-input-" + std::to_string(index++));
    std::string args = c.args;
    for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{{"{tmp}", dir},
                                                                               {"{src}", ROBUSTLAB_SOURCE_DIR},
                                                                               {"{ckpt}", test::standardCheckpoint()},
                                                                               {"{nan_ckpt}", files.nanCkpt},
                                                                               {"{nan_data}", files.nanData},
                                                                               {"{float_labels}", files.floatLabels},
                                                                               {"{junk}", files.junk},
                                                                               {"{pt}", files.pt},
                                                                               {"{ts}", test::scriptDir()}})
      args = replaceAll(args, k, v);
    const Run r = runIn(dir, args);
    INFO("corpus line " << c.line << ": robustlab " << args << "\nstderr: " << r.err);
    CHECK(r.code == 1);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find(c.expect) != std::string::npos);
    CHECK(leftUntouched(dir));
  }
  INFO("a hostile name or option ran a command");
  CHECK_FALSE(fs::exists("/tmp/robustlab-pwned"));
}

TEST_CASE("a full disk and a read-only folder: one clear line, exit 1, the earlier file intact, no temporary left", "[cli]") {
  SECTION("read-only folder") {
    // Root ignores permissions: where the test may mount, the folder is a read-only tmpfs instead.
    const std::string dir = folderWithResults("bad-input-readonly");
    bool mounted = false;
    if (::geteuid() == 0) {
      const std::string files = test::tempDir("bad-input-readonly-files");
      fs::copy(dir, files, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
      if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=4m") != 0) {
        WARN("running as root and cannot mount a tmpfs: the read-only case is not run");
        return;
      }
      mounted = true;
      fs::copy(files, dir, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
      REQUIRE(::mount("tmpfs", dir.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, "size=4m") == 0);
    } else {
      fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
    }
    const Run r = runIn(dir, "attack -q --checkpoint " + test::standardCheckpoint() + " --limit 50 --steps 2 -o " + dir + "/keep.h5");
    const bool untouched = leftUntouched(dir);
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
    else fs::permissions(dir, fs::perms::owner_all);
    INFO(r.err);
    CHECK(r.code == 1);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find("keep.h5") != std::string::npos);
    CHECK(untouched);
  }
  SECTION("full disk") {
    const std::string mnt = test::tempDir("bad-input-tmpfs");
    if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=2m") != 0) {
      WARN("cannot mount a tmpfs here (" << std::strerror(errno) << "): the full-disk case is not run");
      return;
    }
    struct Unmount {
      std::string p;
      ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
    } unmount{mnt};
    // Earlier results, then a filler that leaves about 40 KB free.
    fs::copy_file(test::standardCheckpoint(), mnt + "/keep.h5");
    std::ofstream(mnt + "/keep.txt") << "notes the user wrote\n";
    {
      std::ofstream filler(mnt + "/filler", std::ios::binary);
      const std::string block(4096, 'x');
      while (filler.write(block.data(), block.size())) {
      }
    }
    const auto freeSpace = fs::space(mnt).available;
    fs::resize_file(mnt + "/filler", fs::file_size(mnt + "/filler") - std::min<uintmax_t>(fs::file_size(mnt + "/filler"), 40960 - freeSpace));
    // The attack's results (8 kept adversarial examples per attack and eps, ~200 KB) do not fit.
    Run r = runIn(mnt, "attack -q --checkpoint " + test::standardCheckpoint() + " --attack fgsm,pgd --limit 200 --steps 2 -o " + mnt + "/keep.h5");
    INFO(r.err);
    CHECK(r.code == 1);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find("keep.h5") != std::string::npos);
    CHECK(leftUntouched(mnt));
    // A JSON entry that cannot be written (the disk now full to the last block): the results file,
    // elsewhere, is not replaced either.
    {
      std::ofstream filler(mnt + "/filler-rest", std::ios::binary);
      const std::string block(512, 'x');
      while (filler.write(block.data(), block.size()).flush()) {
      }
    }
    const std::string other = folderWithResults("bad-input-json-full");
    r = runIn(other, "attack -q --checkpoint " + test::standardCheckpoint() + " --attack fgsm --limit 50 --save-examples -o " + other +
                         "/keep.h5 --json " + mnt + "/entry.json");
    INFO(r.err);
    CHECK(r.code == 1);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(leftUntouched(other));
    fs::remove(mnt + "/filler-rest");
    // A checkpoint, a report: the same.
    r = runIn(mnt, "train -q --set train.epochs=1 --set data.train_limit=500 --set data.test_limit=100 -o " + mnt + "/keep.h5");
    INFO(r.err);
    CHECK(r.code == 1);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(leftUntouched(mnt));
    for (const auto& e : fs::directory_iterator(mnt)) {
      INFO("left behind: " << e.path());
      CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
    }
  }
}
