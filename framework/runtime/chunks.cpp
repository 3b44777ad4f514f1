#include "framework/runtime/chunks.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <dlfcn.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace robustlab {
namespace {

thread_local bool inChunk = false;

/// OpenBLAS's own thread count (its pool is not LibTorch's): what configureThreads set.
int blasThreads = 1;

void callOpenBlasSetThreads(int n) {
  using SetThreads = void (*)(int);
  if (auto* fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(n);
}

/// Persistent workers: a thread's first LibTorch operation builds oneDNN's primitives for it, so a
/// thread per call would pay that on every step. Never destroyed (the threads wait on `wake` until exit).
struct Pool {
  std::mutex m;
  std::condition_variable wake, done;
  int started = 0, ready = 0;
  int size = 1;
  uint64_t generation = 0;
  int chunks = 0, pending = 0;
  const std::function<void(int)>* fn = nullptr;
  const at::ThreadLocalState* state = nullptr;
  std::exception_ptr error;
  std::mutex call;  ///< one runChunks at a time
};

Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

void workerLoop(Pool& p, int index) {
  // The first call initialises this thread's intra-op count from the process's; then it is pinned to 1
  // (at::set_num_threads from here also sets the process-wide default, which configureThreads resets).
  at::get_num_threads();
  at::set_num_threads(1);
  std::unique_lock<std::mutex> lock(p.m);
  ++p.ready;
  p.done.notify_all();
  uint64_t seen = p.generation;
  for (;;) {
    p.wake.wait(lock, [&] { return p.generation != seen; });
    seen = p.generation;
    if (index >= p.chunks) continue;
    const auto* fn = p.fn;
    const auto* state = p.state;
    lock.unlock();
    std::exception_ptr error;
    try {
      at::ThreadLocalStateGuard guard(*state);
      inChunk = true;
      (*fn)(index);
    } catch (...) {
      error = std::current_exception();
    }
    inChunk = false;
    lock.lock();
    if (error && !p.error) p.error = error;
    if (--p.pending == 0) p.done.notify_all();
  }
}

}  // namespace

int batchWorkers() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.m);
  return p.size;
}

int chunksFor(int64_t n) {
  if (inChunk) return 1;  // already one core's share: splitting it again on the same core gains nothing
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(batchWorkers(), n / kMinChunk)));
}

void detail::setBatchWorkers(int n) {
  Pool& p = pool();
  std::lock_guard<std::mutex> call(p.call);
  n = std::max(1, n);
  std::unique_lock<std::mutex> lock(p.m);
  // One worker per chunk: with n = 1 no chunk ever runs on a worker, so none is started.
  const int want = n > 1 ? n : 0;
  while (p.started < want) {
    std::thread(workerLoop, std::ref(p), p.started).detach();
    ++p.started;
  }
  p.done.wait(lock, [&] { return p.ready == p.started; });
  p.size = n;
}

void detail::setBlasThreads(int n) {
  // OpenBLAS keeps its own thread pool, which at::set_num_threads does not reach: busy-waiting
  // BLAS threads cost a core's worth of system time for no speed-up on the small models here.
  blasThreads = std::max(1, n);
  callOpenBlasSetThreads(blasThreads);
}

void runChunks(int chunks, const std::function<void(int)>& fn) {
  Pool& p = pool();
  auto serial = [&] {
    for (int i = 0; i < chunks; ++i) fn(i);
  };
  if (chunks <= 1 || inChunk) return serial();
  std::unique_lock<std::mutex> call(p.call, std::try_to_lock);
  if (!call.owns_lock()) return serial();
  const at::ThreadLocalState state;
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(p.m);
    if (chunks > p.started) {
      lock.unlock();
      return serial();
    }
    // Every chunk's matrix products single-threaded too, as its LibTorch operations are.
    if (blasThreads > 1) callOpenBlasSetThreads(1);
    p.fn = &fn;
    p.state = &state;
    p.chunks = chunks;
    p.pending = chunks;
    p.error = nullptr;
    ++p.generation;
    p.wake.notify_all();
    p.done.wait(lock, [&] { return p.pending == 0; });
    error = p.error;
    p.fn = nullptr;
    p.state = nullptr;
    if (blasThreads > 1) callOpenBlasSetThreads(blasThreads);
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace robustlab
