#!/usr/bin/env bash
# Data-parallel training throughput (BENCHMARKS.md "Data-parallel training"): clean and PGD-10 training
# of the small CNN on 10,000 Fashion-MNIST images, batch 128, as 2 ranks x 1 thread (--nproc 2) against
# 1 process x 1 thread and 1 process with the per-core chunks (threads = 0), fp32 and bf16, and clean
# training with batch 512 (four times the work per gradient sum), and clean training of the CPU-sized
# pre-activation ResNet (model.arch = "resnet": width 16, blocks [2, 2, 2]; 2,560 images, a step ~30
# times the small CNN's), in interleaved rounds. Each run trains 2 epochs; the second epoch's seconds count (the first warms
# oneDNN's primitives), and for 2 ranks also its seconds in collectives (comm_seconds). The "-sleep" rows
# run 2 ranks that sleep on every collective at once (ROBUSTLAB_DIST_POLL_US=0) instead of polling it
# first (the default when each rank has a CPU of its own), the reference for the poll.
#   experiments/bench/data_parallel.sh [BINARY] [ROUNDS] [PATTERN]   (PATTERN: only the runs whose names match this grep -E pattern)
set -euo pipefail
bin=${1:-build/robustlab}
rounds=${2:-3}
pattern=${3:-.}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(train -q --set data.train_limit=10000 --set data.val_fraction=0 --set train.epochs=2 --set 'train.augment="none"'
        --set train.batch_size=128 --set 'train.schedule="constant"')
pgd=(--set 'train.objective="pgd"' --set train.adv_steps=10)
declare -A runs=(
  [clean-fp32-1x1]="--threads 1"
  [clean-fp32-2ranks]="--threads 1 --nproc 2"
  [clean-fp32-2ranks-sleep]="SLEEP --threads 1 --nproc 2"
  [clean-fp32-threads0]="--threads 0"
  [pgd10-fp32-1x1]="PGD --threads 1"
  [pgd10-fp32-2ranks]="PGD --threads 1 --nproc 2"
  [pgd10-fp32-2ranks-sleep]="PGD SLEEP --threads 1 --nproc 2"
  [pgd10-fp32-threads0]="PGD --threads 0"
  [clean-bf16-2ranks]="BF16 --threads 1 --nproc 2"
  [clean-bf16-threads0]="BF16 --threads 0"
  [pgd10-bf16-2ranks]="PGD BF16 --threads 1 --nproc 2"
  [pgd10-bf16-threads0]="PGD BF16 --threads 0"
  [clean512-fp32-1x1]="B512 --threads 1"
  [clean512-fp32-2ranks]="B512 --threads 1 --nproc 2"
  [clean-resnet-fp32-1x1]="RESNET --threads 1"
  [clean-resnet-fp32-2ranks]="RESNET --threads 1 --nproc 2"
  [clean-resnet-fp32-threads0]="RESNET --threads 0"
)
order=(clean-fp32-1x1 clean-fp32-2ranks clean-fp32-2ranks-sleep clean-fp32-threads0 pgd10-fp32-1x1 pgd10-fp32-2ranks
       pgd10-fp32-2ranks-sleep pgd10-fp32-threads0
       clean-bf16-2ranks clean-bf16-threads0 pgd10-bf16-2ranks pgd10-bf16-threads0 clean512-fp32-1x1 clean512-fp32-2ranks
       clean-resnet-fp32-1x1 clean-resnet-fp32-2ranks clean-resnet-fp32-threads0)
mapfile -t order < <(printf '%s\n' "${order[@]}" | grep -E -- "$pattern")
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $(date -u +%Y-%m-%dT%H:%MZ)"
for r in $(seq 1 "$rounds"); do
  for name in "${order[@]}"; do
    args=()
    poll=  # unset: the default
    for w in ${runs[$name]}; do
      case $w in
        SLEEP) poll=0 ;;
        PGD) args+=("${pgd[@]}") ;;
        BF16) args+=(--set 'precision="bf16"') ;;
        B512) args+=(--set train.batch_size=512) ;;
        RESNET) args+=(--set 'model.arch="resnet"' --set data.train_limit=2560) ;;
        *) args+=("$w") ;;
      esac
    done
    ROBUSTLAB_DIST_POLL_US=$poll "$bin" "${common[@]}" "${args[@]}" -o "$work/$name-$r.h5" >/dev/null
  done
done
/usr/bin/python3 - "$work" "$rounds" "${order[@]}" <<'PY'
import sys, h5py, statistics
work, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def images(n):
    return 2560 if "resnet" in n else 10000
rows = {}
for n in names:
    secs, comm = [], []
    for r in range(1, rounds + 1):
        h = h5py.File(f"{work}/{n}-{r}.h5", "r")["history"]
        secs.append(float(h["seconds"][1]))
        if "comm_seconds" in h: comm.append(float(h["comm_seconds"][1]))
    rows[n] = (secs, comm)
print(f"| run | epoch-2 seconds ({rounds} rounds) | median | images/s | in collectives |")
print("|---|---|---|---|---|")
for n in names:
    secs, comm = rows[n]
    m = statistics.median(secs)
    c = f"{statistics.median(comm):.3f} s ({100 * statistics.median(comm) / m:.0f}%)" if comm else ""
    print(f"| {n} | {', '.join(f'{s:.2f}' for s in secs)} | {m:.2f} s | {images(n) / m:,.0f} | {c} |")
def ratio(a, b):
    return statistics.median(rows[b][0]) / statistics.median(rows[a][0])
def have(*names):
    return all(n in rows for n in names)
print()
for kind in ("clean-fp32", "pgd10-fp32", "clean512-fp32", "clean-resnet-fp32"):
    if not have(kind + '-2ranks', kind + '-1x1'): continue
    print(f"{kind}: 2 ranks / 1 process x 1 thread = {ratio(kind + '-2ranks', kind + '-1x1'):.2f}x; "
          + (f"sleeping on collectives {ratio(kind + '-2ranks-sleep', kind + '-1x1'):.2f}x; " if kind + '-2ranks-sleep' in rows else "")
          + (f"2 ranks / threads 0 = {ratio(kind + '-2ranks', kind + '-threads0'):.2f}x" if kind + '-threads0' in rows else ""))
for kind in ("clean-bf16", "pgd10-bf16"):
    if not have(kind + '-2ranks', kind + '-threads0'): continue
    print(f"{kind}: 2 ranks / threads 0 = {ratio(kind + '-2ranks', kind + '-threads0'):.2f}x")
PY
