"""robustlab's files from Python: checkpoints as torch.nn.Module, results files as plain arrays.

Needs numpy, h5py and torch only. Copy this file next to your code or put python/ on PYTHONPATH.

    import robustlab_io as rl
    model = rl.load_checkpoint("cache/arm-seed0.h5")   # eval mode, takes pixels in [0, 1], returns logits
    res = rl.load_results("results/default.h5")        # {"attrs": {...}, "datasets": {"/eval/...": array}}

A checkpoint is rebuilt from its stored model_spec (cnn with any of its layer types, mlp, the
pre-activation resnet, the WideResNet, or a TorchScript model whose bytes the checkpoint holds) and loaded with
strict=True, so a tensor robustlab wrote and this module does not know is an error, not a silent gap.
"""

import io
import tomllib

import h5py
import numpy as np
import torch
from torch import nn

__all__ = ["load_checkpoint", "checkpoint_spec", "load_results"]


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
        self.register_buffer("input_mean", torch.full((1,), float(mean)))
        self.register_buffer("input_std", torch.full((1,), float(std)))

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
            model = RobustlabClassifier(_script_state(f, spec, state), None, state["input_mean"][0], state["input_std"][0])
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
    model = RobustlabClassifier(nn.Sequential(*layers), nn.Linear(feat, spec["num_classes"]), 0.0, 1.0)
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
