// robustlab: does pre-training make a fine-tuned model more robust to adversarial examples?
// A thin main: dispatch to a subcommand, report any error once, on one line.
#include "experiments/cli/commands.h"
#include "framework/distributed/communicator.h"
#include "framework/distributed/launcher.h"
#include "framework/runtime/progress.h"
#include "framework/runtime/onednn_check.h"
#include "framework/runtime/runtime.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

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
    {"config", robustlab::cmdConfig, "print the configuration reference: every key, type, default and meaning"},
};

/// On a crash: one line naming the signal, the faulting address and the instruction (with the shared
/// object it lies in), then the stack (function names: the executable exports its symbols), then the
/// default action (core dump where enabled). The stack cannot be unwound past code without unwind
/// information (a jump to a bad address, JIT-generated kernels); the instruction's object says which.
/// Runs on its own stack, so a stack overflow is reported too.
void onFatalSignal(int sig, siginfo_t* info, void* context) {
  const char* what = sig == SIGSEGV ? "segmentation fault" : sig == SIGBUS ? "bus error" : sig == SIGILL ? "illegal instruction" : "arithmetic error";
  const void* pc = nullptr;
#if defined(__x86_64__) && defined(REG_RIP)
  pc = reinterpret_cast<const void*>(static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RIP]);
#endif
  Dl_info where{};
  const bool known = pc && ::dladdr(pc, &where) && where.dli_fname;
  char line[1024];
  const int n = std::snprintf(line, sizeof line, "robustlab: fatal signal: %s at address %p, instruction %p (%s+%#lx); stack:\n", what,
                              info ? info->si_addr : nullptr, pc, known ? where.dli_fname : "no mapped object",
                              known ? static_cast<unsigned long>(static_cast<const char*>(pc) - static_cast<const char*>(where.dli_fbase)) : 0UL);
  (void)!::write(2, line, n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof line - 1) : 0);
  void* frames[64];
  ::backtrace_symbols_fd(frames, ::backtrace(frames, 64), 2);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void installCrashHandler() {
  void* warm[1];
  ::backtrace(warm, 1);  // loads libgcc's unwinder now: a signal handler must not be the first to
  static char altStack[1 << 16];
  stack_t ss{};
  ss.ss_sp = altStack;
  ss.ss_size = sizeof altStack;
  ::sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_sigaction = onFatalSignal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (const int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE}) ::sigaction(sig, &sa, nullptr);
}

/// The commands that run as data-parallel ranks (--nproc, torchrun, srun): the training and attack
/// commands, `run --unit K` (one unit; `run` itself hands --nproc to its unit workers) and
/// `bench --allreduce`.
bool dataParallel(const char* name, int argc, char** argv) {
  for (const char* c : {"train", "pretrain", "finetune", "attack"})
    if (std::strcmp(name, c) == 0) return true;
  const char* needs = std::strcmp(name, "run") == 0 ? "--unit" : std::strcmp(name, "bench") == 0 ? "--allreduce" : nullptr;
  for (int i = 2; needs && i < argc; ++i)
    if (std::strcmp(argv[i], needs) == 0 || (std::strncmp(argv[i], needs, std::strlen(needs)) == 0 && argv[i][std::strlen(needs)] == '=')) return true;
  return false;
}

/// Joins the job the environment describes (torchrun's variables, an srun step) when it has several
/// ranks. Ranks other than 0 print nothing on stdout and show no progress: rank 0 speaks for the job.
void joinRanks() {
  const robustlab::RankInfo info = robustlab::rankInfoFromEnvironment();
  // ROBUSTLAB_DIST_FORCE_GROUP=1: a process alone joins a group of one too, checking the backend (NCCL's
  // group and first sum on a one-GPU machine); its work is then computed as one process's.
  const char* force = std::getenv("ROBUSTLAB_DIST_FORCE_GROUP");
  if (!info.distributed() && !(force && std::strcmp(force, "1") == 0)) return;
  const robustlab::DistSettings d = robustlab::distSettingsFromEnvironment();
  auto comm = robustlab::Communicator::connect(info, std::chrono::seconds(d.timeoutSeconds), d.backend);
  if (d.pollMicros >= 0) comm->setPollLimit(std::chrono::microseconds(d.pollMicros));
  robustlab::setWorldCommunicator(std::move(comm));
  if (info.rank != 0) {
    robustlab::Progress::setQuiet(true);
    if (!std::freopen("/dev/null", "w", stdout)) throw std::runtime_error("rank " + std::to_string(info.rank) + ": cannot silence stdout");
  }
}

/// "robustlab train" or, as one of several ranks, "robustlab train (rank 1 of 2)".
std::string who(const char* command) {
  std::string w = std::string("robustlab ") + command;
  if (const auto comm = robustlab::worldCommunicator()) w += " (rank " + std::to_string(comm->rank()) + " of " + std::to_string(comm->size()) + ")";
  return w;
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
  installCrashHandler();
  robustlab::tuneAllocator();
  robustlab::guardOnednnConvolutions();  // before any result rests on LibTorch's convolutions
  for (const auto& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      if (dataParallel(c.name, argc, argv)) {
        const int nproc = robustlab::takeNprocFlag(argc, argv, 2);
        if (nproc > 1) {
          const auto info = robustlab::rankInfoFromEnvironment();
          if (info.distributed())
            throw std::invalid_argument("--nproc: this process is already rank " + std::to_string(info.rank) + " of " + std::to_string(info.worldSize) +
                                        " (set by " + info.launcher + "); let one launcher start the ranks");
          // Settings that cannot be had are refused once, here, before any rank starts.
          robustlab::Communicator::checkBackend(robustlab::distSettingsFromEnvironment().backend, nproc);
          return robustlab::launchLocalRanks(nproc, std::vector<std::string>(argv, argv + argc));
        }
        joinRanks();
      }
      return c.fn(argc - 1, argv + 1);
    } catch (const robustlab::PeerFailure& e) {
      // Launched by --nproc: the launcher names the rank that caused this.
      if (!robustlab::startedByLauncher()) std::fprintf(stderr, "%s: error: %s\n", who(c.name).c_str(), e.what());
      return robustlab::kPeerLostExit;
    } catch (const std::exception& e) {
      std::string msg = e.what();
      // LibTorch appends a C++ backtrace to its messages; the first line is the one a user needs.
      const auto nl = msg.find('\n');
      if (nl != std::string::npos) msg = msg.substr(0, nl);
      std::fprintf(stderr, "%s: error: %s\n", who(c.name).c_str(), msg.c_str());
      return 1;
    }
  }
  std::string valid;
  for (const auto& c : kCommands) valid += (valid.empty() ? "" : ", ") + std::string(c.name);
  std::fprintf(stderr, "robustlab: error: unknown command '%s' (valid: %s)\n", argv[1], valid.c_str());
  return 2;
}
