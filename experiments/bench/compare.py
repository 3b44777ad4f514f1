#!/usr/bin/env python3
"""robustlab against Python PyTorch references, interleaved so that all see the same machine: runs
`robustlab bench --repeats 1` and each reference (`reference.py --repeats 1`) one after the other,
--rounds times (default 3), and prints the median of each figure and the ratios the performance targets
are stated in: robustlab's best configuration over each reference's fp32 at its best thread count and
over that reference's best configuration (any precision), same metric.
    /usr/bin/python3 experiments/bench/compare.py [--bin build/robustlab] [--rounds 3] [--peer NAME=COMMAND ...] [-- --threads 1,2 ...]
(arguments after -- go to every side: --train-images, --adv-train-images, --attack-images, --threads, --precision)
Without --peer the reference is this Python running reference.py ("eager"). A peer's COMMAND is split
like a shell line and gets `--repeats 1` and the arguments after --, e.g. PyTorch 2.6 with torch.compile
in the trixie root that scripts/check-libtorch2.sh makes:
    --peer "compile=chroot /var/cache/robustlab/trixie-root python3 /src/robustlab/experiments/bench/reference.py --compile"
Run-to-run noise on a shared 2-vCPU machine is 10-30%; interleaving keeps slow phases from landing
on one side only.
"""
import argparse, os, shlex, statistics, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
COLS = ["train", "adv_train", "pgd20", "fgsm"]  # the figures both sides measure
NAMES = {"train": "train img/s", "adv_train": "PGD-10 AT img/s", "pgd20": "PGD-20 image-steps/s", "fgsm": "FGSM img/s"}


def parse(text, impl):
    rows = {}
    for line in text.splitlines():
        f = line.split()
        if impl == "robustlab" and f and f[0] in ("cpu", "cuda"):  # device prec threads train at pgd pgd-early fgsm rss
            # threads: "T", or "TxW" (T threads, attack batches split into W single-threaded chunks)
            rows[(f[1], f[2])] = dict(zip(COLS + ["pgd20_early"], map(float, (f[3], f[4], f[5], f[7], f[6]))))
        elif impl != "robustlab" and f and f[0].startswith("torch"):  # impl prec threads train at pgd fgsm rss
            rows[(f[1], f[2])] = dict(zip(COLS, map(float, f[3:7])))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/robustlab")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peer", action="append", default=[], help="NAME=COMMAND of a reference (repeatable)")
    ap.add_argument("extra", nargs="*")
    a = ap.parse_args()
    peers = [p.split("=", 1) for p in a.peer] or [["eager", shlex.join([sys.executable, os.path.join(HERE, "reference.py")])]]
    sides = [("robustlab", [a.bin, "bench", "--repeats", "1", "-o", ""])] + [(n, shlex.split(c) + ["--repeats", "1"]) for n, c in peers]
    runs = {name: [] for name, _ in sides}
    for r in range(a.rounds):
        for name, cmd in sides:
            out = subprocess.run(cmd + a.extra, check=True, capture_output=True, text=True).stdout
            if name == "robustlab" and r == 0:
                print(next((l for l in out.splitlines() if l.startswith("machine:")), "machine: (not printed)"))
            runs[name].append(parse(out, name))
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr, flush=True)
    med = {}
    for impl, rs in runs.items():
        for key in rs[0]:
            med[(impl,) + key] = {c: statistics.median(r[key][c] for r in rs) for c in rs[0][key]}
    print(f"{'implementation':<12} {'prec':<5} {'threads':>7} " + " ".join(f"{NAMES[c]:>21}" for c in COLS) + f" {'PGD-20 early stop':>18}")
    for (impl, prec, t), m in sorted(med.items()):
        early = f"{m['pgd20_early']:>18.0f}" if "pgd20_early" in m else f"{'n/a':>18}"
        print(f"{impl:<12} {prec:<5} {t:>7} " + " ".join(f"{m[c]:>21.0f}" for c in COLS) + early)
    for peer, _ in sides[1:]:
        for precs, what in ((("fp32",), "fp32 at its best thread count"), (("fp32", "bf16"), "best configuration")):
            print(f"\nratios: robustlab's best configuration / {peer} {what}")
            for c in COLS + ["pgd20_early"]:
                ours = max(((m[c], k) for k, m in med.items() if k[0] == "robustlab" and c in m))
                cands = [(m[c if c in m else "pgd20"], k) for k, m in med.items() if k[0] == peer and k[1] in precs]
                if not cands:
                    continue
                ref = max(cands)
                label = NAMES.get(c, "PGD-20 as evaluated (early stop)")
                # The same two configurations round by round: how far the ratio moved between rounds.
                per = [r_ours[ours[1][1:]][c] / r_ref[ref[1][1:]][c if c in r_ref[ref[1][1:]] else "pgd20"]
                       for r_ours, r_ref in zip(runs["robustlab"], runs[peer])]
                print(f"  {label:<34} {ours[0] / ref[0]:5.2f}x  (robustlab {ours[1][1]} {ours[1][2]} thr {ours[0]:.0f}, "
                      f"{peer} {ref[1][1]} {ref[1][2]} thr {ref[0]:.0f}; rounds {min(per):.2f}-{max(per):.2f}x)")


if __name__ == "__main__":
    main()
