#pragma once
// Data-parallel ranks as threads of the test process, each with its own c10d Gloo group, met through a
// real TCPStore on a free local port.
#include "framework/distributed/communicator.h"
#include "framework/distributed/launcher.h"

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace robustlab::test {

/// Runs fn(comm) on `n` ranks, one thread each, met at a fresh local port; rethrows the first error.
inline void onRanks(int n, const std::function<void(Communicator&)>& fn) {
  const int port = freeLocalPort();
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        RankInfo info;
        info.rank = r;
        info.worldSize = n;
        info.masterPort = port;
        auto comm = Communicator::connect(info, std::chrono::seconds(60));
        fn(*comm);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

/// `c` as the shared pointer TrainOptions::comm takes, without owning it.
inline std::shared_ptr<Communicator> borrowed(Communicator& c) { return std::shared_ptr<Communicator>(&c, [](Communicator*) {}); }

}  // namespace robustlab::test
