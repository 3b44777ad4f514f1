// A measurement probe, not part of robustlab's build (CUDA LibTorch only; CI never compiles it): how
// fast a bare LibTorch C++ PGD-10 adversarial-training loop runs on a GPU at batch 128, eagerly and
// with the ten attack steps captured in one CUDA graph and replayed. The question it answers before
// robustlab's attack loop is changed: at this batch the GPU waits on kernel launches, so how much does
// replaying a captured graph buy, and does the replay compute what the eager steps compute?
// Built and run by experiments/bench/gpu_check.sh on the GPU machine; prints a table.
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

namespace nn = torch::nn;
namespace F = torch::nn::functional;

namespace {

constexpr int64_t kImages = 6144, kBatch = 128;
constexpr int kSteps = 10;
constexpr double kEps = 0.1;

nn::Sequential smallCnn() {
  return nn::Sequential(nn::Conv2d(nn::Conv2dOptions(1, 16, 4).stride(2).padding(1)), nn::ReLU(),
                        nn::Conv2d(nn::Conv2dOptions(16, 32, 4).stride(2).padding(1)), nn::ReLU(), nn::Flatten(),
                        nn::Linear(32 * 7 * 7, 100), nn::ReLU(), nn::Linear(100, 10));
}

/// Madry's PGD: kSteps signed-gradient steps from x + noise, projected on the Linf box and [0, 1].
torch::Tensor pgd(nn::Sequential& m, const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& noise) {
  const double alpha = 2.5 * kEps / kSteps;
  const auto lo = (x - kEps).clamp(0, 1), hi = (x + kEps).clamp(0, 1);
  auto xa = torch::minimum(torch::maximum(x + noise, lo), hi);
  for (int k = 0; k < kSteps; ++k) {
    auto xi = xa.detach().requires_grad_(true);
    auto loss = F::cross_entropy(m->forward(xi), y, F::CrossEntropyFuncOptions().reduction(torch::kSum));
    auto g = torch::autograd::grad({loss}, {xi})[0];
    xa = torch::minimum(torch::maximum(xi.detach() + alpha * g.sign(), lo), hi);
  }
  return xa.detach();
}

double medianSeconds(const std::function<void()>& fn) {
  std::vector<double> t;
  for (int r = 0; r < 3; ++r) {
    torch::cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    torch::cuda::synchronize();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[1];
}

/// The attack captured once on static tensors; each replay reads the model's current weights.
struct GraphedPgd {
  torch::Tensor x, y, noise, out;
  at::cuda::CUDAGraph graph;

  GraphedPgd(nn::Sequential& m, torch::Device dev) {
    x = torch::rand({kBatch, 1, 28, 28}, dev);
    y = torch::randint(0, 10, {kBatch}, torch::TensorOptions().dtype(torch::kLong).device(dev));
    noise = torch::empty_like(x).uniform_(-kEps, kEps);
    auto side = c10::cuda::getStreamFromPool();
    torch::cuda::synchronize();
    {
      c10::cuda::CUDAStreamGuard guard(side);
      for (int w = 0; w < 3; ++w) out = pgd(m, x, y, noise);  // warm-up: cuDNN plans, workspaces
    }
    torch::cuda::synchronize();
    {
      c10::cuda::CUDAStreamGuard guard(side);
      graph.capture_begin();
      out = pgd(m, x, y, noise);
      graph.capture_end();
    }
    torch::cuda::synchronize();
  }
  const torch::Tensor& operator()(const torch::Tensor& xb, const torch::Tensor& yb) {
    x.copy_(xb);
    y.copy_(yb);
    noise.uniform_(-kEps, kEps);
    graph.replay();
    return out;
  }
};

}  // namespace

int main() {
  torch::manual_seed(0);
  const torch::Device dev(torch::kCUDA);
  const auto X = torch::rand({kImages, 1, 28, 28}, dev);
  const auto Y = torch::randint(0, 10, {kImages}, torch::TensorOptions().dtype(torch::kLong).device(dev));
  auto model = smallCnn();
  model->to(dev);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(5e-4));
  auto trainStep = [&](const torch::Tensor& xb, const torch::Tensor& yb) {
    opt.zero_grad();
    F::cross_entropy(model->forward(xb), yb).backward();
    opt.step();
  };
  auto epoch = [&](const std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&)>& attack, bool train) {
    for (int64_t i = 0; i < kImages; i += kBatch) {
      const auto xb = X.slice(0, i, i + kBatch), yb = Y.slice(0, i, i + kBatch);
      const auto xa = attack(xb, yb);
      if (train) trainStep(xa, yb);
    }
  };
  auto eager = [&](const torch::Tensor& xb, const torch::Tensor& yb) { return pgd(model, xb, yb, torch::empty_like(xb).uniform_(-kEps, kEps)); };
  epoch(eager, true);  // warm-up
  GraphedPgd graphed(model, dev);
  auto replay = [&](const torch::Tensor& xb, const torch::Tensor& yb) { return graphed(xb, yb); };
  // The replay against the eager steps on the same inputs and noise.
  const auto xb = X.slice(0, 0, kBatch), yb = Y.slice(0, 0, kBatch);
  const auto got = replay(xb, yb).clone();
  const auto want = pgd(model, graphed.x, graphed.y, graphed.noise);
  const double diff = (got - want).abs().max().item<double>();
  const double mismatched = (got != want).to(torch::kFloat64).mean().item<double>();
  std::printf("%-44s %12s\n", "bare LibTorch C++, CUDA, fp32, batch 128", "images/s");
  std::printf("%-44s %12.0f\n", "PGD-10 adversarial training, eager", kImages / medianSeconds([&] { epoch(eager, true); }));
  std::printf("%-44s %12.0f\n", "PGD-10 adversarial training, graphed attack", kImages / medianSeconds([&] { epoch(replay, true); }));
  std::printf("%-44s %12.0f\n", "PGD-10 attack only, eager", kImages / medianSeconds([&] { epoch(eager, false); }));
  std::printf("%-44s %12.0f\n", "PGD-10 attack only, graphed", kImages / medianSeconds([&] { epoch(replay, false); }));
  std::printf("graphed vs eager on the same batch: max |diff| %.3g, share of pixels differing %.3g\n", diff, mismatched);
  return 0;
}
