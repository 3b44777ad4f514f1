#!/usr/bin/env python3
"""robustlab against the Python PyTorch reference, interleaved so that both see the same machine:
runs `robustlab bench --repeats 1` and `reference.py --repeats 1` one after the other, --rounds times
(default 3), and prints the median of each figure and the ratios the performance targets are stated in
(robustlab's best configuration over Python fp32 at its best thread count, same metric).
    /usr/bin/python3 experiments/bench/compare.py [--bin build/robustlab] [--rounds 3] [-- --threads 1,2 ...]
(arguments after -- go to both sides: --train-images, --adv-train-images, --attack-images, --threads, --precision)
Run-to-run noise on a shared 2-vCPU machine is 10-30%; interleaving keeps slow phases from landing
on one side only.
"""
import argparse, os, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
COLS = ["train", "adv_train", "pgd20", "fgsm"]  # the figures both sides measure
NAMES = {"train": "train img/s", "adv_train": "PGD-10 AT img/s", "pgd20": "PGD-20 image-steps/s", "fgsm": "FGSM img/s"}


def parse(text, impl):
    rows = {}
    for line in text.splitlines():
        f = line.split()
        if impl == "robustlab" and f and f[0] in ("cpu", "cuda"):  # device prec threads train at pgd pgd-early fgsm rss
            rows[(f[1], int(f[2]))] = dict(zip(COLS + ["pgd20_early"], map(float, (f[3], f[4], f[5], f[7], f[6]))))
        elif impl == "python" and f and f[0].startswith("torch"):  # impl prec threads train at pgd fgsm rss
            rows[(f[1], int(f[2]))] = dict(zip(COLS, map(float, f[3:7])))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/robustlab")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    runs = {"robustlab": [], "python": []}
    for r in range(a.rounds):
        out = subprocess.run([a.bin, "bench", "--repeats", "1", "-o", ""] + a.extra, check=True, capture_output=True, text=True).stdout
        runs["robustlab"].append(parse(out, "robustlab"))
        out = subprocess.run([sys.executable, os.path.join(HERE, "reference.py"), "--repeats", "1"] + a.extra, check=True, capture_output=True,
                             text=True).stdout
        runs["python"].append(parse(out, "python"))
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    med = {}
    for impl, rs in runs.items():
        for key in rs[0]:
            med[(impl,) + key] = {c: statistics.median(r[key][c] for r in rs) for c in rs[0][key]}
    print(f"{'implementation':<12} {'prec':<5} {'threads':>7} " + " ".join(f"{NAMES[c]:>21}" for c in COLS) + f" {'PGD-20 early stop':>18}")
    for (impl, prec, t), m in sorted(med.items()):
        early = f"{m['pgd20_early']:>18.0f}" if "pgd20_early" in m else f"{'n/a':>18}"
        print(f"{impl:<12} {prec:<5} {t:>7} " + " ".join(f"{m[c]:>21.0f}" for c in COLS) + early)
    print("\nratios: robustlab's best configuration / Python fp32 at its best thread count")
    for c in COLS + ["pgd20_early"]:
        ours = max(((m[c], k) for k, m in med.items() if k[0] == "robustlab" and c in m))
        ref = max(((m[c if c in m else "pgd20"], k) for k, m in med.items() if k[0] == "python" and k[1] == "fp32"))
        label = NAMES.get(c, "PGD-20 as evaluated (early stop)")
        # The same two configurations round by round: how far the ratio moved between rounds.
        per = [r_ours[ours[1][1:]][c] / r_ref[ref[1][1:]][c if c in r_ref[ref[1][1:]] else "pgd20"]
               for r_ours, r_ref in zip(runs["robustlab"], runs["python"])]
        print(f"  {label:<34} {ours[0] / ref[0]:5.2f}x  (robustlab {ours[1][1]} {ours[1][2]} thr {ours[0]:.0f}, "
              f"Python fp32 {ref[1][2]} thr {ref[0]:.0f}; rounds {min(per):.2f}-{max(per):.2f}x)")


if __name__ == "__main__":
    main()
