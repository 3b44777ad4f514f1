"""Makes the TorchScript models the TorchScript tests load, and PyTorch's logits for comparison.

    make_torchscript_models.py models OUT_DIR [--checkpoint robustlab.h5]
        writes OUT_DIR/{bn_cnn,rgb,normalised,range255,tuple,nan,custom,init_zoo*}.pt, init_zoo_fresh_{5,6}.h5 (and traced.pt, the checkpoint's
        network rebuilt by python/robustlab_io.py and traced) with fixed seeds
    make_torchscript_models.py logits MODEL IMAGES_H5 DATASET OUT_H5
        PyTorch's eval-mode logits of MODEL (a .pt file, or a robustlab checkpoint .h5 loaded by
        robustlab_io) on IMAGES_H5[DATASET] (pixels in [0,1]), written to OUT_H5["logits"]
"""

import os
import sys

import h5py
import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import robustlab_io  # noqa: E402


class BnCnn(nn.Module):
    """BatchNorm and dropout: eval mode matters, and BN statistics are buffers."""

    def __init__(self, channels=1, size=28, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(16 * (size // 4) ** 2, classes)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(self.drop(x.flatten(1)))


class Normalised(nn.Module):
    """Normalisation inside the model, as torchvision-style models carry it."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(0.2860))
        self.register_buffer("std", torch.tensor(0.3530))
        self.body = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10))

    def forward(self, x):
        return self.body((x - self.mean) / self.std)


class Range255(nn.Module):
    """A model whose inputs live in [0, 255]."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.body(x / 255.0)


class Tuple(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        y = self.fc(x.flatten(1))
        return y, y


class NaNs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


class InitZoo(nn.Module):
    """One of each layer type robustlab re-initialises for a from-scratch start, large enough for statistics."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 64, 5, padding=2)
        self.bn = nn.BatchNorm2d(64)
        self.conv1d = nn.Conv1d(4, 32, 3)
        self.deconv = nn.ConvTranspose2d(64, 8, 3)
        self.gn = nn.GroupNorm(4, 64)
        self.emb = nn.Embedding(300, 64, padding_idx=7)
        self.ln = nn.LayerNorm(256)
        self.prelu = nn.PReLU()
        self.fc1 = nn.Linear(64 * 4 * 4, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        h = self.prelu(self.gn(self.bn(self.conv(x))))
        return self.fc2(self.ln(self.fc1(torch.nn.functional.adaptive_avg_pool2d(h, 4).flatten(1))))


class Custom(nn.Module):
    """A user's own layer holding a parameter: no rule re-initialises it."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * self.scale


def trained_looking(model):
    """Weights no initialisation gives: every parameter and buffer filled with a value of its own."""
    with torch.no_grad():
        for i, t in enumerate(list(model.parameters()) + list(model.buffers())):
            t.fill_(3 + i)
    return model.eval()


def make_init_models(out):
    """init_zoo.pt (scripted, weights as if trained), init_zoo_traced.pt, init_zoo_fresh.pt (untrained),
    custom.pt, and init_zoo_fresh_SEED.h5: the state PyTorch's own constructors give after
    torch.manual_seed(SEED), for SEED 5 and 6."""
    torch.jit.save(torch.jit.script(trained_looking(InitZoo())), os.path.join(out, "init_zoo.pt"))
    torch.jit.save(torch.jit.trace(trained_looking(InitZoo()), torch.rand(2, 1, 28, 28)), os.path.join(out, "init_zoo_traced.pt"))
    torch.manual_seed(9)
    torch.jit.save(torch.jit.script(InitZoo().eval()), os.path.join(out, "init_zoo_fresh.pt"))
    torch.jit.save(torch.jit.script(Custom().eval()), os.path.join(out, "custom.pt"))
    for seed in (5, 6):
        torch.manual_seed(seed)
        state = InitZoo().state_dict()
        with h5py.File(os.path.join(out, "init_zoo_fresh_%d.h5" % seed), "w") as f:
            for name, t in state.items():
                f[name] = t.numpy()


def settle_batchnorm(model, shape):
    """Non-trivial BatchNorm statistics: a few training-mode passes over fixed random images."""
    g = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.rand(shape, generator=g))
    return model.eval()


def make_models(out, checkpoint):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(settle_batchnorm(BnCnn(), (64, 1, 28, 28))), os.path.join(out, "bn_cnn.pt"))
    rgb = settle_batchnorm(BnCnn(3, 32), (64, 3, 32, 32))
    torch.jit.save(torch.jit.trace(rgb, torch.rand(2, 3, 32, 32)), os.path.join(out, "rgb.pt"))
    torch.jit.save(torch.jit.script(Normalised().eval()), os.path.join(out, "normalised.pt"))
    torch.jit.save(torch.jit.script(Range255().eval()), os.path.join(out, "range255.pt"))
    torch.jit.save(torch.jit.script(Tuple().eval()), os.path.join(out, "tuple.pt"))
    torch.jit.save(torch.jit.script(NaNs().eval()), os.path.join(out, "nan.pt"))
    make_init_models(out)
    if checkpoint:
        model = robustlab_io.load_checkpoint(checkpoint)
        spec = robustlab_io.checkpoint_spec(checkpoint)
        example = torch.rand(2, spec["in_channels"], spec["height"], spec["width"])
        torch.jit.save(torch.jit.trace(model, example), os.path.join(out, "traced.pt"))


def logits(model_path, images, dataset, out):
    torch.set_num_threads(1)
    if model_path.endswith(".h5"):
        model = robustlab_io.load_checkpoint(model_path)
    else:
        model = torch.jit.load(model_path).eval()
    with h5py.File(images, "r") as f:
        x = torch.from_numpy(np.array(f[dataset])).float()
    if model_path.endswith("range255.pt"):
        x = x * 255.0
    with torch.no_grad():
        y = model(x)
    with h5py.File(out, "w") as f:
        f["logits"] = y.numpy().astype(np.float32)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "models":
        ckpt = sys.argv[4] if len(sys.argv) == 5 and sys.argv[3] == "--checkpoint" else ""
        make_models(sys.argv[2], ckpt)
    elif len(sys.argv) == 6 and sys.argv[1] == "logits":
        logits(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
