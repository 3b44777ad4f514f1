"""What a user loses by bringing their own model: PGD-20 throughput of robustlab's native small CNN
against a TorchScript copy of the same network (traced in PyTorch from robustlab's own checkpoint by
python/robustlab_io.py), interleaved rounds in one run, same images, same attack settings.

    python3 experiments/bench/torchscript_compare.py CHECKPOINT.h5 [--rounds 3] [--limit 2000] [--threads 1] [--robustlab build/robustlab]

Prints image-steps/s per round and the median of each, and the ratio TorchScript / native. Rows:
native (robustlab's single-channel kernels and graph-free gradient, as `attack --checkpoint` runs it),
native with ROBUSTLAB_KERNELS=libtorch (LibTorch's convolution kernels; the graph-free gradient stays),
and the TorchScript copies, traced and scripted (`attack --model`; a plain conv/ReLU/linear chain runs as
robustlab's own layers in eval mode, framework/models/torchscript_lowering.cpp).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

import h5py
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import robustlab_io  # noqa: E402


def pgd_seconds(robustlab, source_flag, source, a, out, env):
    cmd = [robustlab, "attack", source_flag, source, "--attack", "pgd", "--eps", "0.1", "--steps", str(a.steps),
           "--limit", str(a.limit), "--threads", str(a.threads), "--no-early-stop", "--no-sanity", "-q", "-o", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    with h5py.File(out, "r") as f:
        return float(f["eval/model/attacks/pgd/seconds"][0]), int(f["eval/model"].attrs["n_examples"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--robustlab", default="build/robustlab")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="robustlab-ts-bench-")
    spec = robustlab_io.checkpoint_spec(a.checkpoint)
    model = robustlab_io.load_checkpoint(a.checkpoint)
    traced = os.path.join(tmp, "traced.pt")
    torch.jit.save(torch.jit.trace(model, torch.rand(2, spec["in_channels"], spec["height"], spec["width"])), traced)
    scripted = os.path.join(tmp, "scripted.pt")
    torch.jit.save(torch.jit.script(model), scripted)
    base = dict(os.environ)
    rows = {
        "native": ("--checkpoint", a.checkpoint, base),
        "native, ROBUSTLAB_KERNELS=libtorch": ("--checkpoint", a.checkpoint, {**base, "ROBUSTLAB_KERNELS": "libtorch"}),
        "torchscript (traced copy)": ("--model", traced, base),
        "torchscript (scripted copy)": ("--model", scripted, base),
    }
    rates = {k: [] for k in rows}
    for r in range(a.rounds):
        for name, (flag, src, env) in rows.items():
            s, n = pgd_seconds(a.robustlab, flag, src, a, os.path.join(tmp, "r.h5"), env)
            rates[name].append(n * a.steps / s)
            print(f"round {r + 1}  {name:32s} {n * a.steps / s:10.0f} image-steps/s", flush=True)
    print(f"\nPGD-{a.steps} (every step), Linf eps 0.1, {a.limit} images, {a.threads} thread(s), median of {a.rounds} interleaved rounds")
    print(f"{'model':34s} {'image-steps/s':>14s} {'vs native':>10s}")
    native = statistics.median(rates["native"])
    for name in rows:
        m = statistics.median(rates[name])
        print(f"{name:34s} {m:14.0f} {m / native:10.2f}")


if __name__ == "__main__":
    main()
