"""ticketlab: a Jupyter-native workbook for the science of sparse neural networks.

The public API, one module per idea (``tl.<module>``):

* ``config``: ``device()``, ``quick()``, ``budget()``, ``cache_dir()``, ``generator()``
* ``data``: ``xor()``, ``mnist()`` returning ``Dataset``\\s of on-device ``Split``\\s
* ``models``: ``xor_mlp``, ``lenet_300_100``, ``conv4``, ``resnet``
* ``training``: ``train()``, ``TrainConfig``, ``TrainResult``, ``evaluate()``, one trainer contract
* ``population``: ``train_population()``, many small networks as one batched computation
* ``masks`` / ``prune``: ``Mask`` and pure pruning functions returning new masks
* ``rewinding``: ``rewind()`` and the controls (``reinit``, ``random``, ``shuffled``, ``sign``)
* ``recipes`` / ``imp``: hashed experiment configs and cached, resumable IMP (``imp.run``)
* ``distributed``: experiments' units of work on Dask or any ``concurrent.futures`` executor
* ``stats``, ``verdict``, ``seeds``: Student-t intervals, pre-registered claims, seed-set checks
* ``connectivity``, ``batchnorm``, ``sparsity``: mode connectivity, BatchNorm-only training,
  sparse storage formats
* ``experiments``, ``plots``, ``widgets``: the labs' experiments, figures and explorers
* ``audit``: which outcomes hold on every machine (threads, seed sets, rounding), and notes on them

Training needs only the first group, which is what ``import ticketlab`` loads; the rest (pandas'
plotting stack, scipy, seaborn, every experiment) loads on first use, so a fresh process starts
training quickly.
"""

from __future__ import annotations

import importlib

from .config import budget, cache_dir, device, generator, quick, threads
from .data import Dataset, Split, mnist, xor
from .masks import Mask
from .models import conv4, lenet_300_100, resnet, xor_mlp
from .population import train_population
from .rewinding import control, rewind
from .training import TrainConfig, TrainResult, evaluate, train

__version__ = "0.1.0"

threads()  # the thread policy (TICKETLAB_THREADS, else half the cores) before anything runs

_LAZY_MODULES = {
    "audit",
    "batchnorm",
    "cache",
    "config",
    "connectivity",
    "data",
    "distributed",
    "experiments",
    "imp",
    "masks",
    "models",
    "optim",
    "plots",
    "population",
    "prune",
    "recipes",
    "rewinding",
    "seeds",
    "sparsity",
    "stats",
    "timing",
    "training",
    "verdict",
    "widgets",
}
_LAZY_NAMES = {"Claim": "verdict", "Verdict": "verdict", "Recipe": "recipes"}


def __getattr__(name: str):
    # Loaded on first use (PEP 562). ``audit`` must load lazily anyway: it is also a command
    # (``python -m ticketlab.audit``), which must not find itself already imported by the package.
    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


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
    "batchnorm",
    "budget",
    "cache",
    "cache_dir",
    "config",
    "connectivity",
    "control",
    "conv4",
    "data",
    "device",
    "distributed",
    "evaluate",
    "experiments",
    "generator",
    "imp",
    "lenet_300_100",
    "masks",
    "mnist",
    "models",
    "plots",
    "population",
    "prune",
    "quick",
    "recipes",
    "resnet",
    "rewind",
    "rewinding",
    "seeds",
    "sparsity",
    "stats",
    "threads",
    "timing",
    "train",
    "train_population",
    "training",
    "verdict",
    "widgets",
    "xor",
    "xor_mlp",
]
