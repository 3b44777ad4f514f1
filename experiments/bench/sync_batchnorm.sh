#!/usr/bin/env bash
# What sync_batchnorm costs (BENCHMARKS.md "sync_batchnorm"): the small CNN with a BatchNorm after each
# convolution, clean and PGD-10 training on 10,000 Fashion-MNIST images, batch 128, as 1 process x 1
# thread, 2 ranks x 1 thread with BatchNorm per rank (the default), and 2 ranks with sync_batchnorm, in
# interleaved rounds; the second epoch's seconds and, for 2 ranks, its seconds in collectives.
#   experiments/bench/sync_batchnorm.sh [BINARY] [ROUNDS]
set -euo pipefail
bin=${1:-build/robustlab}
rounds=${2:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
layers='[{type = "conv", channels = 16, kernel = 4, stride = 2, padding = 1}, {type = "bn"}, {type = "relu"},
         {type = "conv", channels = 32, kernel = 4, stride = 2, padding = 1}, {type = "bn"}, {type = "relu"},
         {type = "fc", units = 100}, {type = "relu"}]'
common=(train -q --threads 1 --set "model.layers=$layers" --set data.train_limit=10000 --set data.val_fraction=0 --set train.epochs=2
        --set 'train.augment="none"' --set train.batch_size=128 --set 'train.schedule="constant"')
pgd=(--set 'train.objective="pgd"' --set train.adv_steps=10)
order=(clean-1x1 clean-2ranks clean-2ranks-sync pgd10-1x1 pgd10-2ranks pgd10-2ranks-sync)
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $(date -u +%Y-%m-%dT%H:%MZ)"
for r in $(seq 1 "$rounds"); do
  for name in "${order[@]}"; do
    args=()
    case $name in pgd10*) args+=("${pgd[@]}") ;; esac
    case $name in *2ranks*) args+=(--nproc 2) ;; esac
    case $name in *sync) args+=(--set train.sync_batchnorm=true) ;; esac
    "$bin" "${common[@]}" "${args[@]}" -o "$work/$name-$r.h5" >/dev/null
  done
done
/usr/bin/python3 - "$work" "$rounds" "${order[@]}" <<'PY'
import sys, h5py, statistics
work, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"| run | epoch-2 seconds ({rounds} rounds) | median | images/s | in collectives | test accuracy |")
print("|---|---|---|---|---|---|")
med = {}
for n in names:
    secs, comm, acc = [], [], []
    for r in range(1, rounds + 1):
        f = h5py.File(f"{work}/{n}-{r}.h5", "r")
        h = f["history"]
        secs.append(float(h["seconds"][1]))
        if "comm_seconds" in h: comm.append(float(h["comm_seconds"][1]))
        acc.append(float(f["task"].attrs["test_accuracy"]))
    m = med[n] = statistics.median(secs)
    c = f"{statistics.median(comm):.3f} s ({100 * statistics.median(comm) / m:.0f}%)" if comm else ""
    print(f"| {n} | {', '.join(f'{s:.2f}' for s in secs)} | {m:.2f} s | {10000 / m:,.0f} | {c} | {statistics.median(acc):.4f} |")
print()
for kind in ("clean", "pgd10"):
    print(f"{kind}: sync / per-rank BatchNorm = {med[kind + '-2ranks-sync'] / med[kind + '-2ranks']:.2f}x the time; "
          f"2 ranks sync / 1 process = {med[kind + '-1x1'] / med[kind + '-2ranks-sync']:.2f}x the speed")
PY
