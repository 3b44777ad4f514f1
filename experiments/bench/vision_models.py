"""Throughput of the CIFAR-scale models on this CPU: clean and PGD-10 adversarial training (images/s)
and PGD-20 evaluation (image-steps/s) for PreAct ResNet-18 and WRN-16-4 on 32 x 32 x 3 inputs.

    python3 experiments/bench/vision_models.py [--robustlab build/robustlab] [--train 1000] [--attack 200] [--threads 2]

The images are random bytes written in CIFAR-10's binary format (the real files are not reachable here;
speed does not depend on the pixel values). Each figure is one robustlab process: `train` for one
epoch (seconds from the checkpoint's history), `attack` with PGD-20 at eps 8/255 on every step
(`--no-early-stop`; seconds from the results file). Beside each, PyTorch eager (Debian's python3-torch
on the same LibTorch) on the same network (rebuilt by python/robustlab_io.py), batch, optimizer and step
counts, in the same run, without augmentation (it costs little beside these networks). Prints a table.
"""

import argparse
import os
import subprocess
import tempfile

import sys
import time

import h5py
import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
import robustlab_io  # noqa: E402  (the same networks, rebuilt in PyTorch)

SPECS = {
    "PreAct ResNet-18": {"arch": "resnet", "in_channels": 3, "resnet_width": 64, "resnet_blocks": [2, 2, 2, 2]},
    "WRN-16-4": {"arch": "wrn", "in_channels": 3, "wrn_depth": 16, "wrn_width": 4},
}


def pytorch_reference(name, n_train, n_attack, threads):
    """PyTorch eager (Debian's python3-torch) on the same network, batch and step counts, random data."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = SPECS[name]
    layers, feat = robustlab_io._resnet_layers(spec) if spec["arch"] == "resnet" else robustlab_io._wrn_layers(spec)
    model = nn.Sequential(nn.Sequential(*layers), nn.Linear(feat, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x_all, y_all = torch.rand(n_train, 3, 32, 32), torch.randint(0, 10, (n_train,))
    eps, alpha = 8 / 255, 2.5 * 8 / 255 / 10

    def pgd(x, y, steps, a):
        d = (torch.rand_like(x) * 2 - 1) * eps
        for _ in range(steps):
            d.requires_grad_(True)
            loss = nn.functional.cross_entropy(model((x + d).clamp(0, 1)), y)
            g, = torch.autograd.grad(loss, d)
            d = (d.detach() + a * g.sign()).clamp(-eps, eps)
        return (x + d).clamp(0, 1).detach()

    rates = []
    for adversarial in (False, True):
        model.train()
        t0 = time.perf_counter()
        for i in range(0, n_train, 128):
            x, y = x_all[i:i + 128], y_all[i:i + 128]
            if adversarial:
                model.eval()  # robustlab's PGD-AT attacks in eval mode too
                for p in model.parameters():
                    p.requires_grad_(False)
                x = pgd(x, y, 10, alpha)
                for p in model.parameters():
                    p.requires_grad_(True)
                model.train()
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        rates.append(n_train / (time.perf_counter() - t0))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = x_all[:n_attack], y_all[:n_attack]
    t0 = time.perf_counter()
    pgd(x, y, 20, 2.5 * eps / 20)
    rates.append(n_attack * 20 / (time.perf_counter() - t0))
    return rates


MODELS = {
    "PreAct ResNet-18": ["model.arch=resnet", "model.resnet_width=64", "model.resnet_blocks=[2,2,2,2]"],
    "WRN-16-4": ["model.arch=wrn", "model.wrn_depth=16", "model.wrn_width=4"],
}


def write_cifar(d, train, test):
    rng = np.random.default_rng(0)
    os.makedirs(d, exist_ok=True)
    per = train // 5
    for i in range(5):
        rec = rng.integers(0, 256, size=(per, 3073), dtype=np.uint8)
        rec[:, 0] = np.arange(per) % 10
        rec.tofile(os.path.join(d, f"data_batch_{i + 1}.bin"))
    rec = rng.integers(0, 256, size=(test, 3073), dtype=np.uint8)
    rec[:, 0] = np.arange(test) % 10
    rec.tofile(os.path.join(d, "test_batch.bin"))


def run(cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robustlab", default="build/robustlab")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--attack", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="robustlab-vision-bench-")
    data = os.path.join(tmp, "cifar")
    write_cifar(data, a.train, a.attack)
    base = ["--set", "data.source=cifar10", "--set", f"data.dir={data}", "--set", "data.val_fraction=0", "--threads", str(a.threads), "-q"]
    print(f"{a.train} training images (1 epoch, batch 128, augmentation on), PGD-20 on {a.attack} images, {a.threads} thread(s)")
    print(f"{'model':18s} {'clean train img/s':>18s} {'PGD-10 AT img/s':>16s} {'PGD-20 img-steps/s':>19s}")
    for name, keys in MODELS.items():
        sets = [x for k in keys for x in ("--set", k)]
        rates = []
        for objective in ("standard", "pgd"):
            ckpt = os.path.join(tmp, f"{objective}.h5")
            run([a.robustlab, "train", *base, *sets, "--set", "train.epochs=1", "--set", f"train.objective={objective}",
                 "--set", "train.adv_eps=0.0313725", "--set", "train.adv_steps=10", "-o", ckpt])
            with h5py.File(ckpt, "r") as f:
                rates.append(a.train / float(np.array(f["history/seconds"])[0]))
        out = os.path.join(tmp, "attack.h5")
        run([a.robustlab, "attack", "--checkpoint", ckpt, "--attack", "pgd", "--eps", "0.0313725", "--steps", "20", "--limit", str(a.attack),
             "--no-early-stop", "--no-sanity", "--threads", str(a.threads), "--data-dir", data, "-q", "-o", out])
        with h5py.File(out, "r") as f:
            pgd = a.attack * 20 / float(np.array(f["eval/model/attacks/pgd/seconds"])[0])
        print(f"{name:18s} {rates[0]:18.1f} {rates[1]:16.1f} {pgd:19.1f}", flush=True)
        ref = pytorch_reference(name, a.train, a.attack, a.threads)
        print(f"{'  PyTorch eager':18s} {ref[0]:18.1f} {ref[1]:16.1f} {ref[2]:19.1f}   (ratio robustlab / PyTorch: "
              f"{rates[0] / ref[0]:.2f}, {rates[1] / ref[1]:.2f}, {pgd / ref[2]:.2f})", flush=True)


if __name__ == "__main__":
    main()
