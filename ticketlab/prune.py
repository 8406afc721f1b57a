"""Pruning: choosing which weights to remove next. Every function returns a new ``Mask``.

Nothing here modifies the model or the mask it is given; to zero the weights, call
``mask.apply(model)``. The conventions every function follows:

* **Rates count remaining weights.** ``fraction=0.2`` removes 20% of the weights a layer still
  has, so k rounds leave about 0.8^k. The count removed from n kept weights is
  ``floor(fraction × n + 0.5)`` (round half up), computed in float64 exactly as Python computes
  ``math.floor(fraction * n + 0.5)``.
* **Scope.** ``"layerwise"`` ranks each layer on its own, so every layer loses the same share;
  ``"global"`` ranks all layers together, so layers with small weights lose more.
  ``layer_rates={"out.weight": 0.1}`` prunes the named layers on their own at their own rate in
  either scope (open_lth prunes the output layer at half rate; a rate of 0 never prunes a layer).
* **Ties are deterministic.** Entries are ranked by a stable ascending sort of their scores, so
  among equal scores the lower flat index (row-major ``flatten()`` order) is removed first; under
  ``"global"`` the flat order is the layers' concatenation in mask order. NaN scores count as 0.
* **No host–device synchronization.** Counts stay device tensors and the k lowest entries are
  found by ranking (argsort, then scattering ranks) instead of indexing with data-dependent
  shapes, so pruning on a GPU never makes Python wait.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from .config import generator
from .masks import Mask
from .models import prunable_names
from .training import loss_and_correct

__all__ = [
    "alive_units",
    "layer_density",
    "magnitude",
    "one_shot",
    "random",
    "shuffle",
    "snip",
    "top",
    "units",
]

_SCOPES = ("layerwise", "global")


def magnitude(
    model: nn.Module,
    mask: Mask,
    fraction: float,
    scope: str = "layerwise",
    layer_rates: Mapping[str, float] | None = None,
) -> Mask:
    """Remove ``fraction`` of the remaining weights, those smallest in absolute value.

    ``mask`` says which weights remain (``Mask.ones(model)`` before the first round) and which
    layers may be pruned. ``scope`` and ``layer_rates`` are explained in the module docstring.
    The model's current weights are ranked; pruned weights never come back.
    """
    mask.validate(model)
    _check_rate(fraction, "fraction")
    params = dict(model.named_parameters())
    scores = {name: params[name].detach().abs() for name in mask}
    return _prune_lowest(scores, mask, _groups(mask, fraction, scope, layer_rates))


def random(
    mask: Mask,
    fraction: float | None = None,
    seed: int = 0,
    scope: str = "layerwise",
    layer_rates: Mapping[str, float] | None = None,
) -> Mask:
    """A randomly chosen mask: the "random pruning" control.

    ``fraction=None``: a fresh mask with the same number of kept weights as ``mask`` in each
    layer (``"global"``: in total), at positions drawn uniformly over the whole layer (all
    layers); the sparsity pattern of a ticket without its choice of weights.
    ``fraction`` given: remove that fraction of the remaining weights, chosen uniformly at random
    (counts rounded as in ``magnitude``; ``layer_rates`` as there).
    Draws come from ``generator(seed)`` on the mask's device (one device for all layers), so a
    seed gives the same mask on every call, but not the same mask on CPU and CUDA.
    """
    gen = generator(seed, next(iter(mask.values())).device)
    scores = {
        name: torch.rand(keep.shape, generator=gen, device=keep.device)
        for name, keep in mask.items()
    }
    if fraction is not None:
        _check_rate(fraction, "fraction")
        return _prune_lowest(scores, mask, _groups(mask, fraction, scope, layer_rates))
    if layer_rates:
        raise ValueError("layer_rates needs a fraction; with fraction=None counts come from mask")
    everything = {name: torch.ones_like(keep) for name, keep in mask.items()}
    groups = [(names, _kept(mask, names)) for names, _ in _groups(mask, None, scope, None)]
    return _keep_top(scores, everything, groups)


def shuffle(mask: Mask, seed: int = 0) -> Mask:
    """Permute the entries of each layer's mask at random (Frankle et al. 2021's sanity check).

    Each layer keeps exactly as many weights as before, at uniformly random positions: what
    survives is the layerwise density, not which weights were chosen. Seeded like ``random``.
    """
    gen = generator(seed, next(iter(mask.values())).device)
    shuffled = {}
    for name, keep in mask.items():
        perm = torch.randperm(keep.numel(), generator=gen, device=keep.device)
        shuffled[name] = keep.flatten().index_select(0, perm).view_as(keep)
    return Mask._wrap(shuffled)


def one_shot(
    model: nn.Module,
    density: float,
    scope: str = "layerwise",
    layer_rates: Mapping[str, float] | None = None,
    mask: Mask | None = None,
    rate: float = 0.2,
) -> Mask:
    """Prune by magnitude straight to ``density`` (the fraction of weights kept) in one step.

    Each layer (``"global"``: all layers not in ``layer_rates`` together) keeps
    ``floor(density × n + 0.5)`` of its n weights, counted against its full size, not against
    what ``mask`` (default: nothing pruned yet) already removed; a layer already sparser than
    that is left as it is. A layer in ``layer_rates`` keeps, the same way, the density iterative
    pruning would leave it when the other layers, pruned at ``rate`` per round, reach
    ``density`` (``layer_density``; a rate of 0 keeps it dense).
    """
    mask = Mask.ones(model) if mask is None else mask
    mask.validate(model)
    _check_rate(density, "density")
    _check_rate(rate, "rate")
    params = dict(model.named_parameters())
    scores = {name: params[name].detach().abs() for name in mask}
    targets = []
    for names, own in _groups(mask, None, scope, layer_rates):
        kept = density if own is None else layer_density(density, own, rate)
        total = sum(mask[name].numel() for name in names)
        targets.append((names, math.floor(kept * total + 0.5)))
    return _keep_top(scores, mask, targets)


def layer_density(density: float, own_rate: float, rate: float) -> float:
    """What iterative pruning leaves a layer pruned at ``own_rate`` per round, when the layers
    pruned at ``rate`` have reached ``density``.

    k = log(density) / log(1 − rate) rounds leave it (1 − own_rate)^k, that is
    density^(log(1 − own_rate) / log(1 − rate)); an ``own_rate`` of 0 keeps it dense (1.0). For
    ``lenet_mnist_paper`` (20 %, output layer 10 %: Frankle & Carbin 2019) the output layer keeps
    density^0.472, e.g. 15.8 % when the hidden layers keep 2 %.
    """
    if not 0 < density <= 1:
        raise ValueError(f"density must lie in (0, 1], got {density!r}")
    if not 0 < rate < 1:
        raise ValueError(f"rate must lie in (0, 1) to reach a density, got {rate!r}")
    return density ** (math.log1p(-own_rate) / math.log1p(-rate))


def top(scores: Mapping[str, Tensor], densities: Mapping[str, float]) -> Mask:
    """Per layer, keep the ``floor(d × n + 0.5)`` highest-scoring of its n entries (d: its density).

    ``scores`` maps parameter names to float tensors of their shapes (any device); ``densities``
    names the same layers. Ranked as every function here ranks (module docstring: ties and NaN).
    Returns a ``Mask`` on the scores' devices.
    """
    differ = sorted(set(scores) ^ set(densities))
    if differ:
        raise ValueError(f"scores and densities must name the same layers; they differ in {differ}")
    for name, d in densities.items():
        _check_rate(d, f"densities[{name!r}]")
    everything = {name: torch.ones_like(score, dtype=torch.bool) for name, score in scores.items()}
    groups = [([name], math.floor(densities[name] * s.numel() + 0.5)) for name, s in scores.items()]
    return _keep_top(scores, everything, groups)


def alive_units(mask: Mask, layers: tuple[str, str] = ("fc1.weight", "out.weight")) -> Tensor:
    """Bool tensor (hidden,): which hidden units of a one-hidden-layer MLP still compute.

    ``layers`` names the weights into and out of the hidden layer, shapes (hidden, inputs) and
    (outputs, hidden). A unit is alive while it keeps at least one incoming and one outgoing
    weight. ``alive_units(mask).sum()`` counts them.
    """
    into, out = layers
    return mask[into].any(dim=1) & mask[out].any(dim=0)


def units(model: nn.Module, mask: Mask, n_keep: int) -> Mask:
    """Structured pruning of a one-hidden-layer MLP (``xor_mlp``): keep the ``n_keep`` best units.

    Hidden unit j scores ``‖w_out[:, j]‖₂ · ‖w_in[j, :]‖₂`` with pruned weights counted as zero
    (for a single output, ``|w_out[0, j]| · ‖w_in[j]‖₂``: how strongly the unit can move the logit
    through a ReLU). Of the alive units the ``n_keep`` highest-scoring stay (ties: the lower index
    goes first); the new mask prunes every weight into and out of the others, dead ones included.
    Units never come back: with fewer than ``n_keep`` alive, all of them stay.
    """
    names = prunable_names(model)
    if len(names) != 2:
        raise ValueError(
            f"units() prunes one-hidden-layer MLPs such as xor_mlp; this model has prunable "
            f"layers {names}"
        )
    if not isinstance(n_keep, int) or isinstance(n_keep, bool) or n_keep < 0:
        raise ValueError(
            f"n_keep must be a non-negative int (hidden units to keep), got {n_keep!r}"
        )
    missing = [name for name in names if name not in mask]
    if missing:
        raise ValueError(f"the mask has no entry for {missing}; start from Mask.ones(model)")
    mask.validate(model)
    into, out = names
    params = dict(model.named_parameters())
    w_in = params[into].detach().masked_fill(~mask[into], 0.0)
    w_out = params[out].detach().masked_fill(~mask[out], 0.0)
    alive = alive_units(mask, (into, out))
    keep = _top(w_out.norm(dim=0) * w_in.norm(dim=1), alive, n_keep)
    return Mask._wrap(
        {
            **dict(mask.items()),
            into: mask[into] & keep.unsqueeze(1),
            out: mask[out] & keep.unsqueeze(0),
        }
    )


def snip(
    model: nn.Module,
    mask: Mask,
    X: Tensor,
    y: Tensor,
    density: float,
    loss: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> Mask:
    """SNIP (Lee et al. 2019): keep the weights with the largest connection sensitivity.

    Sensitivity is ``|∂L/∂w · w|`` on one batch ``X``, ``y`` (on the model's device), evaluated
    with the pruned weights at zero; all layers of ``mask`` are ranked together and keep
    ``floor(density × total + 0.5)`` weights (never more than ``mask`` keeps). ``loss(logits, y)``
    defaults to the training loss (``train.loss_and_correct``, mean over the batch). The model is
    run in its current mode, on copies of its weights and buffers: it is left untouched, with no
    ``.grad`` set.
    """
    mask.validate(model)
    _check_rate(density, "density")
    weights = {name: p.detach() for name, p in model.named_parameters()}
    masked = {
        name: weights[name].masked_fill(~keep, 0.0).requires_grad_() for name, keep in mask.items()
    }
    state = {**weights, **{name: b.clone() for name, b in model.named_buffers()}, **masked}
    logits = torch.func.functional_call(model, state, (X,))
    value = loss(logits, y) if loss is not None else loss_and_correct(logits, y)[0].mean()
    grads = torch.autograd.grad(value, list(masked.values()))
    scores = {name: (g * w).abs() for (name, w), g in zip(masked.items(), grads, strict=True)}
    return _keep_top(scores, mask, [(list(mask), math.floor(density * mask.total + 0.5))])


# -- ranking ------------------------------------------------------------------------------------


# Sorts after every kept entry's key, whose high half is a float32 pattern below 2**31.
_PRUNED_KEY = torch.iinfo(torch.int64).max


def _top(scores: Tensor, keep: Tensor, n_keep: Tensor | int) -> Tensor:
    """Bool tensor like ``keep``: the ``n_keep`` highest-scoring entries among those ``keep`` marks.

    ``scores`` and ``keep`` are 1-D; ``n_keep`` is an int or a 0-d tensor on their device (all of
    them stay if it exceeds the kept count). Among equal scores the lower index is dropped first.
    Sync-free version of "sort the kept entries by (score, index), drop the first kept - n_keep":
    every entry gets a distinct sort key, pruned entries sort last, and the key at position
    kept - n_keep is the threshold.
    """
    key = _sort_keys(torch.nan_to_num(scores), keep)
    if key is None:
        return _top_by_rank(scores, keep, n_keep)
    if isinstance(n_keep, int) and n_keep <= 0:
        return torch.zeros_like(keep)
    ordered = torch.sort(key).values
    first = (keep.sum() - n_keep).clamp(0, key.numel() - 1)
    threshold = ordered.gather(0, first.reshape(1))
    if isinstance(n_keep, Tensor):
        threshold = torch.where(n_keep > 0, threshold, _PRUNED_KEY)
    return keep & (key >= threshold)


def _sort_keys(scores: Tensor, keep: Tensor) -> Tensor | None:
    """int64 keys that order entries by (score, index): the score's float32 bits, made to sort
    like the floats, in the high 32 bits and the index in the low 32; ``_PRUNED_KEY`` where
    ``keep`` is False. Sorting int64 is several times faster than a stable float sort.

    None when that would round the scores (float64) or the index needs more than 32 bits.
    """
    if scores.dtype == torch.float64 or scores.numel() >= 2**32:
        return None
    # + 0.0 turns -0.0 into +0.0, which the float comparison treats as equal.
    bits = (scores.float() + 0.0).view(torch.int32)
    # Negative floats sort in reverse of their bit patterns: flip all bits but the sign.
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    index = torch.arange(scores.numel(), device=scores.device)
    key = (ordered << 32) | index
    return key.masked_fill(~keep, _PRUNED_KEY)


def _top_by_rank(scores: Tensor, keep: Tensor, n_keep: Tensor | int) -> Tensor:
    """``_top`` for float64 scores: a stable float sort, each entry's rank scattered back."""
    ranked = torch.nan_to_num(scores).masked_fill(~keep, math.inf)
    order = torch.argsort(ranked, stable=True)
    positions = torch.arange(order.numel(), device=order.device)
    rank = torch.empty_like(order).scatter_(0, order, positions)
    return keep & (rank >= keep.sum() - n_keep)


def _keep_top(
    scores: Mapping[str, Tensor],
    keep: Mapping[str, Tensor],
    groups: list[tuple[list[str], Tensor | int]],
) -> Mask:
    """For each group (layers ranked together, n_keep), keep the best ``n_keep`` entries.

    Every name of ``keep`` must be in exactly one group; the mask keeps ``keep``'s order.
    """
    out: dict[str, Tensor] = {}
    for names, n_keep in groups:
        flat = _top(_flat(scores, names), _flat(keep, names), n_keep)
        pieces = flat.split([keep[name].numel() for name in names])
        out.update(
            {name: piece.view_as(keep[name]) for name, piece in zip(names, pieces, strict=True)}
        )
    return Mask._wrap({name: out[name] for name in keep})


def _prune_lowest(
    scores: Mapping[str, Tensor], mask: Mask, groups: list[tuple[list[str], float]]
) -> Mask:
    """Per group (layers, rate): remove floor(rate × kept + 0.5) of the lowest-scoring entries."""
    targets = []
    for names, rate in groups:
        kept = _kept(mask, names)
        targets.append((names, kept - _n_remove(rate, kept)))
    return _keep_top(scores, mask, targets)


def _groups(
    mask: Mask, fraction: float | None, scope: str, layer_rates: Mapping[str, float] | None
) -> list[tuple[list[str], float | None]]:
    """The layers ranked together, each group with its rate.

    Layerwise: every layer alone. Global: each layer of ``layer_rates`` alone, then all others
    together. Layers of ``layer_rates`` get their own rate, the others ``fraction``.
    """
    if scope not in _SCOPES:
        raise ValueError(f"scope must be one of {_SCOPES}, got {scope!r}")
    rates = _check_layer_rates(layer_rates, mask)
    if scope == "layerwise":
        return [([name], rates.get(name, fraction)) for name in mask]
    shared = [name for name in mask if name not in rates]
    own = [([name], rate) for name, rate in rates.items()]
    return own + ([(shared, fraction)] if shared else [])


def _flat(tensors: Mapping[str, Tensor], names: list[str]) -> Tensor:
    return torch.cat([tensors[name].flatten() for name in names])


def _kept(mask: Mask, names: list[str]) -> Tensor:
    """Kept entries in these layers, as a 0-d int64 device tensor."""
    return sum(mask[name].sum() for name in names)


def _n_remove(rate: float, kept: Tensor) -> Tensor:
    """floor(rate × kept + 0.5) as int64, in float64 (float32 on MPS, which lacks float64)."""
    exact = torch.float32 if kept.device.type == "mps" else torch.float64
    return torch.floor(kept.to(exact) * rate + 0.5).long()


# -- argument checks ----------------------------------------------------------------------------


def _check_rate(value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}")


def _check_layer_rates(layer_rates: Mapping[str, float] | None, mask: Mask) -> dict[str, float]:
    rates = dict(layer_rates or {})
    unknown = [name for name in rates if name not in mask]
    if unknown:
        raise ValueError(
            f"layer_rates names {unknown}, which the mask does not cover; valid names are "
            f"{list(mask)}"
        )
    for name, rate in rates.items():
        _check_rate(rate, f"layer_rates[{name!r}]")
    return rates
