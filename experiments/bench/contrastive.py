"""Throughput of the pre-training objectives on this CPU, images per second, small CNN on real
Fashion-MNIST: supervised clean and PGD-3 adversarial training, SimCLR and adversarial contrastive
(PGD-3 view), each against PyTorch eager doing the same work in the same run.

    python3 experiments/bench/contrastive.py [--robustlab build/robustlab] [--images 4096] [--threads 1] [--rounds 3]

robustlab: one `pretrain` process per objective and round, one epoch over `--images` training images
at batch 256 (seconds from the checkpoint's history, so start-up and data loading are not counted).
PyTorch: Debian's python3-torch on the same network (rebuilt by python/robustlab_io.py), batch,
projection head (Linear(100,100)-ReLU-Linear(100,64)), views (random resized crop by affine_grid and
grid_sample, flip, brightness/contrast jitter), NT-Xent in fp32 and PGD steps. Rounds interleave
robustlab and PyTorch; the table gives medians and the spread (min-max) of the ratio. An image is one
training image: SimCLR passes two views of it, adversarial contrastive two views plus three PGD steps
and the adversarial view's pass.
"""

import argparse
import gzip
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import robustlab_io  # noqa: E402

SMALL_CNN = {"in_channels": 1, "height": 28, "width": 28, "layers": [
    {"type": "conv", "channels": 16, "kernel": 4, "stride": 2, "padding": 1}, {"type": "relu"},
    {"type": "conv", "channels": 32, "kernel": 4, "stride": 2, "padding": 1}, {"type": "relu"},
    {"type": "fc", "units": 100}, {"type": "relu"}]}
EPS, STEPS = 0.1, 3
OBJECTIVES = {  # name: robustlab --set keys
    "supervised clean": ["pretrain.mode=supervised", "pretrain.objective=standard"],
    "supervised PGD-3": ["pretrain.mode=supervised", "pretrain.objective=pgd"],
    "SimCLR": ["pretrain.mode=simclr"],
    "adv-contrastive PGD-3": ["pretrain.mode=adv-contrastive"],
}


def fashion_images(n):
    d = "/usr/share/datasets/fashion-mnist/"  # Debian's dataset-fashion-mnist (gzipped IDX files)
    with gzip.open(d + "train-images-idx3-ubyte.gz", "rb") as f:
        f.read(16)
        x = np.frombuffer(f.read(n * 784), dtype=np.uint8).reshape(n, 1, 28, 28)
    with gzip.open(d + "train-labels-idx1-ubyte.gz", "rb") as f:
        f.read(8)
        y = np.frombuffer(f.read(n), dtype=np.uint8)
    return torch.from_numpy(x.astype(np.float32) / 255), torch.from_numpy(y.astype(np.int64))


def view(x, g, min_scale=0.3, jitter=0.4):
    n = x.shape[0]
    u = lambda a, b: torch.rand(n, generator=g) * (b - a) + a  # noqa: E731
    area = u(min_scale, 1.0)
    la = torch.maximum(torch.minimum(u(math.log(3 / 4), math.log(4 / 3)), -area.log()), area.log())
    w, h = (area * la.exp()).sqrt().clamp(max=1), (area / la.exp()).sqrt().clamp(max=1)
    cx, cy = u(-1, 1) * (1 - w), u(-1, 1) * (1 - h)
    sx = torch.where(u(0, 1) < 0.5, -w, w)
    z = torch.zeros_like(w)
    theta = torch.stack([torch.stack([sx, z, cx], 1), torch.stack([z, h, cy], 1)], 1)
    out = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), padding_mode="border", align_corners=False)
    b, c = u(1 - jitter, 1 + jitter).view(n, 1, 1, 1), u(1 - jitter, 1 + jitter).view(n, 1, 1, 1)
    out = out * b
    m = out.mean((1, 2, 3), keepdim=True)
    return (m + (out - m) * c).clamp(0, 1)


def nt_xent(z1, z2, t=0.5):
    n = z1.shape[0]
    z = torch.cat([F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)])
    logits = (z @ z.t() / t).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    idx = torch.arange(n)
    return F.cross_entropy(logits, torch.cat([idx + n, idx]))


def pytorch_rate(name, x_all, y_all, threads):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    layers, feat = robustlab_io._cnn_layers(SMALL_CNN)
    backbone = nn.Sequential(*layers)
    head = nn.Linear(feat, 10)
    proj = nn.Sequential(nn.Linear(feat, feat), nn.ReLU(), nn.Linear(feat, 64))
    params = list(backbone.parameters()) + list(head.parameters()) + list(proj.parameters())
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    alpha = 2.5 * EPS / STEPS

    def frozen(on):
        for p in params:
            p.requires_grad_(not on)

    def pgd(loss_of, x0):
        frozen(True)
        x = (x0 + (torch.rand(x0.shape, generator=g) * 2 - 1) * EPS).clamp(0, 1)
        for _ in range(STEPS):
            x.requires_grad_(True)
            gr, = torch.autograd.grad(loss_of(x), x)
            x = torch.min(torch.max(x.detach() + alpha * gr.sign(), x0 - EPS), x0 + EPS).clamp(0, 1)
        frozen(False)
        return x.detach()

    t0 = time.perf_counter()
    for i in range(0, x_all.shape[0], 256):
        x, y = x_all[i:i + 256], y_all[i:i + 256]
        if name.startswith("supervised"):
            if "PGD" in name:
                x = pgd(lambda v: F.cross_entropy(head(backbone(v)), y), x)
            loss = F.cross_entropy(head(backbone(x)), y)
        else:
            v1, v2 = view(x, g), view(x, g)
            z = proj(backbone(torch.cat([v1, v2])))
            z1, z2 = z[:x.shape[0]], z[x.shape[0]:]
            loss = nt_xent(z1, z2)
            if name.startswith("adv"):
                target = z2.detach()
                xadv = pgd(lambda v: nt_xent(proj(backbone(v)), target), v1)
                loss = loss + nt_xent(proj(backbone(xadv)), z2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return x_all.shape[0] / (time.perf_counter() - t0)


def robustlab_rate(exe, keys, n, threads, tmp):
    ckpt = os.path.join(tmp, "p.h5")
    sets = [x for k in keys for x in ("--set", k)]
    subprocess.run([exe, "pretrain", "-q", "--threads", str(threads), "--set", "pretrain.classes=[]", "--set", f"data.train_limit={n}",
                    "--set", "data.val_fraction=0", "--set", "pretrain.epochs=1", "--set", "pretrain.batch_size=256",
                    "--set", f"pretrain.adv_eps={EPS}", "--set", f"pretrain.adv_steps={STEPS}", *sets, "-o", ckpt],
                   check=True, stdout=subprocess.DEVNULL)
    with h5py.File(ckpt, "r") as f:
        return n / float(np.array(f["history/seconds"])[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robustlab", default="build/robustlab")
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="robustlab-contrastive-bench-")
    x, y = fashion_images(a.images)
    print(f"{a.images} Fashion-MNIST training images, 1 epoch, batch 256, small CNN, {a.threads} thread(s), {a.rounds} interleaved rounds")
    print(f"{'objective':24s} {'robustlab img/s':>16s} {'PyTorch img/s':>14s} {'ratio':>6s} {'ratio min-max':>14s} {'cost vs clean':>14s}")
    clean = None
    for name, keys in OBJECTIVES.items():
        ours, ref = [], []
        for _ in range(a.rounds):
            ours.append(robustlab_rate(a.robustlab, keys, a.images, a.threads, tmp))
            ref.append(pytorch_rate(name, x, y, a.threads))
        ratios = [o / r for o, r in zip(ours, ref)]
        mo = statistics.median(ours)
        clean = clean or mo
        print(f"{name:24s} {mo:16.0f} {statistics.median(ref):14.0f} {statistics.median(ratios):6.2f} "
              f"{min(ratios):6.2f}-{max(ratios):<7.2f} {clean / mo:13.1f}x", flush=True)


if __name__ == "__main__":
    main()
