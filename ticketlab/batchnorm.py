"""Training BatchNorm and only BatchNorm (Frankle, Schwab & Morcos, ICLR 2021).

The paper freezes every weight of a ResNet at its random initialization and trains only the
BatchNorm affine parameters: the per-channel scale γ (``weight``) and shift β (``bias``). The tools
here set that up for any model:

* ``freeze_all_but_batchnorm`` turns ``requires_grad`` off for everything except γ and β (and,
  optionally, the output layer); ``ticketlab.train`` then trains only what remains.
* ``init_gamma`` draws γ ~ U[0, 1] (open_lth's default for these experiments) or sets γ = 1.
* ``random_parameter_mask`` and ``train_random_subset`` build the paper's control: the same number
  of randomly chosen parameters elsewhere in the network, trained while BatchNorm stays frozen.
* ``gamma_frame`` and ``disabled_fraction`` read the learned γ: the paper reports that BatchNorm
  learns to disable around a third of the random features (γ near zero).

Unlike open_lth, BatchNorm layers are recognized by type, ``BatchNorm1d``, ``2d`` and ``3d`` alike,
never by parameter name, and asking to initialize or keep BatchNorm in a model that has none is an
error instead of a silent no-op (open_lth once shipped a BN init that did nothing).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pandas as pd
import torch
from torch import nn

from .config import generator
from .models import output_name

__all__ = [
    "BATCHNORM_TYPES",
    "DISABLED_THRESHOLD",
    "batchnorm_layers",
    "batchnorm_parameter_count",
    "disabled_fraction",
    "freeze_all_but_batchnorm",
    "freeze_all_but_subset",
    "gamma_frame",
    "init_gamma",
    "random_parameter_mask",
    "random_subset",
    "train_random_subset",
    "trainable_count",
]

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
"""The module types whose γ and β count as "BatchNorm parameters"."""

DISABLED_THRESHOLD = 0.01
"""|γ| below which a feature counts as disabled. Our choice, not the paper's: its exact cutoff is
unverified. With γ ~ U[0, 1] at initialization, this fraction of features starts out disabled."""


def batchnorm_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of every BatchNorm layer with affine γ/β, in ``named_modules()`` order."""
    for name, module in model.named_modules():
        if isinstance(module, BATCHNORM_TYPES) and module.affine:
            yield name, module


def _batchnorm_names(model: nn.Module) -> set[str]:
    """Parameter names of every BatchNorm γ and β."""
    return {
        f"{prefix}.{attr}" if prefix else attr
        for prefix, _ in batchnorm_layers(model)
        for attr in ("weight", "bias")
    }


def _output_names(model: nn.Module, missing_ok: bool = False) -> set[str]:
    """Parameter names of the output layer (the last Linear): its weight and, if any, its bias.

    A model without a Linear layer has no output layer: an error, or no names if ``missing_ok``.
    """
    if missing_ok and not any(isinstance(m, nn.Linear) for m in model.modules()):
        return set()
    weight = output_name(model)
    prefix = weight.rsplit(".", 1)[0] + "." if "." in weight else ""
    params = dict(model.named_parameters())
    return {name for name in (weight, prefix + "bias") if name in params}


def _require_batchnorm(model: nn.Module, who: str) -> None:
    if not any(True for _ in batchnorm_layers(model)):
        raise ValueError(
            f"{who}: the model has no BatchNorm layer with affine γ/β (BatchNorm1d/2d/3d), so "
            "there is nothing to act on; build the model with BatchNorm(..., affine=True)"
        )


def freeze_all_but_batchnorm(model: nn.Module, train_output: bool = False) -> nn.Module:
    """Leave only BatchNorm γ/β (and the output layer if ``train_output``) trainable; in place.

    Sets ``requires_grad=False`` on every other parameter and ``True`` on the chosen ones, and
    returns ``model``. ``ticketlab.train`` builds its optimizer from the parameters that still
    require gradients, so the frozen ones keep their initial values bit for bit. BatchNorm layers
    are found by type (``BatchNorm1d``, ``2d``, ``3d``); running statistics are buffers and keep
    updating in training mode, as in the paper. The output layer is the last ``nn.Linear``
    (weight and bias), as named by ``ticketlab.models.output_name``.

    Raises ValueError if the model has no affine BatchNorm layer.
    """
    _require_batchnorm(model, "freeze_all_but_batchnorm")
    keep = _batchnorm_names(model) | (_output_names(model) if train_output else set())
    for name, param in model.named_parameters():
        param.requires_grad_(name in keep)
    return model


def init_gamma(model: nn.Module, scheme: str = "uniform", seed: int = 0) -> nn.Module:
    """Initialize every BatchNorm layer's γ (and set β = 0) in place; returns ``model``.

    ``scheme``: ``"uniform"`` draws γ ~ U[0, 1] (open_lth's default for BatchNorm-only training)
    or ``"ones"`` sets γ = 1 (PyTorch's default). Draws come from
    ``ticketlab.config.generator(seed)`` on the CPU, layer by layer in ``named_modules()`` order,
    and are copied to each parameter's device, so a seed gives the same γ on every device.
    Running statistics are left alone.

    Raises ValueError for an unknown scheme or a model without affine BatchNorm layers.
    """
    schemes = ("uniform", "ones")
    if scheme not in schemes:
        raise ValueError(f"unknown γ init scheme {scheme!r}; choose one of {schemes}")
    _require_batchnorm(model, "init_gamma")
    gen = generator(seed)
    with torch.no_grad():
        for _, module in batchnorm_layers(model):
            if scheme == "uniform":
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen))
            else:
                module.weight.fill_(1.0)
            module.bias.zero_()
    return model


def trainable_count(model: nn.Module, grad_mask: Mapping[str, torch.Tensor] | None = None) -> int:
    """Number of parameter elements that training can change.

    Counts the elements of parameters with ``requires_grad=True``; for a parameter named in
    ``grad_mask`` (as passed to ``ticketlab.train``), only its True elements count.
    """
    grad_mask = grad_mask or {}
    return sum(
        int(grad_mask[name].sum()) if name in grad_mask else p.numel()
        for name, p in model.named_parameters()
        if p.requires_grad
    )


def batchnorm_parameter_count(model: nn.Module) -> int:
    """Number of BatchNorm γ and β elements: 2 per channel of every affine BatchNorm layer."""
    return sum(m.weight.numel() + m.bias.numel() for _, m in batchnorm_layers(model))


def _eligible(
    model: nn.Module, exclude_batchnorm: bool, include_output: bool
) -> list[tuple[str, nn.Parameter]]:
    skip = (_batchnorm_names(model) if exclude_batchnorm else set()) | (
        set() if include_output else _output_names(model, missing_ok=True)
    )
    return [(name, p) for name, p in model.named_parameters() if name not in skip]


def random_parameter_mask(
    model: nn.Module,
    count: int,
    seed: int = 0,
    exclude_batchnorm: bool = True,
    include_output: bool = False,
) -> dict[str, torch.Tensor]:
    """Exactly ``count`` parameter elements chosen uniformly at random: the paper's control.

    The eligible elements are every parameter element of the model except BatchNorm γ/β (when
    ``exclude_batchnorm``) and the output layer (unless ``include_output``). One random
    permutation of all eligible elements (``torch.randperm`` with ``config.generator(seed)``, on
    the CPU, so a seed picks the same elements on every device) selects its first ``count``:
    every subset of that size is equally likely.

    Returns ``{name: bool tensor}`` for every eligible parameter (True = chosen to train), each
    with its parameter's shape and device, in ``named_parameters()`` order. Use it as
    ``train(..., grad_mask=mask)`` after ``freeze_all_but_subset(model, mask)``; or call
    ``train_random_subset``, which does both.

    Raises ValueError if ``count`` is negative or exceeds the number of eligible elements.
    """
    eligible = _eligible(model, exclude_batchnorm, include_output)
    total = sum(p.numel() for _, p in eligible)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= total:
        raise ValueError(
            f"count must be an int in [0, {total}] (the eligible parameter elements), got "
            f"{count!r}; lower it or make more parameters eligible (include_output=True)"
        )
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[torch.randperm(total, generator=generator(seed))[:count]] = True
    parts = chosen.split([p.numel() for _, p in eligible])
    return {
        name: part.view(p.shape).to(p.device)
        for (name, p), part in zip(eligible, parts, strict=True)
    }


def freeze_all_but_subset(
    model: nn.Module, mask: Mapping[str, torch.Tensor], train_output: bool = False
) -> nn.Module:
    """Prepare ``model`` to train only the elements ``mask`` marks True; in place, returns it.

    The recipe: parameters holding at least one chosen element keep ``requires_grad=True`` (the
    trainer then holds their unchosen elements at their starting values when given
    ``grad_mask=mask``); every other parameter, BatchNorm γ/β included, gets
    ``requires_grad=False``. With ``train_output`` the output layer trains in full as well.
    """
    params = dict(model.named_parameters())
    unknown = sorted(set(mask) - set(params))
    if unknown:
        raise ValueError(
            f"mask names {unknown}, which are not parameters of the model; build the mask with "
            "random_parameter_mask(model, ...)"
        )
    keep = {name for name, m in mask.items() if bool(m.any())}
    keep |= _output_names(model) if train_output else set()
    for name, param in params.items():
        param.requires_grad_(name in keep)
    return model


def train_random_subset(
    model: nn.Module,
    data,
    config=None,
    *,
    count: int,
    seed: int = 0,
    train_output: bool = False,
    **train_kwargs,
):
    """Train exactly ``count`` randomly chosen non-BatchNorm elements; everything else frozen.

    The paper's control for BatchNorm-only training: ``random_parameter_mask(model, count, seed)``
    picks the elements (outside BatchNorm and the output layer), ``freeze_all_but_subset``
    freezes the rest, and ``ticketlab.train(model, data, config, grad_mask=mask, ...)`` trains in
    place. With ``train_output`` the output layer trains too, on top of the ``count`` elements,
    mirroring ``freeze_all_but_batchnorm(model, train_output=True)``. ``train_kwargs`` go to
    ``train`` (``data_seed``, ``steps``, ``lr``, ``progress``, ...).

    Returns ``(TrainResult, mask)``: after training, exactly the mask's True elements can differ
    from their starting values.
    """
    from .training import train

    mask, grad_mask = random_subset(model, count, seed, train_output)
    return train(model, data, config, grad_mask=grad_mask, **train_kwargs), mask


def random_subset(
    model: nn.Module, count: int, seed: int = 0, train_output: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Prepare ``model`` to train ``count`` random non-BatchNorm elements, in place.

    ``random_parameter_mask(model, count, seed)`` picks the elements, ``freeze_all_but_subset``
    freezes the rest. Returns ``(mask, grad_mask)``: the chosen elements per parameter, and the
    ``grad_mask`` to train with (the entries of parameters that still train).
    """
    mask = random_parameter_mask(model, count, seed)
    freeze_all_but_subset(model, mask, train_output=train_output)
    return mask, {name: m for name, m in mask.items() if bool(m.any())}


def gamma_frame(model: nn.Module) -> pd.DataFrame:
    """γ and β of every BatchNorm feature, one row each, for histograms and tables.

    Columns: ``layer`` (module name, e.g. ``"block1_0.bn1"``), ``layer_index`` (0 for the
    BatchNorm layer nearest the input, counting up in ``named_modules()`` order), ``channel``
    (int), ``gamma`` and ``beta`` (float). ``ticketlab.plots.gamma_histogram`` draws it.
    """
    frames = []
    for index, (name, module) in enumerate(batchnorm_layers(model)):
        gamma = module.weight.detach().float().cpu()
        frames.append(
            pd.DataFrame(
                {
                    "layer": name,
                    "layer_index": index,
                    "channel": range(gamma.numel()),
                    "gamma": gamma.numpy(),
                    "beta": module.bias.detach().float().cpu().numpy(),
                }
            )
        )
    columns = ["layer", "layer_index", "channel", "gamma", "beta"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def disabled_fraction(model: nn.Module, threshold: float = DISABLED_THRESHOLD) -> float:
    """Fraction (in [0, 1]) of BatchNorm features whose |γ| is below ``threshold``.

    A feature with γ ≈ 0 outputs the constant β whatever its input: BatchNorm has switched it
    off. ``threshold`` is absolute; the default ``DISABLED_THRESHOLD`` (0.01) is our choice, since
    the paper's exact cutoff is unverified. Raises ValueError for a model without affine BatchNorm
    layers or a non-positive threshold.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be a positive |γ| value, e.g. 0.01; got {threshold!r}")
    _require_batchnorm(model, "disabled_fraction")
    gammas = torch.cat([m.weight.detach().flatten() for _, m in batchnorm_layers(model)])
    return float((gammas.abs() < threshold).float().mean())
