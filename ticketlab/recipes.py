"""Experiment recipes: frozen configs with a canonical string that is hashed into a cache key.

A ``Recipe`` bundles four frozen dataclasses (``ModelSpec``, ``DataSpec``, ``TrainConfig``,
``PruneSpec``). Its canonical string lists, sorted, only the fields that differ from their
defaults (``"model.name=lenet_300_100;train.lr=0.0012;..."``), so adding a new field with a default
never changes existing hashes (the open_lth convention). ``recipe.key`` is a short SHA-256 of that
string and names the recipe's cache folder.

Field names are unique across the four parts, so any field can be overridden by keyword:
``get("lenet_mnist_paper", steps=500, prune_scope="global")``.

Presets (``get(name)``; ``names()`` lists them) come with a quick and a full budget; ``get``
picks by ``ticketlab.quick()`` unless ``budget="quick"|"full"`` is given.
``lenet_mnist_paper`` and ``lenet_mnist_openlth`` train on the bundled 5k MNIST subset; the
``*_full`` presets are the same papers' recipes at their own scale, on full MNIST (55,000 train /
5,000 validation / 10,000 test).
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace

from torch import nn

from . import models as _models
from .config import quick
from .training import TrainConfig

__all__ = ["DataSpec", "ModelSpec", "PruneSpec", "Recipe", "get", "names"]


@dataclass(frozen=True)
class ModelSpec:
    """Which network to build: ``name`` is a constructor in ``ticketlab.models``."""

    name: str = "lenet_300_100"
    init: str = "glorot_normal"
    hidden: int = 2  # xor_mlp only
    activation: str = "relu"  # xor_mlp only
    depth: int = 8  # resnet only
    width: int = 16  # resnet / conv4

    def __post_init__(self) -> None:
        if self.name not in _BUILDERS:
            raise ValueError(f"unknown model {self.name!r}; choose one of {sorted(_BUILDERS)}")
        if self.init not in _models.INITS:
            raise ValueError(f"unknown init {self.init!r}; choose one of {_models.INITS}")

    def build(self, seed: int) -> nn.Module:
        """The network initialized from ``seed``."""
        return _BUILDERS[self.name](self, seed)


_BUILDERS: dict[str, Callable[[ModelSpec, int], nn.Module]] = {
    "lenet_300_100": lambda s, seed: _models.lenet_300_100(init=s.init, seed=seed),
    "xor_mlp": lambda s, seed: _models.xor_mlp(s.hidden, s.activation, init=s.init, seed=seed),
    "conv4": lambda s, seed: _models.conv4(init=s.init, seed=seed, width=s.width),
    "resnet": lambda s, seed: _models.resnet(s.depth, s.width, init=s.init, seed=seed),
}


@dataclass(frozen=True)
class DataSpec:
    """Which data: ``dataset`` "mnist" (``subset`` "5k" or "full") or "xor"."""

    dataset: str = "mnist"
    subset: str = "5k"
    split_seed: int = 0
    noise: float = 0.0  # xor only

    def __post_init__(self) -> None:
        if self.dataset not in ("mnist", "xor"):
            raise ValueError(f"unknown dataset {self.dataset!r}; choose 'mnist' or 'xor'")

    def load(self, device=None):
        """The ``ticketlab.data.Dataset`` on ``device``."""
        from . import data

        if self.dataset == "xor":
            return data.xor(noise=self.noise, seed=self.split_seed, device=device)
        return data.mnist(subset=self.subset, seed=self.split_seed, device=device)


@dataclass(frozen=True)
class PruneSpec:
    """How IMP prunes: ``prune_fraction`` of the remaining weights per round, per layer or
    globally; ``layer_rates`` overrides per layer as (name, rate) pairs (rate 0 = never pruned);
    ``rewind_step`` is the step the survivors are reset to (0 = original initialization);
    ``control_draws`` is the number of independent draws of each random control per round (the
    paper reinitializes each ticket three times; the default 1 leaves every existing key as it
    was, since the canonical string lists only non-default fields)."""

    prune_fraction: float = 0.2
    prune_scope: str = "layerwise"
    layer_rates: tuple[tuple[str, float], ...] = ()
    rewind_step: int = 0
    control_draws: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.prune_fraction < 1:
            raise ValueError(f"prune_fraction must lie in (0, 1), got {self.prune_fraction}")
        if self.prune_scope not in ("layerwise", "global"):
            raise ValueError(
                f"prune_scope must be 'layerwise' or 'global', got {self.prune_scope!r}"
            )
        # One spelling per meaning, so equal recipes share a key: a dict, a list or an unsorted
        # tuple of (name, rate) pairs all become the same sorted tuple of (str, float).
        pairs = self.layer_rates
        pairs = pairs.items() if isinstance(pairs, Mapping) else pairs
        rates = tuple(sorted((str(name), float(rate)) for name, rate in pairs))
        object.__setattr__(self, "layer_rates", rates)
        if self.rewind_step < 0:
            raise ValueError(f"rewind_step must be >= 0, got {self.rewind_step}")
        draws = self.control_draws
        if isinstance(draws, bool) or not isinstance(draws, numbers.Integral) or draws < 1:
            raise ValueError(
                f"control_draws must be an int >= 1 (independent draws of each control per "
                f"round), got {draws!r}; pass e.g. control_draws=3"
            )
        object.__setattr__(self, "control_draws", int(draws))  # NumPy ints: one spelling


_PARTS = {"model": ModelSpec, "data": DataSpec, "train": TrainConfig, "prune": PruneSpec}


@dataclass(frozen=True)
class Recipe:
    """A complete experiment configuration; ``key`` names its cache folder."""

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneSpec = field(default_factory=PruneSpec)
    name: str = ""  # the preset it came from; informational, not part of the key

    def replace(self, **overrides) -> Recipe:
        """A copy with fields overridden by their (unique) names, e.g. ``steps=500``."""
        parts: dict[str, dict] = {p: {} for p in _PARTS}
        for key, value in overrides.items():
            owner = _OWNER.get(key)
            if owner is None:
                raise TypeError(f"unknown recipe field {key!r}; valid fields: {sorted(_OWNER)}")
            parts[owner][key] = value
        return replace(
            self,
            **{p: replace(getattr(self, p), **kw) for p, kw in parts.items() if kw},
        )

    @property
    def canonical(self) -> str:
        """Sorted ``part.field=value`` pairs for every non-default field, joined by ``;``.

        A number is written in the type of the field's default, so equal settings share a key:
        ``lr=1``, ``lr=1.0`` and ``lr=np.float64(1)`` all read ``train.lr=1.0``.
        """
        items = []
        for part, cls in _PARTS.items():
            spec, default = getattr(self, part), cls()
            for f in fields(cls):
                value, standard = getattr(spec, f.name), getattr(default, f.name)
                if value != standard:
                    items.append(f"{part}.{f.name}={_canonical_number(value, standard)!r}")
        return ";".join(sorted(items))

    @property
    def key(self) -> str:
        """16 hex digits of SHA-256 of the canonical string: the cache folder's name."""
        return hashlib.sha256(self.canonical.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"Recipe({label}key={self.key}: {self.canonical or 'all defaults'})"


_OWNER = {f.name: part for part, cls in _PARTS.items() for f in fields(cls)}


def _canonical_number(value, standard):
    """``value`` as a plain Python number of ``standard``'s type (float or int) when it is a real
    number (NumPy scalars included); anything else unchanged."""
    if isinstance(value, bool) or isinstance(standard, bool):
        return value
    if isinstance(value, numbers.Real) and isinstance(standard, float):
        return float(value)
    if isinstance(value, numbers.Integral) and isinstance(standard, int):
        return int(value)
    return value


def _lenet_paper(budget: str) -> Recipe:
    # Frankle & Carbin (2019), Fig. 2 and App. G: Adam 1.2e-3, batch 60, Glorot normal,
    # layerwise 20 % per round, output layer at 10 %. The paper trains 50,000 iterations on
    # 55,000 images (~55 epochs); our 5k subset has 3,500 training images (58 batches of 60 per
    # epoch), so the full budget trains 40 epochs (~2,300 iterations) and the quick budget 10.
    steps = {"full": 2320, "quick": 580}[budget]
    return Recipe(
        model=ModelSpec("lenet_300_100", init="glorot_normal"),
        data=DataSpec("mnist", "5k"),
        train=TrainConfig(steps=steps, batch_size=60, optimizer="adam", lr=1.2e-3, eval_every=58),
        prune=PruneSpec(0.2, "layerwise", (("out.weight", 0.1),)),
        name="lenet_mnist_paper",
    )


def _lenet_openlth(budget: str) -> Recipe:
    # open_lth's mnist_lenet_300_100: SGD 0.1, batch 128, Kaiming normal, 40 epochs, global
    # pruning 20 % with the output layer excluded. 3,500 images / 128 = 27 batches per epoch.
    steps = {"full": 1080, "quick": 270}[budget]
    return Recipe(
        model=ModelSpec("lenet_300_100", init="kaiming_normal"),
        data=DataSpec("mnist", "5k"),
        train=TrainConfig(steps=steps, batch_size=128, optimizer="sgd", lr=0.1, eval_every=27),
        prune=PruneSpec(0.2, "global", (("out.weight", 0.0),)),
        name="lenet_mnist_openlth",
    )


def _lenet_paper_full(budget: str) -> Recipe:
    # Frankle & Carbin (2019) at the paper's own scale: full MNIST split as in its App. G.1
    # (55,000 train / 5,000 validation / 10,000 test), 50,000 iterations of batch 60 (~54.6
    # epochs of 916 batches), evaluating validation and test every 100 iterations, Adam 1.2e-3,
    # Glorot normal, layerwise 20 % per round with the output layer at 10 %, and each ticket's
    # random controls drawn three times ("We randomly reinitialize each winning ticket three
    # times"). The quick budget is the same recipe on the same full data, cut to 5,000
    # iterations (~5.5 epochs), so a quick run still exercises the paper's data and cadence.
    steps = {"full": 50_000, "quick": 5_000}[budget]
    return Recipe(
        model=ModelSpec("lenet_300_100", init="glorot_normal"),
        data=DataSpec("mnist", "full"),
        train=TrainConfig(steps=steps, batch_size=60, optimizer="adam", lr=1.2e-3, eval_every=100),
        prune=PruneSpec(0.2, "layerwise", (("out.weight", 0.1),), control_draws=3),
        name="lenet_mnist_paper_full",
    )


def _lenet_openlth_full(budget: str) -> Recipe:
    # open_lth's mnist_lenet_300_100 at its own scale: SGD 0.1 (no momentum, constant rate),
    # batch 128, Kaiming normal, 40 epochs, evaluated once per epoch, global pruning 20 % with the
    # output layer excluded. open_lth trains on all 60,000 images, ceil(60000/128) = 469 batches
    # per epoch (its loader keeps the last partial batch), so 40 epochs = 18,760 iterations. Our
    # full split holds out 5,000 images for validation, leaving 55,000, and ``train`` drops the
    # last partial batch of each epoch: 55000 // 128 = 429 batches per epoch (88 images carried
    # into the next epoch's shuffle), so 40 epochs = 17,160 iterations and eval_every = 429.
    # (Counting open_lth's way, ceil(55000/128) = 430 would give 17,200, which does not end on
    # one of our epoch boundaries.) The quick budget is 10 of those epochs (4,290 iterations).
    steps = {"full": 40 * 429, "quick": 10 * 429}[budget]
    return Recipe(
        model=ModelSpec("lenet_300_100", init="kaiming_normal"),
        data=DataSpec("mnist", "full"),
        train=TrainConfig(steps=steps, batch_size=128, optimizer="sgd", lr=0.1, eval_every=429),
        prune=PruneSpec(0.2, "global", (("out.weight", 0.0),)),
        name="lenet_mnist_openlth_full",
    )


_PRESETS: dict[str, Callable[[str], Recipe]] = {
    "lenet_mnist_paper": _lenet_paper,
    "lenet_mnist_openlth": _lenet_openlth,
    "lenet_mnist_paper_full": _lenet_paper_full,
    "lenet_mnist_openlth_full": _lenet_openlth_full,
}


def names() -> list[str]:
    """The preset names ``get`` accepts."""
    return sorted(_PRESETS)


def get(name: str | Recipe, budget: str | None = None, **overrides) -> Recipe:
    """The preset ``name`` at the quick or full budget (default: by ``ticketlab.quick()``),
    with keyword ``overrides`` applied. A ``Recipe`` passes through (overrides applied)."""
    if isinstance(name, Recipe):
        return name.replace(**overrides)
    if name not in _PRESETS:
        raise ValueError(f"unknown recipe {name!r}; available: {names()}")
    if budget is None:
        budget = "quick" if quick() else "full"
    if budget not in ("quick", "full"):
        raise ValueError(f"budget must be 'quick' or 'full', got {budget!r}")
    return _PRESETS[name](budget).replace(**overrides)
