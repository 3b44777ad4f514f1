#!/usr/bin/env bash
# Data-parallel evaluation (BENCHMARKS.md "Data-parallel training", evaluation): `attack --nproc 2`
# against one process, both one thread per rank, on all 10,000 Fashion-MNIST test images: PGD-20 at
# Linf 0.1 with the gradient-masking sanity checks (500 examples), in interleaved rounds. Prints the
# attack's own seconds (the results' `seconds`) and the whole command's wall time per round, and the
# medians' ratios. The model: the small CNN trained 2 epochs on 3,000 images (made once).
#   experiments/bench/data_parallel_attack.sh [BINARY] [ROUNDS]
set -euo pipefail
bin=${1:-build/robustlab}
rounds=${2:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" train -q --set data.train_limit=3000 --set train.epochs=2 --threads 1 -o "$work/model.h5" >/dev/null
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $(date -u +%Y-%m-%dT%H:%MZ)"
for r in $(seq 1 "$rounds"); do
  for n in 1 2; do
    t0=$(date +%s%N)
    "$bin" attack --checkpoint "$work/model.h5" --attack pgd --steps 20 --eps 0.1 --limit 0 --threads 1 -q --nproc $n \
      -o "$work/att$n-$r.h5" >/dev/null
    echo "$n $r $(( $(date +%s%N) - t0 ))" >>"$work/wall.txt"
  done
done
/usr/bin/python3 - "$work" "$rounds" <<'PY'
import sys, h5py, statistics
work, rounds = sys.argv[1], int(sys.argv[2])
wall = {}
for line in open(f"{work}/wall.txt"):
    n, r, s = line.split()
    wall[(int(n), int(r))] = int(s) / 1e9
rows = {}
for n in (1, 2):
    attack = [float(h5py.File(f"{work}/att{n}-{r}.h5", "r")["eval/model/attacks/pgd/seconds"][()]) for r in range(1, rounds + 1)]
    command = [wall[(n, r)] for r in range(1, rounds + 1)]
    rows[n] = (attack, command)
    label = "1 process x 1 thread" if n == 1 else "2 ranks x 1 thread"
    print(f"| {label} | {', '.join(f'{a:.2f}' for a in attack)} (median {statistics.median(attack):.2f} s) | "
          f"{', '.join(f'{c:.2f}' for c in command)} (median {statistics.median(command):.2f} s) |")
for i, what in ((0, "the attack"), (1, "the whole command")):
    print(f"{what}: 2 ranks {statistics.median(rows[1][i]) / statistics.median(rows[2][i]):.2f}x one process")
PY
