"""robustlab's files from Python: checkpoints as torch.nn.Module, results files as plain arrays.

Needs numpy, h5py and torch only. Copy this file next to your code or put python/ on PYTHONPATH.

    import robustlab_io as rl
    model = rl.load_checkpoint("cache/arm-seed0.h5")   # eval mode, takes pixels in [0, 1], returns logits
    res = rl.load_results("results/default.h5")        # {"attrs": {...}, "datasets": {"/eval/...": array}}
    ev = rl.evaluated("results/default.h5", "adv-pre+adv-ft", 0)  # the kept model and the very test images it was evaluated on

A checkpoint is rebuilt from its stored model_spec (cnn with any of its layer types, mlp, the
pre-activation resnet, the WideResNet, or a TorchScript model whose bytes the checkpoint holds) and loaded with
strict=True, so a tensor robustlab wrote and this module does not know is an error, not a silent gap.
"""

import gzip
import io
import os
import tomllib

import h5py
import numpy as np
import torch
from torch import nn

__all__ = ["load_checkpoint", "checkpoint_spec", "load_results", "load_split", "evaluated"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist, robustlab's default


def checkpoint_spec(path):
    """The model_spec table a checkpoint stores (a dict)."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != "robustlab-checkpoint-1":
            raise ValueError(f"{path}: not a robustlab checkpoint (attribute format != robustlab-checkpoint-1)")
        return tomllib.loads(f.attrs["model_spec"])


def _cnn_layers(spec):
    c, h, w = spec["in_channels"], spec["height"], spec["width"]
    layers, flat = [], None
    for i, layer in enumerate(spec.get("layers", [])):
        t = layer["type"]
        if t == "conv":
            k, s, p = layer.get("kernel", 3), layer.get("stride", 1), layer.get("padding", 0)
            layers.append(nn.Conv2d(c, layer["channels"], k, s, p))
            c, h, w = layer["channels"], (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        elif t == "bn":
            layers.append(nn.BatchNorm1d(flat) if flat is not None else nn.BatchNorm2d(c))
        elif t == "relu":
            layers.append(nn.ReLU())
        elif t in ("maxpool", "avgpool"):
            k, s = layer.get("kernel", 3), layer.get("stride", layer.get("kernel", 3))
            layers.append(nn.MaxPool2d(k, s) if t == "maxpool" else nn.AvgPool2d(k, s))
            h, w = (h - k) // s + 1, (w - k) // s + 1
        elif t in ("flatten", "fc"):
            if flat is None:
                layers.append(nn.Flatten())
                flat = c * h * w
            if t == "fc":
                layers.append(nn.Linear(flat, layer["units"]))
                flat = layer["units"]
        elif t == "dropout":
            layers.append(nn.Dropout(layer.get("p", 0.5)))
        else:
            raise ValueError(f"model.layers[{i}]: unknown layer type '{t}'")
    if flat is None:
        layers.append(nn.Flatten())
        flat = c * h * w
    return layers, flat


class _PreActBlock(nn.Module):
    """framework/models/resnet.cpp's block, with the same parameter names."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + sc


def _resnet_layers(spec):
    width = spec.get("resnet_width", 16)
    layers = [nn.Conv2d(spec["in_channels"], width, 3, 1, 1, bias=False)]
    cin = width
    for stage, blocks in enumerate(spec.get("resnet_blocks", [2, 2, 2])):
        cout = width << stage
        for b in range(blocks):
            layers.append(_PreActBlock(cin, cout, 2 if stage > 0 and b == 0 else 1))
            cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return layers, cin


def _wrn_layers(spec):
    """framework/models/model.cpp's appendWrn: WideResNet-depth-width."""
    n, k = (spec.get("wrn_depth", 28) - 4) // 6, spec.get("wrn_width", 10)
    layers, cin = [nn.Conv2d(spec["in_channels"], 16, 3, 1, 1, bias=False)], 16
    for stage, width in enumerate([16 * k, 32 * k, 64 * k]):
        for b in range(n):
            layers.append(_PreActBlock(cin, width, 2 if stage > 0 and b == 0 else 1))
            cin = width
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return layers, cin


class _Script(nn.Module):
    """A TorchScript model as robustlab holds it: pixels in [0,1] mapped to its input range."""

    def __init__(self, script, lo, hi):
        super().__init__()
        self.script, self.lo, self.hi = script, lo, hi

    def forward(self, x):
        return self.script(x if (self.lo, self.hi) == (0.0, 1.0) else x * (self.hi - self.lo) + self.lo)


class RobustlabClassifier(nn.Module):
    """normalisation, backbone, head: ClassifierImpl of framework/models/model.h."""

    def __init__(self, backbone, head, mean, std):
        super().__init__()
        self.backbone = backbone
        self.head = head
        # A number for every channel, or robustlab's per-channel buffers (1 x C x 1 x 1) as they are.
        self.register_buffer("input_mean", mean.clone().float() if torch.is_tensor(mean) else torch.full((1,), float(mean)))
        self.register_buffer("input_std", std.clone().float() if torch.is_tensor(std) else torch.full((1,), float(std)))

    def forward(self, x):
        f = self.backbone((x - self.input_mean) / self.input_std)
        return self.head(f) if self.head is not None else f


def _script_state(f, spec, state):
    """A TorchScript checkpoint: the script from its stored bytes, its weights and (when cut) its head put back."""
    script = torch.jit.load(io.BytesIO(np.array(f["model/torchscript"]).tobytes()), map_location="cpu")
    prefix = "backbone.0."
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    cut = spec.get("cut", "")
    lo, hi = spec.get("input_range", [0.0, 1.0])
    if cut:
        # robustlab keeps the cut layer as an identity and the head outside; here the head goes back in.
        layer = script
        for part in cut.split("."):
            layer = getattr(layer, part)
        own[cut + ".weight"] = state["head.weight"]
        if cut + ".bias" in own:  # the cut layer had a bias (its zeros are stored as a buffer)
            own[cut + ".bias"] = state["head.bias"]
        with torch.no_grad():
            layer.weight = nn.Parameter(torch.empty_like(state["head.weight"]))
            if getattr(layer, "bias", None) is not None:
                layer.bias = nn.Parameter(torch.empty_like(state["head.bias"]))
    missing = set(dict(script.named_parameters()).keys() | dict(script.named_buffers()).keys()) ^ set(own)
    if missing:
        raise ValueError(f"checkpoint and stored TorchScript disagree on tensors: {sorted(missing)[:5]}")
    with torch.no_grad():
        for name, t in list(script.named_parameters()) + list(script.named_buffers()):
            t.copy_(own[name].to(t.dtype))
    return _Script(script, float(lo), float(hi))


def load_checkpoint(path, device="cpu"):
    """A robustlab checkpoint as a torch.nn.Module in eval mode: pixels in [0,1] -> logits."""
    spec = checkpoint_spec(path)
    with h5py.File(path, "r") as f:
        state = {k: torch.from_numpy(np.array(v)) for k, v in _walk(f["state"])}
        arch = spec.get("arch", "cnn")
        if arch == "torchscript":
            model = RobustlabClassifier(_script_state(f, spec, state), None, state["input_mean"], state["input_std"])
            return model.to(device).eval()
    if arch == "cnn":
        layers, feat = _cnn_layers(spec)
    elif arch == "mlp":
        layers, feat = [nn.Flatten()], spec["in_channels"] * spec["height"] * spec["width"]
        for units in spec.get("hidden", []):
            layers += [nn.Linear(feat, units), nn.ReLU()]
            feat = units
    elif arch == "resnet":
        layers, feat = _resnet_layers(spec)
    elif arch == "wrn":
        layers, feat = _wrn_layers(spec)
    else:
        raise ValueError(f"{path}: unknown architecture '{arch}'")
    model = RobustlabClassifier(nn.Sequential(*layers), nn.Linear(feat, spec["num_classes"]), state["input_mean"], state["input_std"])
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _walk(group, prefix=""):
    """(dotted name, dataset) for every dataset under an HDF5 group, names as robustlab wrote them."""
    for k, v in group.items():
        if isinstance(v, h5py.Group):
            yield from _walk(v, prefix + k + "/")
        else:
            yield (prefix + k).replace("/", "."), v


def load_results(path):
    """A results (or any robustlab HDF5) file as {"attrs": {group path: {name: value}}, "datasets": {path: array}}."""
    out = {"attrs": {}, "datasets": {}}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            key = "/" + name
            if obj.attrs:
                out["attrs"][key] = {k: _plain(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out["datasets"][key] = np.array(obj)
        if f.attrs:
            out["attrs"]["/"] = {k: _plain(v) for k, v in f.attrs.items()}
        f.visititems(visit)
    return out


def _plain(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _idx(path):
    """An IDX file (plain or gzip) as a numpy array."""
    for cand in (path + ".gz", path):
        if os.path.exists(cand):
            data = (gzip.open if cand.endswith(".gz") else open)(cand, "rb").read()
            dims = data[3]
            shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
    raise FileNotFoundError(path + ".gz: missing (IDX file expected)")


def _cifar(folder, split, hundred, coarse):
    """CIFAR-10/100 binary batches: (images uint8 N x 3 x 32 x 32, labels)."""
    if not os.path.exists(os.path.join(folder, "data_batch_1.bin" if not hundred else "train.bin")):
        folder = os.path.join(folder, "cifar-100-binary" if hundred else "cifar-10-batches-bin")
    names = ([f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]) if not hundred else [split + ".bin"]
    rows = np.concatenate([np.fromfile(os.path.join(folder, n), dtype=np.uint8).reshape(-1, 3072 + (2 if hundred else 1)) for n in names])
    label = rows[:, 0 if (not hundred or coarse) else 1]
    return rows[:, -3072:].reshape(-1, 3, 32, 32), label


def load_split(data, split):
    """Images (N x C x H x W float32, pixels in [0,1]) and labels (int64) of a split, read as robustlab reads
    it: `data` is a config's [data] table (source, dir, train_file, test_file) and split is "train" or "test"."""
    source, folder = data.get("source", "fashion-mnist"), data.get("dir", "")
    if source in ("fashion-mnist", "mnist", "idx"):
        folder = folder or (FASHION_MNIST_DIR if source == "fashion-mnist" else os.environ.get("ROBUSTLAB_MNIST_DIR", "data/cache/mnist"))
        prefix = "train" if split == "train" else "t10k"
        images = _idx(os.path.join(folder, prefix + "-images-idx3-ubyte"))[:, None]
        labels = _idx(os.path.join(folder, prefix + "-labels-idx1-ubyte"))
    elif source == "hdf5":
        with h5py.File(data["train_file" if split == "train" else "test_file"], "r") as f:
            return torch.from_numpy(np.array(f["images"], dtype=np.float32)), torch.from_numpy(np.array(f["labels"]).astype(np.int64))
    elif source in ("cifar10", "cifar100", "cifar100-coarse"):
        images, labels = _cifar(folder, split, source != "cifar10", source == "cifar100-coarse")
    else:
        raise ValueError(f"data.source '{source}': not readable here")
    x = torch.from_numpy(images.astype(np.float32)) / np.float32(255)  # robustlab: uint8 -> float32, then / 255
    return x, torch.from_numpy(labels.astype(np.int64))


def _resolve(path, results_path):
    """A path a run stored (relative to where it ran): as it is, else beside the results file."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    here = os.path.dirname(os.path.abspath(results_path))
    parts = path.replace("\\", "/").split("/")
    for k in range(len(parts)):
        cand = os.path.join(here, *parts[k:])
        if os.path.exists(cand):
            return cand
    return path


def evaluated(results_path, arm=None, seed=None):
    """What a results file evaluated, to check it with another tool: a dict with "model" (the kept trained
    model, eval mode, pixels in [0,1] -> logits), "images" and "labels" (the very test images and the labels
    the model was scored on, in the stored order), "indices" (their places in the data source's test
    split), "eval" (the HDF5 group of robustlab's evaluation), "config" (the resolved config, a dict).
    For `run` results give the arm and seed (default: the first of each); `attack` results have one model."""
    with h5py.File(results_path, "r") as f:
        fmt = _plain(f.attrs.get("format", ""))
        config = tomllib.loads(_plain(f.attrs["config"]))
        if fmt == "robustlab-experiment-1":
            arms = [a["name"] for a in config.get("arms", [])] or ["scratch", "pretrained"]
            arm = arm or arms[0]
            seed = int(np.array(f["seeds"])[0]) if seed is None else int(seed)
            group = f"/evaluated/{arm}/seed_{seed}"
            if group not in f:
                raise ValueError(f"{results_path}: no {group} (results of a robustlab older than the kept models, or no such arm x seed)")
            g = f[group]
            if "model_checkpoint" not in g.attrs:
                raise ValueError(f"{results_path}: arm {arm} seed {seed} kept no model (keep_models = false); rerun with keep_models = true")
            checkpoint = _resolve(_plain(g.attrs["model_checkpoint"]), results_path)
            indices = np.array(g["test_indices"])
            eval_group = f"/arms/{arm}/seed_{seed}/eval"
        elif fmt == "robustlab-results-1":
            if "checkpoint" not in f.attrs:
                raise ValueError(f"{results_path}: a TorchScript evaluation; load the .pt file with torch.jit.load")
            checkpoint = _resolve(_plain(f.attrs["checkpoint"]), results_path)
            indices = np.array(f["test_indices"])
            eval_group = "/eval/model"
        else:
            raise ValueError(f"{results_path}: not a results file of robustlab run or attack (format {fmt!r})")
    with h5py.File(checkpoint, "r") as f:
        classes = [int(c) for c in np.array(f["task/classes"])] if "task/classes" in f else []
    images, labels = load_split(config.get("data", {}), "test")
    idx = torch.from_numpy(indices.astype(np.int64))
    images, labels = images[idx], labels[idx]
    if classes:  # relabelled 0..k-1 in the task's order, as robustlab does
        remap = torch.full((int(labels.max()) + 1,), -1, dtype=torch.int64)
        remap[torch.tensor(classes)] = torch.arange(len(classes))
        labels = remap[labels]
    return {"model": load_checkpoint(checkpoint), "images": images, "labels": labels, "indices": indices,
            "eval": eval_group, "config": config, "checkpoint": checkpoint}
