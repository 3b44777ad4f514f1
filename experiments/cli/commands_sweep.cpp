#include "experiments/cli/cli_common.h"
#include "experiments/cli/commands.h"
#include "experiments/plan/sweep.h"
#include "framework/runtime/runtime.h"

#include <cstdio>
#include <cstring>

namespace robustlab {

int cmdSweep(int argc, char** argv) {
  std::string action = "run";
  if (argc > 1 && (!std::strcmp(argv[1], "run") || !std::strcmp(argv[1], "status") || !std::strcmp(argv[1], "collect"))) {
    action = argv[1];
    --argc;
    ++argv;
  }
  cxxopts::Options opts("robustlab sweep", "Run the [sweep] of a config: 'sweep [run] CONFIG', 'sweep status CONFIG', 'sweep collect CONFIG'");
  opts.positional_help("[run|status|collect] CONFIG");
  opts.add_options()
      ("config", "config file with a [sweep] table", cxxopts::value<std::string>())
      ("set", "override a base config key (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("dir", "sweep directory (overrides [sweep].dir; default results/sweep-<name>)", cxxopts::value<std::string>()->default_value(""))
      ("backend", "local | slurm", cxxopts::value<std::string>()->default_value("local"))
      ("j,jobs", "local: points run at once", cxxopts::value<int>()->default_value("1"))
      ("threads", "threads per point (0: cores / jobs)", cxxopts::value<int>()->default_value("0"))
      ("ntasks-per-unit", "slurm: each point's job reserves N tasks and runs each pre-training unit as one srun step of N tasks, data-parallel",
       cxxopts::value<int>()->default_value("1"))
      ("q,quiet", "no progress output")
      ("h,help", "show this help");
  addSlurmOptions(opts);
  opts.parse_positional({"config"});
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  if (!args.count("config")) throw std::invalid_argument("sweep: give the config file, e.g. robustlab sweep experiments/configs/sweep-example.toml");
  std::vector<std::string> sets;
  if (args.count("set")) sets = args["set"].as<std::vector<std::string>>();
  const Sweep s = planSweep(args["config"].as<std::string>(), sets, args["dir"].as<std::string>());
  if (action == "status") {
    std::printf("%s", sweepStatus(s).c_str());
    return 0;
  }
  if (action == "collect") {
    std::printf("%s", collectSweep(s).c_str());
    return 0;
  }
  const std::string backend = args["backend"].as<std::string>();
  const int ntasks = ntasksPerUnitFrom(args);
  if (ntasks > 1 && backend != "slurm") throw std::invalid_argument("--ntasks-per-unit: expected --backend slurm, not " + backend);
  if (backend == "local") {
    const int jobs = args["jobs"].as<int>();
    if (jobs < 1) throw std::invalid_argument("--jobs: must be >= 1");
    int threads = args["threads"].as<int>();
    if (threads < 0 || threads > 1024) throw std::invalid_argument("--threads: must be in 0..1024 (0: cores / jobs), got " + std::to_string(threads));
    if (threads == 0) threads = std::max(1, usableCores() / jobs);
    const int failed = runSweepLocal(s, jobs, threads, selfExecutable());
    std::printf("%s", collectSweep(s).c_str());
    if (failed) std::fprintf(stderr, "robustlab sweep: %d point(s) failed; run the same command again to retry them\n", failed);
    return failed ? 1 : 0;
  }
  if (backend == "slurm") {
    const SlurmOptions o = slurmOptionsFrom(args);
    const std::string job = submitSweepSlurm(s, o, selfExecutable(), ntasks);
    if (job.empty()) std::printf("sweep '%s': every point is done; 'robustlab sweep collect' tabulates them\n", s.name.c_str());
    else std::printf("submitted job array %s (%s/sweep.sbatch); 'robustlab sweep status' follows it\n", job.c_str(), s.dir.c_str());
    return 0;
  }
  throw std::invalid_argument("--backend: unknown backend '" + backend + "', expected local or slurm");
}

}  // namespace robustlab
