#include "framework/distributed/communicator.h"

#include "framework/runtime/runtime.h"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/version.h>
#include <ATen/Parallel.h>
#ifdef ROBUSTLAB_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <torch/cuda.h>
#endif

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <mutex>
#include <numeric>
#include <streambuf>
#include <string_view>
#include <stdexcept>
#include <thread>

namespace robustlab {

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;  ///< CPU tensors (and every tensor with backend gloo)
#ifdef ROBUSTLAB_WITH_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;  ///< CUDA tensors, unless the backend is gloo
#endif
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<at::Tensor>& bucket) {
#ifdef ROBUSTLAB_WITH_NCCL
    if (nccl && bucket.front().is_cuda()) return nccl->allreduce(bucket);
#endif
    return group->allreduce(bucket);
  }
  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<at::Tensor>& bucket, const c10d::BroadcastOptions& o) {
#ifdef ROBUSTLAB_WITH_NCCL
    if (nccl && bucket.front().is_cuda()) return nccl->broadcast(bucket, o);
#endif
    return group->broadcast(bucket, o);
  }
};

namespace {

std::string firstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

/// Waits for a collective, polling it for up to `poll` first (Communicator::pollLimit); any failure of
/// it (a peer gone, the timeout) becomes one PeerFailure. A peer that hangs ends the poll at its limit,
/// and the wait at the group's timeout, as before.
void finish(const c10::intrusive_ptr<c10d::Work>& work, int rank, const char* what, std::chrono::microseconds poll) {
  if (poll.count() > 0) {
    const auto until = std::chrono::steady_clock::now() + poll;
    while (!work->isCompleted() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  }
  try {
    work->wait();
  } catch (const std::exception& e) {
    throw PeerFailure("rank " + std::to_string(rank) + ": " + what + " with the other ranks failed (" + firstLine(e.what()) +
                      "): another rank stopped or hung");
  }
}

std::shared_ptr<::gloo::transport::Device> glooDevice(const RankInfo& info) {
  if (const char* iface = std::getenv("GLOO_SOCKET_IFNAME"); iface && *iface)
    return c10d::ProcessGroupGloo::createDeviceForInterface(iface);
  // One host (--nproc, a one-node step): the loopback needs no name resolution.
  if (info.masterAddr == "127.0.0.1" || info.masterAddr == "localhost") return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (const unsigned char ch : s) h = (h ^ ch) * 1099511628211ULL;
  return h;
}

/// c10d's TCPStore on rank 0's host (rank 0 serves it and waits for every rank to connect).
c10::intrusive_ptr<c10d::Store> openStore(const RankInfo& info, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(info.masterPort);
  o.isServer = info.rank == 0;
  o.numWorkers = static_cast<std::size_t>(info.worldSize);
  o.waitWorkers = true;
  o.timeout = timeout;
  try {
    return c10::make_intrusive<c10d::TCPStore>(info.masterAddr, o);
  } catch (const std::exception& e) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 2)
    // LibTorch 2.x asks for its libuv store by default; a build without libuv (Debian's) has the classic one.
    if (std::string(e.what()).find("libuv") == std::string::npos) throw;
    o.useLibUV = false;
    return c10::make_intrusive<c10d::TCPStore>(info.masterAddr, o);
#else
    throw;
#endif
  }
}

/// Gloo as LibTorch 2.14 ships it writes an INFO line to std::cerr for each peer it connects to, on
/// every rank (rank 0 alone speaks, and a failure is one line). Put in front of std::cerr's own buffer
/// at the first connect, this one drops Gloo's INFO messages (each one write) and passes the rest on.
class DropGlooInfo : public std::streambuf {
 public:
  explicit DropGlooInfo(std::streambuf* to) : to_(to) {}

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    const std::string_view text(s, static_cast<size_t>(n));
    if (text.find("gloo/") != text.npos && text.find("] INFO ") != text.npos) return n;
    return to_->sputn(s, n);
  }
  int_type overflow(int_type c) override {
    return traits_type::eq_int_type(c, traits_type::eof()) ? traits_type::not_eof(c) : to_->sputc(traits_type::to_char_type(c));
  }
  int sync() override { return to_->pubsync(); }

 private:
  std::streambuf* to_;
};

void dropGlooInfo() {
  static std::once_flag once;
  // Never deleted: std::cerr outlives every static object, and may be written to after them.
  std::call_once(once, [] { std::cerr.rdbuf(new DropGlooInfo(std::cerr.rdbuf())); });
}

std::shared_ptr<Communicator> theWorld;
std::mutex worldMutex;

#ifdef ROBUSTLAB_WITH_NCCL
/// CUDA devices this process sees (0 without CUDA).
int cudaDevices() { return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0; }

/// c10d's NCCL group for CUDA tensors, on this rank's GPU (device LOCAL_RANK, made current: a tensor
/// made for `cuda` lands there), checked at once by one sum over the ranks.
c10::intrusive_ptr<c10d::ProcessGroupNCCL> openNccl(const RankInfo& info, const c10::intrusive_ptr<c10d::Store>& store,
                                                   std::chrono::milliseconds timeout) {
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(info.localRank));
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl", store), info.rank, info.worldSize, options);
  std::vector<at::Tensor> one{torch::ones({1}, torch::TensorOptions().device(torch::kCUDA))};
  nccl->allreduce(one)->wait();
  if (one.front().item<float>() != static_cast<float>(info.worldSize))
    throw std::runtime_error("NCCL's first sum over the ranks gave " + std::to_string(one.front().item<float>()));
  return nccl;
}
#endif

/// The backends this build has: Gloo always; NCCL for CUDA tensors when built with it (ROBUSTLAB_NCCL).
bool ncclBuilt() {
#ifdef ROBUSTLAB_WITH_NCCL
  return true;
#else
  return false;
#endif
}

}  // namespace

/// Adds the time of one collective call to the communicator's count.
struct CollectiveTimer {
  Communicator& c;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  ~CollectiveTimer() { c.collectiveSeconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); }
};

void Communicator::checkBackend(const std::string& backend, int ranksOnHost) {
  if (backend != "auto" && backend != "gloo" && backend != "nccl")
    throw std::invalid_argument("ROBUSTLAB_DIST_BACKEND='" + backend + "': expected auto (Gloo for CPU tensors, NCCL for CUDA ones where built), gloo or nccl");
  if (backend == "nccl" && !ncclBuilt())
    throw std::invalid_argument("ROBUSTLAB_DIST_BACKEND='nccl': this build has no NCCL (configure a CUDA LibTorch build with -DROBUSTLAB_NCCL=ON), expected auto or gloo");
#ifdef ROBUSTLAB_WITH_NCCL
  // NCCL needs a GPU of its own per rank.
  const int gpus = cudaDevices();
  if (backend == "nccl" && ranksOnHost > gpus)
    throw std::invalid_argument("ROBUSTLAB_DIST_BACKEND='nccl': " + std::to_string(ranksOnHost) + " ranks on this host and " + std::to_string(gpus) +
                                " CUDA devices; NCCL needs one device per rank (gloo shares them)");
#endif
}

std::shared_ptr<Communicator> Communicator::connect(const RankInfo& info, std::chrono::milliseconds timeout, const std::string& backend) {
  checkBackend(backend, info.localWorldSize);
  std::shared_ptr<Communicator> c(new Communicator);
  c->impl_ = std::make_unique<Impl>();
  c->info_ = info;
  const std::string where = info.masterAddr + ":" + std::to_string(info.masterPort);
  // A name no resolver knows would only be retried until the timeout: one line now.
  if (const std::string why = unresolvableHost(info.masterAddr); !why.empty())
    throw std::invalid_argument("rank " + std::to_string(info.rank) + " of " + std::to_string(info.worldSize) + ": MASTER_ADDR '" + info.masterAddr +
                                "' (rank 0's host, where the ranks meet) cannot be resolved here (" + why +
                                "): give an address or a host name that every rank can resolve");
  try {
    c->impl_->store = openStore(info, timeout);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(glooDevice(info));
    options->threads = 1;  // one collective at a time is all a rank asks for (BENCHMARKS.md: two threads were slower here)
    dropGlooInfo();
    c->impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(c->impl_->store, info.rank, info.worldSize, options);
#ifdef ROBUSTLAB_WITH_NCCL
    // Auto takes NCCL when every rank on this host has a GPU of its own.
    const int gpus = cudaDevices();
    if (backend == "nccl" || (backend == "auto" && gpus > 0 && info.localWorldSize <= gpus)) c->impl_->nccl = openNccl(info, c->impl_->store, timeout);
#endif
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& e) {
    throw PeerFailure("rank " + std::to_string(info.rank) + " of " + std::to_string(info.worldSize) + ": could not meet the other ranks at " +
                      where + " within " + std::to_string(timeout.count() / 1000) + " s (" + firstLine(e.what()) +
                      "); check MASTER_ADDR/MASTER_PORT and that every rank was started");
  }
  return c;
}

Communicator::~Communicator() = default;

std::chrono::microseconds Communicator::pollLimit() const {
  if (pollLimit_ != kPollAuto) return pollLimit_;
  const int cpus = usableCores();
  return defaultPollLimit(ranksSharingCpus(info_, cpus), at::get_num_threads(), cpus);
}

int ranksSharingCpus(const RankInfo& info, int cpus) {
  return cpus < static_cast<int>(std::thread::hardware_concurrency()) ? 1 : info.localWorldSize;
}

std::chrono::microseconds defaultPollLimit(int localRanks, int threadsPerRank, int cpus) {
  const bool ownCpus = static_cast<int64_t>(localRanks) * threadsPerRank <= cpus;
  return ownCpus ? Communicator::kPollLimit : std::chrono::microseconds(0);
}

namespace {

/// Runs `op` on flat buckets of `tensors`: consecutive tensors of one dtype up to kBucketBytes (a
/// larger tensor alone), then copies each bucket's result back into its tensors.
void inBuckets(const std::vector<torch::Tensor>& tensors, const std::function<void(std::vector<at::Tensor>&)>& op) {
  size_t i = 0;
  while (i < tensors.size()) {
    size_t j = i;
    int64_t bytes = 0;
    std::vector<torch::Tensor> flat;
    while (j < tensors.size() && tensors[j].scalar_type() == tensors[i].scalar_type() &&
           (j == i || bytes + static_cast<int64_t>(tensors[j].nbytes()) <= Communicator::kBucketBytes)) {
      bytes += static_cast<int64_t>(tensors[j].nbytes());
      flat.push_back(tensors[j].reshape(-1));
      ++j;
    }
    std::vector<at::Tensor> bucket{torch::cat(flat)};
    op(bucket);
    int64_t offset = 0;
    for (size_t k = i; k < j; ++k) {
      const int64_t n = tensors[k].numel();
      tensors[k].copy_(bucket[0].slice(0, offset, offset + n).view(tensors[k].sizes()));
      offset += n;
    }
    i = j;
  }
}

}  // namespace

void Communicator::allReduceSum(const std::vector<torch::Tensor>& tensors) {
  if (size() == 1) return;
  CollectiveTimer timer{*this};
  torch::NoGradGuard noGrad;
  const auto poll = pollLimit();
  inBuckets(tensors, [&](std::vector<at::Tensor>& bucket) { finish(impl_->allreduce(bucket), rank(), "summing gradients", poll); });
}

torch::Tensor Communicator::allGather(const torch::Tensor& t, std::vector<int64_t>* rowsPerRank) {
  if (size() == 1) {
    if (rowsPerRank) *rowsPerRank = {t.size(0)};
    return t;
  }
  CollectiveTimer timer{*this};
  // The row counts first, so every rank can pad its rows to the largest count.
  std::vector<at::Tensor> count{torch::full({1}, t.size(0), torch::kInt64)};
  std::vector<std::vector<at::Tensor>> counts(1);
  for (int r = 0; r < size(); ++r) counts[0].push_back(torch::empty({1}, torch::kInt64));
  const auto poll = pollLimit();
  finish(impl_->group->allgather(counts, count), rank(), "gathering row counts", poll);
  std::vector<int64_t> rows;
  for (const auto& c : counts[0]) rows.push_back(c.item<int64_t>());
  const int64_t most = *std::max_element(rows.begin(), rows.end());
  auto shape = t.sizes().vec();
  shape[0] = most;
  if (rowsPerRank) *rowsPerRank = rows;
  // Nothing to send (Gloo divides by the element count): every rank's rows are empty.
  int64_t rowNumel = 1;
  for (size_t d = 1; d < shape.size(); ++d) rowNumel *= shape[d];
  if (most == 0 || rowNumel == 0) {
    shape[0] = std::accumulate(rows.begin(), rows.end(), int64_t{0});
    return torch::empty(shape, t.options());
  }
  auto padded = torch::zeros(shape, t.options().device(torch::kCPU));
  padded.slice(0, 0, t.size(0)).copy_(t.detach());
  std::vector<at::Tensor> in{padded};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < size(); ++r) out[0].push_back(torch::empty(shape, padded.options()));
  finish(impl_->group->allgather(out, in), rank(), "gathering tensors", poll);
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < size(); ++r) parts.push_back(out[0][r].slice(0, 0, rows[r]));
  if (rowsPerRank) *rowsPerRank = rows;
  return torch::cat(parts).to(t.device());
}

void Communicator::broadcast(const std::vector<torch::Tensor>& tensors, int root) {
  if (size() == 1 || tensors.empty()) return;
  CollectiveTimer timer{*this};
  torch::NoGradGuard noGrad;
  c10d::BroadcastOptions o;
  o.rootRank = root;
  const auto poll = pollLimit();
  inBuckets(tensors, [&](std::vector<at::Tensor>& bucket) { finish(impl_->broadcast(bucket, o), rank(), "receiving rank 0's tensors", poll); });
}

void Communicator::barrier() {
  if (size() == 1) return;
  CollectiveTimer timer{*this};
  finish(impl_->group->barrier(), rank(), "waiting", pollLimit());
}

void Communicator::checkSame(const std::string& what, const std::string& value) {
  if (size() == 1) return;
  const auto all = allGather(torch::full({1}, static_cast<int64_t>(fnv1a(value)), torch::kInt64));
  for (int r = 1; r < size(); ++r)
    if (all[r].item<int64_t>() != all[0].item<int64_t>())
      throw std::invalid_argument("rank " + std::to_string(r) + "'s " + what + " differs from rank 0's: start every rank with the same " + what +
                                  " and flags");
}

Communicator* severalRanks(const std::shared_ptr<Communicator>& comm) { return comm && comm->size() > 1 ? comm.get() : nullptr; }

std::pair<int64_t, int64_t> rankShare(const Communicator* comm, int64_t n) {
  if (!comm || comm->size() == 1) return {0, n};
  return {n * comm->rank() / comm->size(), n * (comm->rank() + 1) / comm->size()};
}

std::shared_ptr<Communicator> worldCommunicator() {
  std::lock_guard<std::mutex> lock(worldMutex);
  return theWorld;
}

void setWorldCommunicator(std::shared_ptr<Communicator> comm) {
  std::lock_guard<std::mutex> lock(worldMutex);
  theWorld = std::move(comm);
}

}  // namespace robustlab
