#!/usr/bin/env bash
# Data-parallel evaluation of an experiment's units (BENCHMARKS.md "Data-parallel training"): `run
# --nproc 2` against one process, one thread per rank, on a one-arm, one-seed experiment whose
# evaluation is most of its time: the small CNN fine-tuned 2 epochs on 10,000 Fashion-MNIST images, then
# the default attacks (FGSM, PGD-20, APGD-CE at three eps, with the sanity checks), calibration, OOD
# detection and every corruption at every severity on all 10,000 test images. Interleaved rounds; each
# binary given runs in every round (a binary before a change and after it, in one sitting). Prints per
# binary and rank count the unit's `eval_seconds` and the whole command's wall time, and their medians.
#   experiments/bench/data_parallel_run.sh ROUNDS BINARY [BINARY...]
set -euo pipefail
rounds=$1
shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/c.toml" <<'TOML'
name = "dp-eval"
seeds = [0]
[data]
train_limit = 10000
val_fraction = 0
test_limit = 10000
[finetune]
epochs = 2
[[arms]]
name = "scratch"
[robustness]
corruptions = ["all"]
calibration = true
ood_sources = ["gaussian"]
TOML
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $(date -u +%Y-%m-%dT%H:%MZ)"
for r in $(seq 1 "$rounds"); do
  for b in $(seq 1 $#); do
    for n in 1 2; do
      t0=$(date +%s%N)
      "${!b}" run "$work/c.toml" -o "$work/b$b-n$n-r$r/r.h5" --threads 1 --nproc $n -q >/dev/null
      echo "$b $n $r $(( $(date +%s%N) - t0 ))" >>"$work/wall.txt"
    done
  done
done
/usr/bin/python3 - "$work" "$rounds" "$@" <<'PY'
import sys, glob, h5py, statistics
work, rounds, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
wall = {}
for line in open(f"{work}/wall.txt"):
    b, n, r, s = map(int, line.split())
    wall[(b, n, r)] = s / 1e9
print("| binary | run | the unit's eval_seconds | the whole command, wall seconds |")
print("|---|---|---|---|")
for b, name in enumerate(bins, 1):
    med = {}
    for n in (1, 2):
        ev = []
        for r in range(1, rounds + 1):
            unit, = [f for f in glob.glob(f"{work}/b{b}-n{n}-r{r}/r.units/*.h5") if not f.endswith(".model.h5")]
            ev.append(float(h5py.File(unit, "r")["unit"].attrs["eval_seconds"]))
        cmd = [wall[(b, n, r)] for r in range(1, rounds + 1)]
        med[n] = (statistics.median(ev), statistics.median(cmd))
        label = "1 process x 1 thread" if n == 1 else "2 ranks x 1 thread"
        print(f"| {name} | {label} | {', '.join(f'{e:.1f}' for e in ev)} (median {med[n][0]:.1f} s) | "
              f"{', '.join(f'{c:.1f}' for c in cmd)} (median {med[n][1]:.1f} s) |")
    print(f"| {name} | 2 ranks against 1 | {med[1][0] / med[2][0]:.2f}x | {med[1][1] / med[2][1]:.2f}x |")
PY
