#include "experiments/cli/cli_common.h"
#include "experiments/cli/commands.h"
#include "experiments/cli/config_reference.h"

#include <cstdio>
#include <stdexcept>

namespace robustlab {

int cmdConfig(int argc, char** argv) {
  cxxopts::Options opts("robustlab config", "The configuration reference: every key a config can hold, its type, default and meaning");
  opts.add_options()
      ("reference", "print the configuration reference as Markdown (docs/configuration.md is this output)")
      ("h,help", "show this help");
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  if (!args.count("reference"))
    throw std::invalid_argument("config: --reference is the one thing it prints (a config as resolved: any command's --dump-config)");
  std::fputs(configReference().c_str(), stdout);
  return 0;
}

}  // namespace robustlab
