#include "experiments/cli/cli_common.h"
#include "experiments/cli/commands.h"

#include "data/hdf5_dataset.h"
#include "data/sources.h"

#include <cstdio>
#include <stdexcept>

namespace robustlab {

int cmdConvert(int argc, char** argv) {
  cxxopts::Options opts("robustlab convert", "Convert an IDX dataset directory (MNIST layout) to robustlab's HDF5 dataset format");
  opts.add_options()
      ("dir", "directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]", cxxopts::value<std::string>())
      ("split", "train | test", cxxopts::value<std::string>()->default_value("train"))
      ("classes", "number of classes", cxxopts::value<int64_t>()->default_value("10"))
      ("name", "dataset name stored in the file", cxxopts::value<std::string>()->default_value(""))
      ("o,out", "output .h5 file", cxxopts::value<std::string>())
      ("h,help", "show this help");
  cxxopts::ParseResult args;
  if (!parseOrHelp(opts, argc, argv, args)) return 0;
  if (!args.count("dir") || !args.count("out")) throw std::invalid_argument("convert: --dir and --out are required");
  Dataset ds = loadIdxDirectory(args["dir"].as<std::string>(), args["split"].as<std::string>(), args["classes"].as<int64_t>());
  if (!args["name"].as<std::string>().empty()) ds.name = args["name"].as<std::string>();
  saveHdf5Dataset(args["out"].as<std::string>(), ds);
  std::printf("wrote %s: %lld images %lldx%lldx%lld, %lld classes\n", args["out"].as<std::string>().c_str(),
              static_cast<long long>(ds.size()), static_cast<long long>(ds.channels()), static_cast<long long>(ds.height()),
              static_cast<long long>(ds.width()), static_cast<long long>(ds.numClasses));
  return 0;
}

}  // namespace robustlab
