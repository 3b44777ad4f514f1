#!/usr/bin/env python3
"""Python PyTorch reference for `robustlab bench`: the same small CNN, the same training loop
(SGD momentum 0.9, weight decay 5e-4, batch 128, one epoch over Fashion-MNIST) and the same PGD-20
loop (Linf eps 0.1, step 2.5*eps/20, random start, 1000 test images in one batch), timed the same way.
    /usr/bin/python3 experiments/bench/reference.py [--threads 1,2] [--train-images 60000]
"""
import argparse, gzip, resource, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DIR = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split, n):
    prefix = "train" if split == "train" else "t10k"
    x = torch.from_numpy(idx(f"{DIR}/{prefix}-images-idx3-ubyte.gz")[:n].copy()).float().div_(255).unsqueeze(1)
    y = torch.from_numpy(idx(f"{DIR}/{prefix}-labels-idx1-ubyte.gz")[:n].astype(np.int64))
    return x, y


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 4, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(32 * 7 * 7, 100), nn.ReLU(), nn.Linear(100, 10))


def train_epoch(model, x, y, batch, gen):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    perm = torch.randperm(len(y), generator=gen)
    for i in range(0, len(y), batch):
        idx_ = perm[i:i + batch]
        opt.zero_grad()
        F.cross_entropy(model(x[idx_]), y[idx_]).backward()
        opt.step()


def pgd(model, x, y, eps=0.1, steps=20):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    alpha = 2.5 * eps / steps
    xadv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        xadv.requires_grad_(True)
        loss = F.cross_entropy(model(xadv), y, reduction="sum")
        g, = torch.autograd.grad(loss, xadv)
        xadv = torch.min(torch.max(xadv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    for p in model.parameters():
        p.requires_grad_(True)
    return xadv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--train-images", type=int, default=60000)
    ap.add_argument("--attack-images", type=int, default=1000)
    a = ap.parse_args()
    xtr, ytr = load("train", a.train_images)
    xte, yte = load("test", a.attack_images)
    print(f"{'python':<8} {'threads':>8} {'train img/s':>14} {'epoch s':>12} {'PGD-20 img-steps/s':>20} {'peak RSS MiB':>14}")
    for t in [int(s) for s in a.threads.split(",")]:
        torch.set_num_threads(t)
        torch.manual_seed(0)
        model = small_cnn()
        t0 = time.perf_counter()
        train_epoch(model, xtr, ytr, 128, torch.Generator().manual_seed(0))
        tr = time.perf_counter() - t0
        t0 = time.perf_counter()
        pgd(model, xte, yte)
        pg = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{'torch' + torch.__version__[:4]:<8} {t:>8} {len(ytr) / tr:>14.0f} {tr:>12.2f} {len(yte) * 20 / pg:>20.0f} {rss:>14.0f}", flush=True)


if __name__ == "__main__":
    main()
