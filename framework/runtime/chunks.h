#pragma once
// Splitting a CPU batch across cores: each chunk computed on its own thread with one intra-op thread.
//
// On the small models robustlab attacks, one LibTorch operation on a 128-image batch is too short for
// intra-op threads to pay for their fork and join (BENCHMARKS.md: the default CNN trains 1.4x slower
// on 2 threads than on 1), while the examples of an attack step are independent of each other. So the
// graph-free attack gradient (framework/models/input_grad.h) hands each core a contiguous chunk of the
// batch instead, and every operation inside a chunk runs single-threaded.
#include <cstdint>
#include <functional>
#include <utility>

namespace robustlab {

/// Chunks the graph-free attack gradient splits a CPU batch into (1: no split). Set by
/// configureThreads (framework/runtime/runtime.h): its workers argument, else its thread count.
int batchWorkers();

/// The smallest chunk worth a thread of its own: below it the hand-over costs more than it saves.
inline constexpr int64_t kMinChunk = 16;

/// How many chunks a batch of n rows is split into: batchWorkers(), at most n / kMinChunk, at least 1;
/// 1 inside a chunk of runChunks (already one core's share).
int chunksFor(int64_t n);

/// Rows [begin, end) of chunk i of n rows split into `chunks` contiguous chunks of near-equal size: the
/// one split every caller uses, so a loop that runs its chunks whole (Attack::inRowChunks) gives each
/// core the rows the attack gradient's own split of every step would.
inline std::pair<int64_t, int64_t> chunkRows(int64_t n, int chunks, int i) { return {n * i / chunks, n * (i + 1) / chunks}; }

/// Runs fn(0) .. fn(chunks - 1), each on one of batchWorkers() persistent worker threads that run
/// every LibTorch operation single-threaded and with the calling thread's LibTorch thread-local state
/// (grad mode, autocast); the caller waits. Returns when all are done and rethrows the first exception
/// one of them threw. A call from inside a chunk, or while another call runs, computes its chunks one
/// after the other on the calling thread. chunks must be <= batchWorkers().
void runChunks(int chunks, const std::function<void(int)>& fn);

namespace detail {
/// Sets batchWorkers() to n, starting worker threads as needed; called by configureThreads.
void setBatchWorkers(int n);
/// Sets OpenBLAS's thread count (when OpenBLAS is the BLAS loaded), restored after each runChunks.
void setBlasThreads(int n);
}  // namespace detail

}  // namespace robustlab
