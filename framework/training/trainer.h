#pragma once
// One training loop for supervised, adversarial and self-supervised training, pre-training and
// fine-tuning alike: the objective decides the loss, the options decide the optimisation.
#include "data/dataset.h"
#include "framework/models/model.h"
#include "framework/models/predict.h"  // predict, accuracy: the trainer reports them
#include "framework/training/objectives.h"
#include "framework/runtime/runtime.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

namespace robustlab {

class H5File;
class Communicator;

struct OptimizerOptions {
  std::string name = "sgd";      ///< sgd | adam
  double lr = 0.05;
  double momentum = 0.9;         ///< sgd
  bool nesterov = false;         ///< sgd
  double weightDecay = 5e-4;
  double beta1 = 0.9, beta2 = 0.999;  ///< adam
  std::string schedule = "cosine";    ///< constant | cosine (per step) | step
  int64_t stepEpochs = 0;             ///< step: decay every this many epochs (0: at 50% and 75%)
  double gamma = 0.1;                 ///< step: decay factor
  double clipGradNorm = 0;            ///< clip the global gradient norm to this (0: off)
  void validate() const;
};

struct TrainOptions {
  int64_t epochs = 5;
  int64_t batchSize = 128;
  OptimizerOptions optim;
  uint64_t seed = 0;       ///< data order and objective randomness
  bool headOnly = false;   ///< linear probe: train the head only, backbone (and its BatchNorm) frozen
  bool freezeBatchNorm = false;  ///< BatchNorm layers normalise with, and keep, their running statistics
  std::string label = "train";  ///< progress label
  Precision precision = Precision::kFp32;
  std::string augment = "auto";  ///< framework/training/augment.h; the pipeline resolves "auto" per data source
  int64_t cropPadding = 4;       ///< zero padding of the random crop, pixels
  /// Data-parallel ranks (null or one rank: this process alone). Each step's batch, drawn from the one
  /// seeded permutation and augmented alike on every rank, is split into contiguous shards in rank
  /// order; the ranks' gradients are summed (Shard::reduceGradients) before the same optimiser step on
  /// every rank; rank 0's BatchNorm statistics are copied to the others after each step (PyTorch DDP's
  /// broadcast_buffers); validation is split across the ranks and its sums gathered.
  std::shared_ptr<Communicator> comm;
  /// Data-parallel: BatchNorm normalises with the whole batch's statistics, summed over the ranks in
  /// the forward and backward passes (PyTorch's SyncBatchNorm), instead of each rank's shard's; the
  /// ranks' running statistics are then the same by construction. Nothing changes for one process.
  bool syncBatchNorm = false;
  void validate() const;
};

struct EpochRecord {
  int64_t epoch = 0;
  double lr = 0, loss = 0, accuracy = NAN, valLoss = NAN, valAccuracy = NAN, seconds = 0;
  /// An objective's own robustness check at the epoch's end (FGSM-RS: PGD-5 accuracy on held-out
  /// examples), NaN when it has none; `overfitting`: the check collapsed this epoch.
  double pgdCheck = NAN;
  bool overfitting = false;
  /// Data-parallel: seconds of the epoch this rank spent in collectives (gradient sums and gathers,
  /// waiting for slower ranks included); NaN for one process.
  double commSeconds = NAN;
};
using TrainHistory = std::vector<EpochRecord>;

/// Trains `model` on `train` with `objective`; `val` (may be empty) is scored after every epoch.
/// Returns per-epoch curves. Throws std::invalid_argument on bad options.
TrainHistory train(ClassifierImpl& model, TrainingObjective& objective, const Dataset& trainSet, const Dataset& val,
                   const TrainOptions& options, torch::Device device);

/// LP-FT's probe phase (Kumar et al. 2022).
struct LpFtOptions {
  int64_t probeEpochs = 5;  ///< epochs of the head alone, backbone and its BatchNorm frozen
  double probeLr = 0.01;    ///< the probe's learning rate (same optimiser and schedule as the full phase)
};

/// LP-FT: trains the head alone (`probe`), then the whole model from that head with `options`. One
/// history, the full phase's epochs numbered after the probe's.
TrainHistory trainLpFt(ClassifierImpl& model, TrainingObjective& objective, const Dataset& trainSet, const Dataset& val,
                       const TrainOptions& options, const LpFtOptions& probe, torch::Device device);

/// Stores curves as /<group>/{epoch,lr,loss,accuracy,val_loss,val_accuracy,seconds}, and
/// /<group>/{pgd_check,overfitting} when an epoch has a check, /<group>/comm_seconds when data-parallel.
void writeHistory(H5File& f, const std::string& group, const TrainHistory& h);

}  // namespace robustlab
