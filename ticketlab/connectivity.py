"""Linear mode connectivity: is the straight line between two trained networks free of barriers?

Frankle, Dziugaite, Roy & Carbin (2020) train two copies of a network from the same starting point
with different SGD noise, then evaluate θ(α) = (1 − α)·θ_a + α·θ_b along the segment between them.
If the error never rises much above the endpoints', the network is *stable* to SGD noise: both runs
ended in the same linearly connected region. (Secondary notes on the paper give its threshold as an
error barrier below 2% and its path as 30 evenly spaced α; we could not check the PDF itself.)

    >>> curve = interpolate(run_a.model, run_b.model, data.test, train_data=data.train)
    >>> error_barrier(curve)        # max error along the path − mean of the endpoints' errors

BatchNorm needs care. A BN layer's running mean and variance summarize the activations *of its
own weights*; the activations of θ(α) are not the average of the endpoints' activations (they can
even collapse, e.g. when θ_a and θ_b differ by a sign), so averaging the running statistics
describes a network that does not exist. ``interpolate`` therefore resets them at every α and
recomputes them from training batches, before evaluating in eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm  # covers BatchNorm1d/2d/3d and SyncBatchNorm

from .masks import as_mask
from .training import loss_and_correct

__all__ = ["error_barrier", "interpolate", "interpolated", "l2_distance"]


def _pair(data, what: str, device: torch.device) -> tuple[Tensor, Tensor]:
    try:
        X, y = data
    except (TypeError, ValueError):
        raise TypeError(
            f"{what} must be a Split (X, y), e.g. dataset.test; got {type(data).__name__}"
        ) from None
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(
            f"{what} must hold the same positive number of inputs and labels, "
            f"got {len(X)} inputs and {len(y)} labels"
        )
    return X.to(device), y.to(device)


def _check_pair(model_a: nn.Module, model_b: nn.Module) -> None:
    """Both models must have the same state entries with the same shapes, dtypes and device."""
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    if state_a.keys() != state_b.keys():
        only_a = sorted(state_a.keys() - state_b.keys())[:5]
        only_b = sorted(state_b.keys() - state_a.keys())[:5]
        raise ValueError(
            f"the two models have different architectures: only in model_a {only_a}, "
            f"only in model_b {only_b}; interpolate two copies of the same architecture"
        )
    for name, a in state_a.items():
        b = state_b[name]
        if a.shape != b.shape:
            raise ValueError(
                f"{name!r} has shape {tuple(a.shape)} in model_a but {tuple(b.shape)} in model_b; "
                "interpolate two copies of the same architecture"
            )
        if (a.dtype, a.device) != (b.dtype, b.device):
            raise ValueError(
                f"{name!r} is {a.dtype} on {a.device} in model_a but {b.dtype} on {b.device} in "
                "model_b; put both models on one device with one dtype (model.to(...))"
            )


def _device(model: nn.Module) -> torch.device:
    for tensor in model.state_dict().values():
        return tensor.device
    raise ValueError("the model has no parameters or buffers to interpolate")


class _Path:
    """A private copy of ``model_a`` that can be moved to any point θ(α) of the segment."""

    def __init__(
        self,
        model_a: nn.Module,
        model_b: nn.Module,
        *,
        train_data,
        mask: Mapping[str, Tensor] | None,
        batch_size: int,
        bn_batches: int | None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if bn_batches is not None and (not isinstance(bn_batches, int) or bn_batches < 1):
            raise ValueError(f"bn_batches must be a positive int or None (all), got {bn_batches!r}")
        _check_pair(model_a, model_b)
        self.device = _device(model_a)
        self.model = copy.deepcopy(model_a).eval()
        state_a, state_b = model_a.state_dict(), model_b.state_dict()
        # Integer buffers (BN's num_batches_tracked) cannot be averaged; they keep model_a's value.
        self.lines = [
            (tensor, state_a[name], state_b[name])
            for name, tensor in self.model.state_dict().items()
            if tensor.is_floating_point()
        ]
        self.keep = self._masks(mask) if mask is not None else []
        self.batchnorms = [
            m for m in self.model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats
        ]
        self.bn_inputs: list[Tensor] = []
        if self.batchnorms:
            if train_data is None:
                names = [n for n, m in self.model.named_modules() if m in self.batchnorms]
                raise ValueError(
                    f"the model has BatchNorm layers ({', '.join(names)}): pass "
                    "train_data=dataset.train so their running statistics can be recomputed at "
                    "every α (averaging the endpoints' statistics would be wrong)"
                )
            X, _ = _pair(train_data, "train_data", self.device)
            # Full batches only (unless the split is smaller than one batch): the cumulative
            # average weighs every batch equally, so a small remainder would count too much.
            batches = list(X.split(batch_size))
            if len(batches) > 1 and len(batches[-1]) < batch_size:
                batches.pop()
            self.bn_inputs = batches[:bn_batches]

    def _masks(self, mask: Mapping[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
        params = dict(self.model.named_parameters())
        return [(params[name].detach(), kept) for name, kept in as_mask(mask, self.model).items()]

    @torch.no_grad()
    def at(self, alpha: float) -> nn.Module:
        """Move the copy to θ(α): weights, then mask, then BatchNorm statistics."""
        for dst, a, b in self.lines:
            # torch.lerp is exact at both ends: α = 0 gives θ_a and α = 1 gives θ_b bit for bit.
            torch.lerp(a, b, alpha, out=dst)
        for param, kept in self.keep:
            param.mul_(kept)
        if self.batchnorms:
            self._recompute_batchnorm()
        return self.model

    def _recompute_batchnorm(self) -> None:
        momenta = [bn.momentum for bn in self.batchnorms]
        for bn in self.batchnorms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: every batch counts equally, none is forgotten
            # Only the BN layers go to train mode: dropout stays off, so the statistics describe
            # the very network that is evaluated, and no randomness enters.
            bn.train()
        try:
            for X in self.bn_inputs:
                self.model(X)
        finally:
            for bn, momentum in zip(self.batchnorms, momenta, strict=True):
                bn.momentum = momentum
                bn.eval()


def _loss_and_correct(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Summed loss and number of correct predictions of one batch, as device scalars."""
    if logits.ndim == 1:
        logits = logits.unsqueeze(1)
    if logits.ndim != 2:
        raise ValueError(
            f"the model returned shape {tuple(logits.shape)}; interpolate needs class logits "
            "(N, C) or a single logit per example (N, 1) / (N,)"
        )
    loss, correct = loss_and_correct(logits, y.reshape(-1))
    return loss.sum(), correct.sum()


def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    data,
    points: int = 30,
    *,
    train_data=None,
    mask: Mapping[str, Tensor] | None = None,
    batch_size: int = 1000,
    bn_batches: int | None = None,
) -> pd.DataFrame:
    """Loss and error of θ(α) = (1 − α)·θ_a + α·θ_b at ``points`` evenly spaced α in [0, 1].

    Args:
        model_a, model_b: two classifiers of the same architecture on the same device. They are
            never modified: the path is walked on a deep copy. Every floating-point parameter and
            buffer is interpolated; integer buffers keep model_a's values.
        data: the ``Split`` (X, y) to evaluate on; moved to the models' device once. y holds
            int64 class labels (0/1 for a single-logit model).
        points: number of α values, endpoints included (30 as in Frankle et al. 2020, per
            secondary notes).
        train_data: a ``Split`` whose inputs recompute BatchNorm running statistics at every α.
            Required when the model has BatchNorm layers (with running stats), ignored otherwise.
        mask: optional mapping parameter name → bool tensor (e.g. a ``Mask``); pruned weights of
            θ(α) are zeroed before evaluation.
        batch_size: examples per forward pass, for evaluation and for the BN statistics.
        bn_batches: how many full training batches recompute the BN statistics (None: all).

    Returns a DataFrame with one row per α: ``alpha`` (float, 0 → 1), ``loss`` (mean cross-entropy,
    or binary cross-entropy for single-logit models) and ``error`` (1 − accuracy, in [0, 1]).
    Models with logits (N, C) predict the argmax; single-logit models (N, 1) predict 1 iff the
    logit is > 0. For BN models even the endpoints are evaluated with recomputed statistics.
    """
    if not isinstance(points, int) or points < 2:
        raise ValueError(f"points must be an int >= 2 (the two endpoints at least), got {points!r}")
    path = _Path(
        model_a,
        model_b,
        train_data=train_data,
        mask=mask,
        batch_size=batch_size,
        bn_batches=bn_batches,
    )
    X, y = _pair(data, "data", path.device)
    alphas = [i / (points - 1) for i in range(points)]
    losses, corrects = [], []
    with torch.no_grad():
        for alpha in alphas:
            model = path.at(alpha)
            loss = torch.zeros((), device=path.device)
            correct = torch.zeros((), device=path.device, dtype=torch.long)
            for xb, yb in zip(X.split(batch_size), y.split(batch_size), strict=True):
                batch_loss, batch_correct = _loss_and_correct(model(xb), yb)
                loss += batch_loss
                correct += batch_correct
            losses.append(loss / len(X))
            corrects.append(correct)
    # One transfer for the whole curve.
    loss_values = torch.stack(losses).tolist()
    accuracy = (torch.stack(corrects).double() / len(X)).tolist()
    return pd.DataFrame(
        {"alpha": alphas, "loss": loss_values, "error": [1.0 - acc for acc in accuracy]}
    )


def interpolated(
    model_a: nn.Module,
    model_b: nn.Module,
    alpha: float,
    *,
    train_data=None,
    mask: Mapping[str, Tensor] | None = None,
    batch_size: int = 1000,
    bn_batches: int | None = None,
) -> nn.Module:
    """The network θ(α) itself, as a new model in eval mode (same arguments as ``interpolate``).

    Useful for looking inside a point of the path, e.g. the midpoint's decision boundary. BatchNorm
    running statistics are recomputed from ``train_data`` exactly as in ``interpolate``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (0 = model_a, 1 = model_b), got {alpha!r}")
    path = _Path(
        model_a,
        model_b,
        train_data=train_data,
        mask=mask,
        batch_size=batch_size,
        bn_batches=bn_batches,
    )
    return path.at(float(alpha))


def error_barrier(curve: pd.DataFrame) -> float:
    """Instability (Frankle et al. 2020): max error along the path − mean of the endpoint errors.

    ``curve`` is one path from ``interpolate`` (columns alpha, error; α from 0 to 1). The result is
    in the units of ``error`` (a fraction: 0.02 = 2 percentage points) and is never negative.
    """
    missing = {"alpha", "error"} - set(curve.columns)
    if missing:
        raise ValueError(f"the curve lacks columns {sorted(missing)}; pass interpolate()'s output")
    ordered = curve.sort_values("alpha")
    if ordered["alpha"].duplicated().any():
        raise ValueError(
            "the curve repeats alpha values, so it holds several paths; compute one barrier per "
            "path, e.g. curves.groupby(['seed']).apply(error_barrier)"
        )
    alpha = ordered["alpha"].to_numpy()
    if len(alpha) < 2 or alpha[0] != 0.0 or alpha[-1] != 1.0:
        raise ValueError(
            "the barrier compares the path with its endpoints, so the curve must include alpha = 0 "
            f"and alpha = 1; its alphas run from {alpha.min()} to {alpha.max()}"
        )
    error = ordered["error"].to_numpy()
    return float(error.max() - (error[0] + error[-1]) / 2)


def l2_distance(
    model_a: nn.Module, model_b: nn.Module, names: Iterable[str] | None = None
) -> float:
    """Euclidean distance ‖θ_a − θ_b‖₂ between the models' parameter vectors (buffers excluded).

    ``names`` restricts it to some parameters, e.g. ``prunable_names(model)`` or a ``Mask`` (whose
    iteration yields its parameter names); default: every parameter. Computed on the models'
    device; one number is read back.
    """
    params_a, params_b = dict(model_a.named_parameters()), dict(model_b.named_parameters())
    chosen = list(params_a) if names is None else list(names)
    if not chosen:
        raise ValueError("no parameters to compare: names is empty")
    for name in chosen:
        if name not in params_a or name not in params_b:
            raise ValueError(
                f"{name!r} is not a parameter of both models; model_a has {list(params_a)[:8]}"
            )
        if params_a[name].shape != params_b[name].shape:
            raise ValueError(
                f"{name!r} has shape {tuple(params_a[name].shape)} in model_a but "
                f"{tuple(params_b[name].shape)} in model_b; compare the same architecture"
            )
    with torch.no_grad():
        norms = [
            torch.linalg.vector_norm(params_a[name] - params_b[name]).float() for name in chosen
        ]
        return torch.linalg.vector_norm(torch.stack(norms)).item()
