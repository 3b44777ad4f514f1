// robustlab: does pre-training make a fine-tuned model more robust to adversarial examples?
// A thin main: dispatch to a subcommand, report any error once, on one line.
#include "experiments/cli/commands.h"
#include "framework/runtime/onednn_check.h"
#include "framework/runtime/runtime.h"

#include <execinfo.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

namespace {

struct Command {
  const char* name;
  int (*fn)(int, char**);
  const char* help;
};

const Command kCommands[] = {
    {"run", robustlab::cmdRun, "run an experiment from a config (default: the embedded default experiment)"},
    {"sweep", robustlab::cmdSweep, "run a config's [sweep] here or on Slurm; 'sweep status', 'sweep collect'"},
    {"train", robustlab::cmdTrain, "train a classifier on the [train] task"},
    {"pretrain", robustlab::cmdPretrain, "pre-train a backbone (supervised, adversarial, rotation, masked, simclr, adv-contrastive)"},
    {"finetune", robustlab::cmdFinetune, "fine-tune a pre-trained backbone on the [finetune] task"},
    {"attack", robustlab::cmdAttack, "evaluate a saved model under attack; table + HDF5"},
    {"convert", robustlab::cmdConvert, "convert an IDX dataset directory to robustlab's HDF5 dataset format"},
    {"report", robustlab::cmdReport, "turn an experiment's results into report.html and report.md"},
    {"bench", robustlab::cmdBench, "measure training and PGD throughput"},
};

/// On a crash, one line naming the signal and the stack (function names: the executable exports its
/// symbols), then the default action (core dump where enabled). Only async-signal-safe calls.
void onFatalSignal(int sig) {
  const char* what = sig == SIGSEGV ? "segmentation fault" : sig == SIGBUS ? "bus error" : sig == SIGILL ? "illegal instruction" : "arithmetic error";
  const char head[] = "robustlab: fatal signal: ";
  (void)!::write(2, head, sizeof head - 1);
  (void)!::write(2, what, std::strlen(what));
  const char tail[] = "; stack:\n";
  (void)!::write(2, tail, sizeof tail - 1);
  void* frames[64];
  ::backtrace_symbols_fd(frames, ::backtrace(frames, 64), 2);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void usage() {
  std::printf("robustlab - adversarial robustness of pre-trained vs from-scratch models\n\nusage: robustlab <command> [options]\n\n");
  for (const auto& c : kCommands) std::printf("  %-10s %s\n", c.name, c.help);
  std::printf("\n'robustlab <command> --help' lists a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  void* warm[1];
  ::backtrace(warm, 1);  // loads libgcc's unwinder now: a signal handler must not be the first to
  for (const int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE}) std::signal(sig, onFatalSignal);
  robustlab::tuneAllocator();
  robustlab::guardOnednnConvolutions();  // before any result rests on LibTorch's convolutions
  for (const auto& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      return c.fn(argc - 1, argv + 1);
    } catch (const std::exception& e) {
      std::string msg = e.what();
      // LibTorch appends a C++ backtrace to its messages; the first line is the one a user needs.
      const auto nl = msg.find('\n');
      if (nl != std::string::npos) msg = msg.substr(0, nl);
      std::fprintf(stderr, "robustlab %s: error: %s\n", c.name, msg.c_str());
      return 1;
    }
  }
  std::string valid;
  for (const auto& c : kCommands) valid += (valid.empty() ? "" : ", ") + std::string(c.name);
  std::fprintf(stderr, "robustlab: error: unknown command '%s' (valid: %s)\n", argv[1], valid.c_str());
  return 2;
}
