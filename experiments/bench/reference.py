#!/usr/bin/env python3
"""Python PyTorch reference for `robustlab bench`: the same small CNN, the same training loop
(SGD momentum 0.9, weight decay 5e-4, batch 128, one epoch over Fashion-MNIST), the same PGD-10
adversarial training (Linf eps 0.1, on the first 6000 images), the same PGD-20 loop (Linf eps 0.1, step
2.5*eps/20, random start, 1000 test images in one batch) and FGSM, in fp32 and bf16 autocast, timed
the same way: each measurement --repeats times (default 3), the median printed. --device cuda runs
the same work on the GPU (data resident there; timings synchronised), for `robustlab bench --device cuda`.
--compile runs both models through torch.compile (PyTorch 2.x; inductor's C++ kernels on CPU): one
untimed warm-up run first compiles every shape the timed runs meet (batches of 128 and the last, shorter
one, the attack batch), so compilation is not timed.
    /usr/bin/python3 experiments/bench/reference.py [--threads 1,2] [--train-images 60000] [--repeats 3] [--device cpu] [--compile]
"""
import argparse, gzip, resource, statistics, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DIR = "/usr/share/datasets/fashion-mnist"
DEVICE = torch.device("cpu")  # set from --device in main()


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


def autocast(bf16):
    return torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=bf16)


def clock():
    """perf_counter after the device has finished its queued work."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def train_epoch(model, x, y, batch, gen, bf16=False, adversarial=False):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    perm = torch.randperm(len(y), generator=gen)
    for i in range(0, len(y), batch):
        idx_ = perm[i:i + batch]
        xb, yb = x[idx_], y[idx_]
        if adversarial:  # Madry PGD-10 at eps 0.1, made in eval mode
            xb = pgd(model, xb, yb, steps=10, bf16=bf16)
        model.train()
        opt.zero_grad()
        with autocast(bf16):
            loss = F.cross_entropy(model(xb).float(), yb)
        loss.backward()
        opt.step()


def pgd(model, x, y, eps=0.1, steps=20, bf16=False):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    alpha = 2.5 * eps / steps
    xadv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        xadv.requires_grad_(True)
        with autocast(bf16):
            loss = F.cross_entropy(model(xadv).float(), y, reduction="sum")
        g, = torch.autograd.grad(loss, xadv)
        xadv = torch.min(torch.max(xadv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    for p in model.parameters():
        p.requires_grad_(True)
    return xadv


def fgsm(model, x, y, eps=0.1, bf16=False):
    model.eval()
    x = x.clone().requires_grad_(True)
    with autocast(bf16):
        loss = F.cross_entropy(model(x).float(), y, reduction="sum")
    g, = torch.autograd.grad(loss, x)
    return (x.detach() + eps * g.sign()).clamp(0, 1)


COMPILE = False  # set from --compile in main()


def make_model():
    model = small_cnn().to(DEVICE)
    return torch.compile(model) if COMPILE else model


def measure_once(xtr, ytr, xte, yte, adv_images, bf16):
    """Throughputs of one run: training and adversarial-training images/s, PGD-20 image-steps/s, FGSM images/s."""
    torch.manual_seed(0)
    model = make_model()
    t0 = clock()
    train_epoch(model, xtr, ytr, 128, torch.Generator().manual_seed(0), bf16=bf16)
    tr = clock() - t0
    torch.manual_seed(0)
    adv_model = make_model()
    t0 = clock()
    train_epoch(adv_model, xtr[:adv_images], ytr[:adv_images], 128, torch.Generator().manual_seed(0), bf16=bf16, adversarial=True)
    at = clock() - t0
    t0 = clock()
    pgd(model, xte, yte, bf16=bf16)
    pg = clock() - t0
    t0 = clock()
    fgsm(model, xte, yte, bf16=bf16)
    fg = clock() - t0
    return len(ytr) / tr, adv_images / at, len(yte) * 20 / pg, len(yte) / fg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--train-images", type=int, default=60000)
    ap.add_argument("--adv-train-images", type=int, default=6000)
    ap.add_argument("--attack-images", type=int, default=1000)
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models (compiled in an untimed warm-up run)")
    a = ap.parse_args()
    global DEVICE, COMPILE
    DEVICE = torch.device(a.device)
    COMPILE = a.compile
    xtr, ytr = (t.to(DEVICE) for t in load("train", a.train_images))
    xte, yte = (t.to(DEVICE) for t in load("test", a.attack_images))
    print(f"{'python':<18} {'prec':<6} {'threads':>8} {'train img/s':>12} {'PGD-10 AT img/s':>16} {'PGD-20 img-st/s':>16} "
          f"{'FGSM img/s':>12} {'RSS MiB':>10}")
    for prec in a.precision.split(","):
        bf16 = prec == "bf16"
        for t in [int(s) for s in a.threads.split(",")]:
            torch.set_num_threads(t)
            if COMPILE:  # compiles every shape; torch.compile's cache keeps the kernels for the timed runs
                measure_once(xtr, ytr, xte, yte, a.adv_train_images, bf16)
            runs = [measure_once(xtr, ytr, xte, yte, a.adv_train_images, bf16) for _ in range(a.repeats)]
            tr, at, pg, fg = (statistics.median(r[i] for r in runs) for i in range(4))
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            impl = "torch" + ".".join(torch.__version__.split(".")[:2]) + ("-cuda" if DEVICE.type == "cuda" else "") + ("-compile" if COMPILE else "")
            print(f"{impl:<18} {prec:<6} {t:>8} {tr:>12.0f} {at:>16.0f} {pg:>16.0f} {fg:>12.0f} {rss:>10.0f}",
                  flush=True)


if __name__ == "__main__":
    main()
