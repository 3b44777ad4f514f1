#!/usr/bin/env python3
"""Cross-check robustlab's AutoAttack against the reference implementation (fra31/auto-attack).

Runs `robustlab attack --attack autoattack` on a robustlab checkpoint and the first N test images,
rebuilds the same network in PyTorch from the checkpoint's HDF5 weights, checks that both give the
same clean predictions, runs the reference AutoAttack (standard version) on the same images, and
prints the robust accuracy after each attack side by side.

Needs Python with torch, numpy, h5py and the reference `autoattack` package importable (e.g.
PYTHONPATH=/path/to/auto-attack). Without it the script says so and exits with status 2.

  python3 experiments/crosscheck/autoattack_reference.py --checkpoint model.h5 --eps 0.1 --n 1000

The network is rebuilt by python/robustlab_io.py, which reads every architecture robustlab writes
(cnn with any layer type including BatchNorm, mlp, resnet, wrn, TorchScript).
"""
import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import tempfile

try:
    import autoattack  # noqa: F401  (the reference)
except ImportError:
    print("autoattack_reference: the reference 'autoattack' package is not importable "
          "(install fra31/auto-attack or put a checkout on PYTHONPATH); nothing was compared", file=sys.stderr)
    sys.exit(2)

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import robustlab_io  # noqa: E402  (robustlab checkpoints as torch.nn.Module)

STAGES = ["apgd-ce", "apgd-t", "fab-t", "square"]


def robustlab_side(args, out):
    cmd = [args.robustlab, "attack", "-q", "--checkpoint", args.checkpoint, "--attack", "autoattack", "--norm", args.norm.lower(),
           "--eps", str(args.eps), "--limit", str(args.n), "--set", f"attack.keep_examples={args.n}",
           "--seed", str(args.seed), "--no-sanity", "-o", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with h5py.File(out, "r") as f:
        g = f["eval/model"]
        x = np.array(g["example_inputs"])
        y = np.array(g["labels"])
        clean = np.array(g["clean_pred"])
        names = [n.decode() if isinstance(n, bytes) else n for n in g["attacks/autoattack/stage_names"]]
        acc = np.array(g["attacks/autoattack/stage_robust_accuracy"])[-1]
    return x, y, clean, dict(zip(names, acc))


def reference_side(model, x, y, args):
    from autoattack import AutoAttack
    adversary = AutoAttack(model, norm=args.norm, eps=args.eps, version="standard", seed=args.seed, device="cpu")
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        adversary.run_standard_evaluation(torch.from_numpy(x), torch.from_numpy(y), bs=args.batch)
    text = log.getvalue()
    stages = {}
    m = re.search(r"initial accuracy: ([0-9.]+)%", text)
    if m:
        stages["clean"] = float(m.group(1)) / 100
    for name, value in re.findall(r"robust accuracy after ([A-Z0-9-]+): ([0-9.]+)%", text):
        stages[name.lower()] = float(value) / 100
    return stages


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--eps", type=float, default=0.1)
    p.add_argument("--norm", choices=["Linf", "L2"], default="Linf")
    p.add_argument("--n", type=int, default=1000, help="first N test images of the checkpoint's data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--robustlab", default=os.path.join(os.path.dirname(__file__), "..", "..", "build", "robustlab"))
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        x, y, clean, ours = robustlab_side(args, os.path.join(tmp, "r.h5"))
    model = robustlab_io.load_checkpoint(args.checkpoint)  # every architecture robustlab writes
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    agree = int((pred == clean).sum())
    print(f"clean predictions: PyTorch rebuild and robustlab agree on {agree} of {len(y)} images")
    if agree != len(y):
        sys.exit("autoattack_reference: the rebuilt model does not match robustlab's; the comparison would be meaningless")
    theirs = reference_side(model, x, y, args)
    print(f"{args.norm} eps {args.eps}, {len(y)} images: robust accuracy after each attack")
    print(f"{'stage':10s} {'robustlab':>10s} {'reference':>10s} {'diff (pts)':>11s}")
    for stage in ["clean"] + STAGES:
        a, b = ours.get(stage), theirs.get(stage)
        fa = f"{100 * a:9.2f}%" if a is not None else f"{'-':>10s}"
        fb = f"{100 * b:9.2f}%" if b is not None else f"{'-':>10s}"
        fd = f"{100 * (a - b):+11.2f}" if a is not None and b is not None else f"{'-':>11s}"
        print(f"{stage:10s} {fa} {fb} {fd}")


if __name__ == "__main__":
    main()
