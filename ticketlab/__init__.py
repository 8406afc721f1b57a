"""ticketlab: a Jupyter-native workbook for the science of sparse neural networks.

The public API, one module per idea:

* ``config``: ``device()``, ``quick()``, ``budget()``, ``cache_dir()``, ``generator()``
* ``data``: ``xor()``, ``mnist()`` returning ``Dataset``\\s of on-device ``Split``\\s
* ``models``: ``xor_mlp``, ``lenet_300_100``, ``conv4``, ``resnet``
* ``train``: ``train()``, ``TrainConfig``, ``TrainResult``, ``evaluate()``
* ``optim``: ``FusedAdam``, ``FusedSGD``, the trainer's lean fused optimizer steps
* ``population``: ``train_population()``, many small networks as one batched computation
* ``masks`` / ``prune``: ``Mask`` and pure pruning functions returning new masks
* ``rewind``: ``rewind()`` and the controls (``reinit``, ``random``, ``shuffled``, ``sign``)
* ``recipes`` / ``imp``: hashed experiment configs and cached, resumable IMP (``imp.run``)
* ``verdict``, ``connectivity``, ``plots``: pre-registered claims, mode connectivity, figures
* ``audit``: which outcomes hold on every machine (threads, seed sets, rounding), and notes on them
"""

from __future__ import annotations

from . import connectivity, experiments, imp, optim, plots, prune, recipes, seeds, verdict
from .config import budget, cache_dir, device, generator, quick
from .data import Dataset, Split, mnist, xor
from .masks import Mask
from .models import conv4, lenet_300_100, resnet, xor_mlp
from .population import train_population
from .recipes import Recipe
from .rewind import control, rewind
from .train import TrainConfig, TrainResult, evaluate, train
from .verdict import Claim, Verdict

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``audit`` loads on first use: it is also a command (``python -m ticketlab.audit``), which
    # must not find itself already imported by the package.
    if name == "audit":
        import importlib

        return importlib.import_module(f"{__name__}.audit")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Claim",
    "Dataset",
    "Mask",
    "Recipe",
    "Split",
    "TrainConfig",
    "TrainResult",
    "Verdict",
    "__version__",
    "audit",
    "budget",
    "cache_dir",
    "connectivity",
    "control",
    "conv4",
    "device",
    "evaluate",
    "experiments",
    "generator",
    "imp",
    "lenet_300_100",
    "mnist",
    "optim",
    "plots",
    "prune",
    "quick",
    "recipes",
    "resnet",
    "rewind",
    "seeds",
    "train",
    "train_population",
    "verdict",
    "xor",
    "xor_mlp",
]
