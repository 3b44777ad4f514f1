#!/usr/bin/env python3
"""Projected data-parallel scaling (BENCHMARKS.md "Data-parallel training").

Measures one gradient sum over 2 ranks on this machine (`robustlab bench --allreduce --nproc 2`) for the
parameter sets of the small CNN, PreAct ResNet-18 and WRN-28-10, fits the ring all-reduce model

    T_allreduce(N, S) = 2 (N - 1) / N * S / B + 2 (N - 1) * a

(S bytes of float32 gradients, B the link's bandwidth, a the latency of one message; at N = 2:
S / B + 2a) to the measurements, and projects one training step of a global batch on N ranks as

    T_step(N) = T_1 / N + T_allreduce(N, S),    speed-up(N) = T_1 / T_step(N)

where T_1 is one rank's time for the whole batch (given per model below, from BENCHMARKS.md). A second
latency, fitted to the seconds per step 2-rank training spent in collectives (--step-comm), adds the
waiting for the slower rank that a bare gradient sum does not have. The
model assumes perfectly divisible compute and no overlap of communication with computation (robustlab
sums the gradients after the backward pass), so it errs low where the batch splits well and high where
ranks wait for each other (measured 2-rank runs show both). A third projection uses a stated
inter-node link instead of this machine's loopback: 10 Gb/s Ethernet, B = 1.17 GB/s, a = 50 us.

    experiments/bench/scaling_projection.py [--binary build/robustlab] [--repeats 15]
"""
import argparse
import re
import subprocess

# One rank's step time for a global batch of 128, PGD-10 adversarial training, fp32 (seconds):
# the small CNN from this file's companion run (data_parallel.sh, 1 process x 1 thread), PreAct
# ResNet-18 from "CIFAR-scale models on this CPU" (5.9 images/s), WRN-28-10 scaled from ResNet-18 by
# forward FLOPs per 32x32 image (5.25 G against 0.56 G): an estimate, not a measurement.
STEP = {"small CNN": None, "PreAct ResNet-18": 128 / 5.9, "WRN-28-10": 128 / 5.9 * 5.25 / 0.56}


def measure(binary, repeats):
    out = subprocess.run([binary, "bench", "--allreduce", "--nproc", "2", "--repeats", str(repeats)], check=True,
                         capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(small CNN|PreAct ResNet-18|WRN-28-10)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)) * 4, float(m.group(4)) / 1e3, float(m.group(5)) / 1e3)
    return out, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/robustlab")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--cnn-step", type=float, default=0.037, help="small CNN PGD-10 step, 1 rank, batch 128 (s)")
    ap.add_argument("--step-comm", type=float, default=0.0037,
                    help="seconds per step a rank spent in collectives in 2-rank PGD-10 training of the small CNN (comm_seconds / steps)")
    args = ap.parse_args()
    STEP["small CNN"] = args.cnn_step
    out, rows = measure(args.binary, args.repeats)
    print(out.strip())
    # Fit on the medians: bandwidth from the two large sets, latency from the small one's remainder.
    (s1, t1, _), (s2, t2, _) = rows["PreAct ResNet-18"], rows["WRN-28-10"]
    bw = (s2 - s1) / (t2 - t1)
    lat = max((rows["small CNN"][1] - rows["small CNN"][0] / bw) / 2, 0.0)
    # In training a gradient sum also waits for the slower rank: the latency that reproduces the measured
    # per-step collective time of 2-rank training (the same bandwidth).
    lat_train = max((args.step_comm - rows["small CNN"][0] / bw) / 2, 0.0)
    print(f"\nfit (loopback, 2 ranks): B = {bw / 1e9:.2f} GB/s, a = {lat * 1e6:.0f} us (gradient sums alone), "
          f"{lat_train * 1e6:.0f} us (from the collective time per step of 2-rank training, waiting included)")
    links = [("loopback, sums alone", bw, lat), ("loopback, as in training", bw, lat_train), ("10 Gb/s Ethernet (assumed)", 1.17e9, 50e-6)]
    print("\n| model | gradients | step, 1 rank | link | N = 2 | N = 4 | N = 8 | N = 16 | N = 64 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, (size, _, _) in rows.items():
        for link, b, a in links:
            cells = []
            for n in (2, 4, 8, 16, 64):
                t_ar = 2 * (n - 1) / n * size / b + 2 * (n - 1) * a
                cells.append(f"{STEP[name] / (STEP[name] / n + t_ar):.1f}x")
            print(f"| {name} | {size / 2**20:.1f} MiB | {STEP[name]:.3g} s | {link} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
