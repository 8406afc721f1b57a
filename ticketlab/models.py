"""The networks of the labs, each built deterministically from a seed.

Every constructor takes ``seed`` and ``init`` and draws all weights from its own
``torch.Generator``, so the same arguments give bit-identical weights on CPU, whatever ran before.

Init schemes (weights of Linear and Conv layers; biases start at zero):

* ``"glorot_normal"``: N(0, 2 / (fan_in + fan_out)), as in Frankle & Carbin (2019).
* ``"kaiming_normal"``: N(0, 2 / fan_in), as in open_lth.

Models are ``nn.Sequential`` with named children so parameter names read well in masks and
reports (``fc1.weight``, ``out.weight``). Classifiers return logits of shape (N, classes), except
``xor_mlp`` which returns one logit of shape (N, 1).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import pairwise

import torch
from torch import nn

from .config import generator

__all__ = [
    "INITS",
    "LENET_300_100_WIDTHS",
    "conv4",
    "init_",
    "lenet_300_100",
    "mlp",
    "output_name",
    "perturbed_init",
    "prunable_names",
    "resnet",
    "xor_mlp",
]

INITS = ("glorot_normal", "kaiming_normal")
LENET_300_100_WIDTHS = (784, 300, 100, 10)
"""Layer widths of LeNet-300-100, inputs first."""
_PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


_PERTURBATION_SEED = 7_919_000_000  # keeps the perturbation's draws apart from every init's


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


_INIT_PERTURBATION: ContextVar[float] = ContextVar("ticketlab_init_perturbation", default=0.0)
"""Relative size of the audit's perturbation of initial weights; 0 (off) outside the audit."""


@contextmanager
def perturbed_init(relative: float) -> Iterator[None]:
    """Inside this block, every weight ``init_`` draws is multiplied by ``1 + relative · ε``.

    ``ε`` is standard normal, drawn from a generator seeded with the model's seed (offset by a
    fixed constant), so a perturbed run is as repeatable as an unperturbed one. Only the
    robustness audit (``ticketlab.audit``) uses this, to stand in for another CPU's rounding; it
    is a context manager (a context variable, not global state) so that nothing outside the block
    sees it. Results computed inside must not share a result cache with normal runs.
    """
    if not (isinstance(relative, (int, float)) and math.isfinite(relative) and relative >= 0):
        raise ValueError(f"relative must be a finite float >= 0, got {relative!r}")
    token = _INIT_PERTURBATION.set(float(relative))
    try:
        yield
    finally:
        _INIT_PERTURBATION.reset(token)


def init_(model: nn.Module, init: str = "glorot_normal", seed: int = 0) -> nn.Module:
    """Re-initialize ``model`` in place and return it.

    Linear/Conv weights are drawn from ``init`` (see module docstring) with a generator seeded by
    ``seed``; their biases become zero. BatchNorm layers get γ = 1, β = 0 and fresh running
    statistics (``ticketlab.batchnorm`` offers the γ ~ U[0, 1] init of open_lth). Draws happen
    on the CPU in ``model.named_modules()`` order and are copied to each parameter's device, so a
    seed gives the same weights on every device.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")
    gen = generator(seed)
    relative = _INIT_PERTURBATION.get()
    noise = generator(seed + _PERTURBATION_SEED) if relative else None
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _PRUNABLE):
                fan_in, fan_out = _fans(module.weight)
                var = 2.0 / (fan_in + fan_out) if init == "glorot_normal" else 2.0 / fan_in
                draw = torch.randn(module.weight.shape, generator=gen) * math.sqrt(var)
                if noise is not None:
                    draw *= 1 + relative * torch.randn(draw.shape, generator=noise)
                module.weight.copy_(draw)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, _BATCHNORM):
                module.reset_parameters()
    return model


def xor_mlp(
    hidden: int = 2, activation: str = "relu", init: str = "glorot_normal", seed: int = 0
) -> nn.Sequential:
    """2 → ``hidden`` → 1 MLP for XOR; returns one logit per example, shape (N, 1).

    ``activation`` is ``"relu"`` or ``"tanh"``. Two hidden units are the fewest that can represent
    XOR, and they often fail to learn it: the starting point of ``01_xor_lottery``.
    """
    if hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden}")
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh}
    if activation not in acts:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(acts)}")
    layers = OrderedDict(
        fc1=nn.Linear(2, hidden), act1=acts[activation](), out=nn.Linear(hidden, 1)
    )
    return init_(nn.Sequential(layers), init, seed)


def mlp(widths: Sequence[int], init: str = "glorot_normal", seed: int = 0) -> nn.Sequential:
    """A ReLU MLP with layer widths ``widths`` (inputs first): ``flatten, fc1, relu1, …, out``.

    Input (N, widths[0]), or any (N, ...) that flattens to it; logits (N, widths[-1]). No ReLU
    after ``out``. ``lenet_300_100`` is ``mlp(LENET_300_100_WIDTHS)``; other widths let the
    hardware lab time wider or deeper layers.
    """
    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise ValueError(f"widths must list at least 2 positive layer sizes, got {widths!r}")
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    pairs = list(pairwise(int(w) for w in widths))
    for i, (fan_in, fan_out) in enumerate(pairs, start=1):
        last = i == len(pairs)
        layers["out" if last else f"fc{i}"] = nn.Linear(fan_in, fan_out)
        if not last:
            layers[f"relu{i}"] = nn.ReLU()
    return init_(nn.Sequential(layers), init, seed)


def lenet_300_100(init: str = "glorot_normal", seed: int = 0) -> nn.Sequential:
    """LeNet-300-100 (784-300-100-10, ReLU): 266,610 parameters; input (N, 1, 28, 28) or (N, 784).

    The fully connected network of Frankle & Carbin (2019), Figure 2.
    """
    return mlp(LENET_300_100_WIDTHS, init, seed)


def conv4(init: str = "glorot_normal", seed: int = 0, width: int = 32) -> nn.Sequential:
    """A small Conv-4-style net for MNIST: two blocks of two 3×3 convs + max-pool, then 256-10.

    Shaped after the Conv-2/4/6 family of Frankle & Carbin (2019), scaled to 28×28 inputs.
    Input (N, 1, 28, 28); logits (N, 10).
    """
    w = width
    layers = OrderedDict(
        conv1=nn.Conv2d(1, w, 3, padding=1),
        relu1=nn.ReLU(),
        conv2=nn.Conv2d(w, w, 3, padding=1),
        relu2=nn.ReLU(),
        pool1=nn.MaxPool2d(2),
        conv3=nn.Conv2d(w, 2 * w, 3, padding=1),
        relu3=nn.ReLU(),
        conv4=nn.Conv2d(2 * w, 2 * w, 3, padding=1),
        relu4=nn.ReLU(),
        pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(),
        fc1=nn.Linear(2 * w * 7 * 7, 256),
        relu5=nn.ReLU(),
        out=nn.Linear(256, 10),
    )
    return init_(nn.Sequential(layers), init, seed)


class _Block(nn.Module):
    """The CIFAR ResNet basic block: conv-BN-ReLU-conv-BN plus a (projected) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                    bn=nn.BatchNorm2d(cout),
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


def resnet(
    depth: int = 8,
    width: int = 16,
    init: str = "kaiming_normal",
    seed: int = 0,
    in_channels: int = 1,
) -> nn.Sequential:
    """A CIFAR-style ResNet (He et al. 2016) sized for MNIST: depth = 6n + 2 (8, 14, 20, 32, ...).

    Three stages of n basic blocks with ``width``, 2·``width``, 4·``width`` channels (strides 1,
    2, 2), BatchNorm2d after every conv, global average pooling, then a linear output layer ``out``.
    Input (N, ``in_channels``, H, W); logits (N, 10). Used by the BatchNorm-only experiments.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}")
    n = (depth - 2) // 6
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        bn=nn.BatchNorm2d(width),
        relu=nn.ReLU(),
    )
    cin = width
    for stage, (cout, stride) in enumerate([(width, 1), (2 * width, 2), (4 * width, 2)], start=1):
        for b in range(n):
            layers[f"block{stage}_{b}"] = _Block(cin, cout, stride if b == 0 else 1)
            cin = cout
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["out"] = nn.Linear(cin, 10)
    return init_(nn.Sequential(layers), init, seed)


def prunable_names(
    model: nn.Module, include_bias: bool = False, include_batchnorm: bool = False
) -> list[str]:
    """Names of the parameters pruning may touch, in ``named_parameters()`` order.

    By default the weights of Linear and Conv layers; biases and BatchNorm γ/β only when asked.
    Chosen by module type, never by name, so a BatchNorm ``weight`` is never mistaken for one.
    """
    wanted: set[str] = set()
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, _PRUNABLE):
            wanted.add(dot + "weight")
            if include_bias and module.bias is not None:
                wanted.add(dot + "bias")
        elif include_batchnorm and isinstance(module, _BATCHNORM) and module.affine:
            wanted.update({dot + "weight", dot + "bias"})
    return [name for name, _ in model.named_parameters() if name in wanted]


def output_name(model: nn.Module) -> str:
    """Name of the output layer's weight: the last Linear layer (e.g. ``"out.weight"``)."""
    last = None
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = f"{prefix}.weight" if prefix else "weight"
    if last is None:
        raise ValueError("model has no nn.Linear layer, so it has no output layer to name")
    return last
