#include "framework/config/sections.h"

#include "attacks/registry.h"
#include "framework/training/augment.h"
#include "framework/training/registry.h"

namespace robustlab::config {
namespace {

#define ROBUSTLAB_REF(T, expr) [](T& x) -> decltype(auto) { return (x.expr); }

std::vector<std::string> finetuneModeNames() { return {"full", "linear", "lp-ft"}; }

}  // namespace

/// The keys of every stage table: [train], [pretrain], [finetune] and [pretrain.variants.NAME].
Fields<StageConfig> stageFields(const std::string& section) {
  using S = StageConfig;
  Fields<S> f{
      config::integers<S>("classes", ROBUSTLAB_REF(S, classes)),
      config::integer<S>("per_class", ROBUSTLAB_REF(S, perClass), 0),
      config::integer<S>("epochs", ROBUSTLAB_REF(S, train.epochs), 0, 100000),
      config::integer<S>("batch_size", ROBUSTLAB_REF(S, train.batchSize), 1, 1 << 20),
      config::choice<S>("optimizer", ROBUSTLAB_REF(S, train.optim.name), [] { return std::vector<std::string>{"sgd", "adam"}; }),
      config::real<S>("lr", ROBUSTLAB_REF(S, train.optim.lr), 1e-12, 100.0),
      config::real<S>("momentum", ROBUSTLAB_REF(S, train.optim.momentum), 0.0, 0.999999),
      config::boolean<S>("nesterov", ROBUSTLAB_REF(S, train.optim.nesterov)),
      config::boolean<S>("sync_batchnorm", ROBUSTLAB_REF(S, train.syncBatchNorm)),
      config::real<S>("weight_decay", ROBUSTLAB_REF(S, train.optim.weightDecay), 0.0, 1.0),
      config::choice<S>("schedule", ROBUSTLAB_REF(S, train.optim.schedule), [] { return std::vector<std::string>{"constant", "cosine", "step"}; }),
      config::integer<S>("step_epochs", ROBUSTLAB_REF(S, train.optim.stepEpochs), 0),
      config::real<S>("gamma", ROBUSTLAB_REF(S, train.optim.gamma), 1e-9, 1.0),
      config::real<S>("clip_grad_norm", ROBUSTLAB_REF(S, train.optim.clipGradNorm), 0.0, 1e9),
      config::choice<S>("objective", ROBUSTLAB_REF(S, objective), objectiveNames),
      config::real<S>("adv_eps", ROBUSTLAB_REF(S, adversary.eps), 0.0, 1e6),
      config::enumeration<S, Norm>("adv_norm", ROBUSTLAB_REF(S, adversary.norm), parseNorm, normName, {"linf", "l2"}),
      config::integer<S>("adv_steps", ROBUSTLAB_REF(S, adversary.steps), 1, 100000),
      config::real<S>("adv_step_size", ROBUSTLAB_REF(S, adversary.stepSize), 0.0, 1e6),
      config::real<S>("adv_rel_step_size", ROBUSTLAB_REF(S, adversary.relStepSize), 0.0, 1e6),
      config::boolean<S>("adv_random_start", ROBUSTLAB_REF(S, adversary.randomStart)),
      config::real<S>("trades_beta", ROBUSTLAB_REF(S, tradesBeta), 0.0, 1e6),
      config::real<S>("mart_beta", ROBUSTLAB_REF(S, martBeta), 0.0, 1e6),
      config::real<S>("adv_fraction", ROBUSTLAB_REF(S, advFraction), 1e-6, 1.0),
      config::boolean<S>("overfit_check", ROBUSTLAB_REF(S, overfitCheck)),
      config::real<S>("awp_gamma", ROBUSTLAB_REF(S, awpGamma), 0.0, 10.0),
      config::integer<S>("awp_warmup", ROBUSTLAB_REF(S, awpWarmup), 0, 100000),
      config::choice<S>("augment", ROBUSTLAB_REF(S, train.augment), augmentNames),
      config::integer<S>("crop_padding", ROBUSTLAB_REF(S, train.cropPadding), 0, 64),
      config::string<S>("data_source", ROBUSTLAB_REF(S, dataSource)),
      config::string<S>("data_dir", ROBUSTLAB_REF(S, dataDir)),
  };
  if (section.rfind("pretrain", 0) == 0 || section == "variant") {
    f.push_back(config::choice<S>("mode", ROBUSTLAB_REF(S, mode), pretrainModeNames));
    f.push_back(config::integer<S>("mask_patch", ROBUSTLAB_REF(S, maskPatch), 1, 1024));
    f.push_back(config::real<S>("mask_ratio", ROBUSTLAB_REF(S, maskRatio), 0.01, 0.99));
    f.push_back(config::real<S>("temperature", ROBUSTLAB_REF(S, contrastive.temperature), 1e-3, 100.0));
    f.push_back(config::integer<S>("projection_dim", ROBUSTLAB_REF(S, contrastive.projectionDim), 1, 65536));
    f.push_back(config::real<S>("view_min_scale", ROBUSTLAB_REF(S, contrastive.views.minScale), 0.01, 1.0));
    f.push_back(config::boolean<S>("view_flip", ROBUSTLAB_REF(S, contrastive.views.flip)));
    f.push_back(config::real<S>("view_jitter", ROBUSTLAB_REF(S, contrastive.views.jitter), 0.0, 0.99));
    f.push_back(config::boolean<S>("dual_bn", ROBUSTLAB_REF(S, contrastive.dualBatchNorm)));
  }
  if (section == "finetune") {
    f.push_back(config::choice<S>("mode", ROBUSTLAB_REF(S, finetune), finetuneModeNames));
    f.push_back(config::integer<S>("probe_epochs", ROBUSTLAB_REF(S, lpFt.probeEpochs), 0, 100000));
    f.push_back(config::real<S>("probe_lr", ROBUSTLAB_REF(S, lpFt.probeLr), 1e-12, 100.0));
    f.push_back(config::choice<S>("bn_stats", ROBUSTLAB_REF(S, bnStats), [] { return std::vector<std::string>{"update", "frozen"}; }));
    f.push_back(config::string<S>("checkpoint", ROBUSTLAB_REF(S, checkpoint)));
  }
  return f;
}

/// attack.attacks: names from the attack registry, aliases stored under their canonical name.
Field<AttackConfig> attackNamesField() {
  return {"attacks",
          [](TomlReader& r, AttackConfig& c) {
            c.attacks = r.strings("attacks", c.attacks);
            for (auto& a : c.attacks) {
              if (!isAttackName(a)) r.fail("attacks", "unknown attack '" + a + "', valid names: " + attackNameList());
              a = canonicalAttackName(a);
            }
          },
          [](std::ostream& os, const AttackConfig& c) {
            os << config::list<std::string>(c.attacks, [](const std::string& s) { return config::quoted(s); });
          }};
}

Fields<AttackConfig> attackFields() {
  using A = AttackConfig;
  return {
      attackNamesField(),
      config::enumeration<A, Norm>("norm", ROBUSTLAB_REF(A, options.norm), parseNorm, normName, {"linf", "l2", "l1"}),
      config::reals<A>("eps", ROBUSTLAB_REF(A, eps)),
      config::integer<A>("steps", ROBUSTLAB_REF(A, options.steps), 1, 100000),
      config::real<A>("step_size", ROBUSTLAB_REF(A, options.stepSize), 0.0, 1e6),
      config::real<A>("rel_step_size", ROBUSTLAB_REF(A, options.relStepSize), 0.0, 1e6),
      config::integer<A>("restarts", ROBUSTLAB_REF(A, options.restarts), 1, 10000),
      config::boolean<A>("random_start", ROBUSTLAB_REF(A, options.randomStart)),
      config::boolean<A>("early_stop", ROBUSTLAB_REF(A, options.earlyStop)),
      config::real<A>("rho", ROBUSTLAB_REF(A, options.rho), 1e-6, 0.999999),
      config::integer<A>("target_classes", ROBUSTLAB_REF(A, options.targetClasses), 1, 1000),
      config::integer<A>("queries", ROBUSTLAB_REF(A, options.queries), 1, 10000000),
      config::real<A>("p_init", ROBUSTLAB_REF(A, options.pInit), 1e-6, 1.0),
      config::integer<A>("autoattack_steps", ROBUSTLAB_REF(A, options.suiteSteps), 1, 100000),
      config::integer<A>("eot_iter", ROBUSTLAB_REF(A, options.eotIter), 1, 10000),
      config::enumeration<A, Targeting>("targeted", ROBUSTLAB_REF(A, options.targeting), parseTargeting, targetingName,
                                        {"none", "random", "least-likely"}),
      config::integer<A>("batch_size", ROBUSTLAB_REF(A, batchSize), 1, 1 << 20),
      config::countOrAll<A>("keep_examples", ROBUSTLAB_REF(A, keepExamples), 0, 100000),
      config::boolean<A>("sanity_checks", ROBUSTLAB_REF(A, sanityChecks)),
  };
}

Fields<DataConfig> dataFields() {
  using D = DataConfig;
  return {
      config::choice<D>("source", ROBUSTLAB_REF(D, source.source), dataSourceNames),
      config::string<D>("dir", ROBUSTLAB_REF(D, source.dir)),
      config::string<D>("train_file", ROBUSTLAB_REF(D, source.trainFile)),
      config::string<D>("test_file", ROBUSTLAB_REF(D, source.testFile)),
      config::integer<D>("train_limit", ROBUSTLAB_REF(D, trainLimit), 0),
      config::integer<D>("test_limit", ROBUSTLAB_REF(D, testLimit), 0),
      config::real<D>("val_fraction", ROBUSTLAB_REF(D, valFraction), 0.0, 0.9),
  };
}

Field<Config> seedField() {
  return {"seed", [](TomlReader& r, Config& c) { c.seed = static_cast<uint64_t>(r.integer("seed", static_cast<int64_t>(c.seed), 0)); },
          [](std::ostream& os, const Config& c) { os << c.seed; }};
}

/// The top-level keys (sections are read and written around them).
Fields<Config> topFields() {
  using C = Config;
  return {
      config::string<C>("name", ROBUSTLAB_REF(C, name)),
      seedField(),
      config::integers<C>("seeds", ROBUSTLAB_REF(C, seeds), 0),
      config::enumeration<C, DeviceChoice>("device", ROBUSTLAB_REF(C, device), parseDeviceChoice, deviceChoiceName, {"auto", "cpu", "cuda"}),
      config::integer<C>("threads", ROBUSTLAB_REF(C, threads), 0, 1024),
      config::enumeration<C, PrecisionChoice>("precision", ROBUSTLAB_REF(C, precision), parsePrecisionChoice, precisionChoiceName,
                                              {"fp32", "bf16", "auto"}),
      config::string<C>("output", ROBUSTLAB_REF(C, output)),
      config::boolean<C>("keep_models", ROBUSTLAB_REF(C, keepModels)),
  };
}

Fields<RobustnessConfig> robustnessFields() {
  using R = RobustnessConfig;
  return {
      config::real<R>("label_noise", ROBUSTLAB_REF(R, labelNoise), 0.0, 1.0),
      config::choice<R>("label_noise_kind", ROBUSTLAB_REF(R, labelNoiseKind), [] { return std::vector<std::string>{"uniform", "flip"}; }),
      config::real<R>("imbalance", ROBUSTLAB_REF(R, imbalance), 1.0, 1e6),
      config::boolean<R>("calibration", ROBUSTLAB_REF(R, calibration)),
      config::integer<R>("calibration_bins", ROBUSTLAB_REF(R, calibrationBins), 1, 1000),
      config::strings<R>("ood_sources", ROBUSTLAB_REF(R, oodSources)),
      config::integer<R>("ood_limit", ROBUSTLAB_REF(R, oodLimit), 1, 1000000),
      config::strings<R>("corruptions", ROBUSTLAB_REF(R, corruptions)),
  };
}

Fields<ArmConfig> armFields() {
  using A = ArmConfig;
  return {
      config::string<A>("name", ROBUSTLAB_REF(A, name)),
      config::string<A>("pretrain", ROBUSTLAB_REF(A, pretrain)),
      // "" (or absent): the [finetune] objective and mode, -1: its per_class.
      config::choice<A>("objective", ROBUSTLAB_REF(A, objective), [] {
        auto v = objectiveNames();
        v.insert(v.begin(), "");
        return v;
      }, true),
      config::choice<A>("mode", ROBUSTLAB_REF(A, mode), [] {
        auto v = finetuneModeNames();
        v.insert(v.begin(), "");
        return v;
      }, true),
      config::integer<A>("per_class", ROBUSTLAB_REF(A, perClass), -1),
      config::string<A>("baseline", ROBUSTLAB_REF(A, baseline)),
      config::real<A>("label_noise", ROBUSTLAB_REF(A, labelNoise), -1.0, 1.0),
      config::real<A>("imbalance", ROBUSTLAB_REF(A, imbalance), -1.0, 1e6),
      config::real<A>("adv_fraction", ROBUSTLAB_REF(A, advFraction), -1.0, 1.0),
      config::real<A>("awp_gamma", ROBUSTLAB_REF(A, awpGamma), -1.0, 10.0),
      config::integer<A>("awp_warmup", ROBUSTLAB_REF(A, awpWarmup), -1, 100000),
  };
}

#undef ROBUSTLAB_REF

#undef ROBUSTLAB_REF

}  // namespace robustlab::config
