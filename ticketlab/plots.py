"""The figures of the lottery-ticket labs, drawn from tidy result tables.

Every function returns its matplotlib ``Figure`` and never calls ``plt.show()``. A figure the
function creates itself is detached from pyplot (closed) before it is returned, so a notebook
shows it exactly once, as the cell's value; ``fig.savefig(...)`` still works. Pass ``ax=`` to
draw into your own axes instead (then that figure is returned and left open).

Colors come from seaborn's colorblind palette, and each kind of network keeps its color across
figures (tickets blue, reinitialized orange, ...). Bands are 95% Student-t intervals over seeds,
the same intervals ``ticketlab.verdict`` uses to decide claims.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, to_rgba
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from torch import Tensor, nn

from ticketlab.stats import OUTCOME_COLORS, t_half_width
from ticketlab.verdict import SEED, Verdict

# OUTCOME_COLORS is re-exported: notebook 07 colors its outcome bars with it.
__all__ = [
    "KIND_COLORS",
    "OUTCOME_COLORS",
    "accuracy_vs_density",
    "decision_boundaries",
    "early_stop_vs_density",
    "gamma_histogram",
    "interpolation_curves",
    "mask_heatmap",
    "set_theme",
    "verdict_summary",
]

_PALETTE = sns.color_palette("colorblind")
KIND_COLORS = {
    "ticket": _PALETTE[0],
    "reinit": _PALETTE[1],
    "random": _PALETTE[2],
    "sign": _PALETTE[3],
    "shuffled": _PALETTE[4],
    "dense": _PALETTE[7],
}
"""The fixed color of each kind of network, shared by every figure."""

_LABELS = {
    "test_acc": "Test accuracy",
    "val_acc": "Validation accuracy",
    "train_acc": "Train accuracy",
    "early_stop_test_acc": "Test accuracy at early stop",
}


def set_theme() -> None:
    """Seaborn's notebook theme: white grid, colorblind palette. Changes global rcParams."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes, bool]:
    if ax is not None:
        return ax.figure, ax, False
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax, True


def _finish(fig: Figure, owned: bool) -> Figure:
    if owned:
        plt.close(fig)  # detached from pyplot: shown once in a notebook, as the returned value
    return fig


def _require(frame: pd.DataFrame, columns: Iterable[str], who: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{who} needs a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{who} needs columns {missing}; the table has {list(frame.columns)}")
    if frame.empty:
        raise ValueError(f"{who} got an empty table; nothing to plot")


def _ordered(values: Iterable) -> list:
    """Known kinds in their canonical order first, everything else sorted after them."""
    unique = list(dict.fromkeys(values))
    known = [k for k in KIND_COLORS if k in unique]
    try:
        rest = sorted(v for v in unique if v not in KIND_COLORS)
    except TypeError:
        rest = sorted((v for v in unique if v not in KIND_COLORS), key=str)
    return known + rest


def _colors(values: Sequence) -> dict:
    """Color per group value: fixed kind colors; ordered viridis shades for numeric groups."""
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        # viridis without its yellow end, which is hard to see on white
        shades = plt.get_cmap("viridis")(np.linspace(0.0, 0.8, len(values)))
        return {v: tuple(shade[:3]) for v, shade in zip(values, shades, strict=True)}
    spare = iter(c for c in _PALETTE if c not in KIND_COLORS.values())
    return {v: KIND_COLORS[v] if v in KIND_COLORS else next(spare, _PALETTE[7]) for v in values}


def _mean_band(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Per value of ``x``: mean of ``y`` over seeds and its 95% Student-t band (NaN for n = 1).

    Rows of one seed at one ``x`` are averaged first, so the seeds are the replicates.
    """
    if SEED in frame.columns:
        frame = frame.groupby([x, SEED], sort=True)[y].mean().reset_index()
    # pandas' mean and std skip NaN: a seed whose value is NaN drops out of its point's band
    stats = frame.groupby(x, sort=True)[y].agg(["mean", "std", "count"]).reset_index()
    half = t_half_width(stats["std"], stats["count"])
    return stats.assign(low=stats["mean"] - half, high=stats["mean"] + half)


def _draw_groups(
    ax: Axes,
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    groups: list[str],
    scale: float,
    x_scale: float = 1.0,
    marker: str | None = None,
) -> None:
    """One mean line with its band per combination of ``groups`` (first: color, second: style)."""
    hue = groups[0] if groups else None
    colors = _colors(_ordered(frame[hue])) if hue else {}
    styles = {}
    if len(groups) > 1:
        styles = dict(zip(_ordered(frame[groups[1]]), ["-", "--", ":", "-."] * 10, strict=False))
    parts = frame.groupby(groups, sort=False) if groups else [((), frame)]
    for key, part in parts:
        stats = _mean_band(part, x, y)
        xs = stats[x] * x_scale
        color = colors.get(key[0], _PALETTE[0]) if hue else _PALETTE[0]
        named = zip(groups, key, strict=True)
        label = ", ".join(f"{g}={k}" if len(groups) > 1 else str(k) for g, k in named)
        ax.plot(
            xs,
            stats["mean"] * scale,
            color=color,
            linestyle=styles.get(key[1], "-") if styles else "-",
            marker=marker,
            markersize=3,
            label=label or None,
        )
        if stats["count"].max() > 1:
            ax.fill_between(
                xs, stats["low"] * scale, stats["high"] * scale, color=color, alpha=0.2, lw=0
            )


def _sorted_groups(frame: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """Rows ordered by the canonical group order, so legends read the same in every figure."""
    for column in reversed(groups):
        order = {v: i for i, v in enumerate(_ordered(frame[column]))}
        frame = frame.sort_values(column, key=lambda s, o=order: s.map(o), kind="stable")
    return frame


def _vs_density(
    table: pd.DataFrame, column: str, scale: float, ylabel: str, ax: Axes | None
) -> Figure:
    fig, ax, owned = _axes(ax, (6.0, 3.8))
    if "round" in table.columns:
        is_dense = (table["kind"] == "dense") | (table["round"] == 0)
    else:
        is_dense = (table["kind"] == "dense") | (table["density"] == 1.0)
    curves = _sorted_groups(table[table["kind"] != "dense"], ["kind"])
    _draw_groups(
        ax, curves, x="density", y=column, groups=["kind"], scale=scale, x_scale=100, marker="o"
    )
    dense = table[is_dense]
    if not dense.empty:
        per_seed = dense.groupby(SEED)[column].mean() if SEED in dense else dense[column]
        ax.axhline(per_seed.mean() * scale, ls="--", lw=1.2, color="0.3", label="dense")

    ax.set_xscale("log")
    ticks = sorted(table["density"].unique() * 100, reverse=True)
    step = math.ceil(len(ticks) / 10)  # at most ~10 labels; every density keeps its tick
    ax.set_xticks(ticks, labels=[f"{t:.3g}" if i % step == 0 else "" for i, t in enumerate(ticks)])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(max(ticks) * 1.15, min(ticks) / 1.15)  # inverted: densest on the left
    ax.set_xlabel("Weights remaining (%, log scale)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    return _finish(fig, owned)


def accuracy_vs_density(
    table: pd.DataFrame, metric: str = "test_acc", ax: Axes | None = None
) -> Figure:
    """Accuracy (%) against percent of weights remaining, one mean line ± 95% band per kind.

    ``table``: one row per trained network, columns ``density`` (fraction kept, in (0, 1]),
    ``kind`` ("ticket", "reinit", "random", ...), ``metric`` (accuracy as a fraction in [0, 1]),
    and usually ``seed`` and ``round``. The x-axis is logarithmic and inverted (densest on the
    left) with ticks at the densities measured. The dense network (kind "dense", or round 0) is
    drawn as a dashed horizontal line at its mean over seeds.
    """
    _require(table, ["density", "kind", metric], "accuracy_vs_density")
    if table[metric].max() > 1.0 or table[metric].min() < 0.0:
        raise ValueError(
            f"{metric} must be a fraction in [0, 1] (it is shown as %); its values run from "
            f"{table[metric].min()} to {table[metric].max()}; divide percentages by 100"
        )
    label = _LABELS.get(metric, metric.replace("_", " ").capitalize())
    return _vs_density(table, metric, 100.0, f"{label} (%)", ax)


def early_stop_vs_density(table: pd.DataFrame, ax: Axes | None = None) -> Figure:
    """Early-stopping iteration against percent of weights remaining (same layout as accuracy).

    ``table`` needs columns ``density``, ``kind`` and ``early_stop_step`` (the iteration of minimum
    validation loss, Frankle & Carbin's proxy for learning speed).
    """
    _require(table, ["density", "kind", "early_stop_step"], "early_stop_vs_density")
    return _vs_density(table, "early_stop_step", 1.0, "Early-stop iteration", ax)


def interpolation_curves(
    curves: pd.DataFrame,
    hue: str | None = None,
    style: str | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Error (%) along linear interpolation paths, mean ± 95% band over seeds per group.

    ``curves`` is tidy: columns ``alpha`` and ``error`` (a fraction, as ``interpolate`` returns)
    plus grouping columns. ``hue`` (color) defaults to ``rewind_step`` if present, else ``kind``;
    ``style`` (line style) defaults to ``kind`` when ``hue`` is ``rewind_step``. Rows that share
    the groups and ``alpha`` are averaged per ``seed`` first.
    """
    _require(curves, ["alpha", "error"], "interpolation_curves")
    if hue is None:
        hue = next((c for c in ("rewind_step", "kind") if c in curves.columns), None)
        if style is None and hue == "rewind_step" and "kind" in curves.columns:
            style = "kind"
    groups = [c for c in (hue, style) if c is not None]
    _require(curves, groups, "interpolation_curves")
    fig, ax, owned = _axes(ax, (7.0, 3.6))
    _draw_groups(ax, _sorted_groups(curves, groups), x="alpha", y="error", groups=groups, scale=100)
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("α (0 = network A, 1 = network B)")
    ax.set_ylabel("Error (%)")
    if groups:
        title = None if len(groups) > 1 else groups[0]
        ax.legend(fontsize="small", title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _finish(fig, owned)


def mask_heatmap(
    mask: Mapping[str, Tensor],
    name: str | None = None,
    shape: tuple[int, int] = (28, 28),
    ax: Axes | None = None,
) -> Figure:
    """Which input pixels a ticket keeps: per pixel, the fraction of its connections kept.

    ``mask`` maps parameter names to bool tensors (a ``Mask``); ``name`` picks a Linear weight mask
    of shape (out_features, in_features) with in_features = H·W of ``shape`` (default: the first
    entry, the first layer). Each pixel's value is its kept connections / out_features, in [0, 1].
    """
    names = list(mask)
    if not names:
        raise ValueError("the mask is empty; nothing to draw")
    name = names[0] if name is None else name
    if name not in mask:
        raise ValueError(f"{name!r} is not in the mask; it has {names}")
    kept = mask[name]
    pixels = shape[0] * shape[1]
    if kept.ndim != 2 or kept.shape[1] != pixels:
        raise ValueError(
            f"mask {name!r} has shape {tuple(kept.shape)}; mask_heatmap needs a Linear weight mask "
            f"(out_features, {pixels}) to draw as {shape} pixels; pass the first layer's name or "
            "the image shape"
        )
    fraction = kept.float().mean(dim=0).reshape(shape).cpu().numpy()
    fig, ax, owned = _axes(ax, (4.2, 3.6))
    image = ax.imshow(fraction, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="Fraction of connections kept")
    density = float(kept.float().mean())
    ax.set_title(f"{name}: {density:.1%} of weights kept", fontsize="medium")
    ax.set_xlabel("Pixel column")
    ax.set_ylabel("Pixel row")
    ax.grid(False)
    return _finish(fig, owned)


_SYMLOG_LINSCALE = 0.9
"""With base 10, a linear part 0.9 decades wide makes matplotlib's symlog transform t·y(γ), where
y = γ / t inside ±t and sign(γ)·(1 + log10(|γ| / t)) outside: the linear band is as wide as one
decade on each side."""


def _symlog(x: np.ndarray, t: float) -> np.ndarray:
    """y(γ) above: linear within ±t, logarithmic outside, continuous at ±t."""
    x = np.asarray(x, dtype=float)
    outside = np.sign(x) * (1 + np.log10(np.maximum(np.abs(x), t) / t))
    return np.where(np.abs(x) <= t, x / t, outside)


def _symlog_inverse(y: np.ndarray, t: float) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    return np.where(np.abs(y) <= 1, y * t, np.sign(y) * t * 10 ** (np.abs(y) - 1))


def gamma_histogram(
    frame: pd.DataFrame,
    threshold: float | None = None,
    hue: str | None = None,
    bins: int = 40,
    ax: Axes | None = None,
) -> Figure:
    """Distribution of the signed BatchNorm scales γ, one outline per group, as fractions of
    features.

    ``frame`` has a ``gamma`` column and optional grouping columns; ``hue`` defaults to ``depth``
    if present, else ``kind``. The x axis is symmetric-logarithmic: linear within ±``threshold``
    (±0.01 without one) and logarithmic outside, so that γ piling up near zero, the band of
    disabled features and negative γ all show. The ``bins`` are equally wide on that axis (so
    finer in γ near zero) and shared by all groups; each group's histogram sums to 1, so groups of
    different sizes compare. With ``threshold``, the band |γ| < threshold is shaded, and each
    legend entry gives its group's fraction inside it and its fraction of negative γ (a negative γ
    flips its feature's sign: the feature is still switched on).
    """
    _require(frame, ["gamma"], "gamma_histogram")
    if hue is None:
        hue = next((c for c in ("depth", "kind") if c in frame.columns), None)
    if threshold is not None and not threshold > 0:
        raise ValueError(f"threshold must be a positive |γ| value, e.g. 0.01; got {threshold!r}")
    linear = 0.01 if threshold is None else threshold
    gamma = frame["gamma"].astype(float)
    low, high = _symlog(np.array([gamma.min(), gamma.max()]), linear)
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = _symlog_inverse(np.linspace(low, high, bins + 1), linear)
    fig, ax, owned = _axes(ax, (5.5, 3.6))
    parts = [(None, gamma)]
    if hue is not None:
        parts = [(v, gamma[frame[hue] == v]) for v in _ordered(frame[hue].dropna())]
    colors = _colors([v for v, _ in parts]) if hue is not None else {None: _PALETTE[0]}
    for value, values in parts:
        counts, _ = np.histogram(values.to_numpy(), bins=edges)
        label = "all features" if hue is None else f"{hue}={value}"
        if threshold is not None:
            disabled, negative = (values.abs() < threshold).mean(), (values < 0).mean()
            label += f" ({disabled:.1%} disabled, {negative:.0%} negative)"
        ax.stairs(counts / len(values), edges, color=colors[value], linewidth=1.5, label=label)
    ax.set_xscale("symlog", linthresh=linear, linscale=_SYMLOG_LINSCALE)
    if threshold is not None:
        ax.axvspan(-threshold, threshold, color="0.85", zorder=0,
                   label=f"disabled: |γ| < {threshold:g}")  # fmt: skip
    ax.set_xlabel(f"γ (BatchNorm scale; axis linear within ±{linear:g}, logarithmic outside)")
    ax.set_ylabel("Fraction of features")
    ax.legend(fontsize="small")
    return _finish(fig, owned)


_XOR_CORNERS = ((-1.0, -1.0, 0), (-1.0, 1.0, 1), (1.0, -1.0, 1), (1.0, 1.0, 0))


def _predict(model: nn.Module, points: Tensor) -> Tensor:
    """Predicted class (0/1) of a 2-input model at ``points`` (N, 2), without touching its mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(points.to(device))
    finally:
        model.train(was_training)
    if out.ndim == 2 and out.shape[1] == 2:
        return out.argmax(1)
    if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1):
        return (out.reshape(-1) > 0).long()
    raise ValueError(
        f"decision_boundaries needs a single logit (N, 1) or two class logits (N, 2) per input, "
        f"got output shape {tuple(out.shape)}"
    )


def decision_boundaries(
    models: nn.Module | Sequence[nn.Module],
    data=None,
    titles: Sequence[str] | None = None,
    grid: int = 200,
) -> Figure:
    """Decision regions of 2-input classifiers (XOR), one small panel per model.

    Each panel colors a ``grid`` × ``grid`` square of inputs by the predicted class (single logit
    > 0, or argmax of two logits) and overlays ``data``: a ``Split`` (X (N, 2), y (N,)) or a
    ``Dataset`` (its train split), by default the four XOR corners (±1, ±1), label 1 iff the signs
    differ. Titles report the fraction of overlaid points classified correctly.
    """
    models = [models] if isinstance(models, nn.Module) else list(models)
    if not models:
        raise ValueError("decision_boundaries needs at least one model")
    titles = [f"model {i}" for i in range(len(models))] if titles is None else list(titles)
    if len(titles) != len(models):
        raise ValueError(f"got {len(titles)} titles for {len(models)} models; give one per model")
    if data is None:
        X = torch.tensor([c[:2] for c in _XOR_CORNERS])
        y = torch.tensor([c[2] for c in _XOR_CORNERS])
    else:
        X, y = getattr(data, "train", data)
    X, y = X.detach().float().cpu(), y.detach().cpu()
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"decision_boundaries draws 2-input data; got X of shape {tuple(X.shape)}")

    limit = max(1.5, float(X.abs().max()) + 0.25)
    axis = torch.linspace(-limit, limit, grid)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")  # row i ↔ x2 = axis[i], col j ↔ x1 = axis[j]
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    light = ListedColormap([to_rgba(_PALETTE[0], 0.25), to_rgba(_PALETTE[1], 0.25)])

    cols = min(len(models), 4)
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.5 * cols, 2.6 * rows + 0.4), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(models) :]:
        ax.set_visible(False)
    for ax, model, title in zip(axes.flat, models, titles, strict=False):
        regions = _predict(model, points).reshape(grid, grid).cpu().numpy()
        ax.imshow(
            regions,
            origin="lower",
            extent=(-limit, limit, -limit, limit),
            cmap=light,
            vmin=0,
            vmax=1,
            interpolation="nearest",
            aspect="equal",
        )
        for label, marker in ((0, "o"), (1, "^")):
            chosen = y == label
            ax.scatter(
                X[chosen, 0],
                X[chosen, 1],
                marker=marker,
                s=40,
                color=_PALETTE[label],
                edgecolor="black",
                linewidth=0.8,
                label=f"label {label}",
                zorder=3,
            )
        correct = (_predict(model, X).cpu() == y).float().mean().item()
        ax.set_title(f"{title}\n{correct:.0%} correct", fontsize="medium")
        ax.set_xticks([-1, 0, 1])
        ax.set_yticks([-1, 0, 1])
        ax.set_xlabel("x₁")
        ax.grid(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("x₂")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize="small")
    plt.close(fig)  # detached from pyplot: shown once in a notebook, as the returned value
    return fig


def verdict_summary(verdicts: Sequence[Verdict]) -> Figure:
    """Each claim's effect with its 95% CI (horizontal bar), its margin (dashed) and seeds (dots).

    One row per verdict, each with its own x-axis in the claim's display units (``unit``,
    ``scale``), because claims measure different things; the marker color is the outcome.
    """
    verdicts = list(verdicts)
    if not verdicts or not all(isinstance(v, Verdict) for v in verdicts):
        raise ValueError("verdict_summary needs a non-empty list of Verdicts (from evaluate)")
    fig, axes = plt.subplots(
        len(verdicts),
        1,
        figsize=(6.5, 1.1 * len(verdicts) + 0.5),
        squeeze=False,
        layout="constrained",
    )
    for ax, verdict in zip(axes[:, 0], verdicts, strict=True):
        claim, s = verdict.claim, verdict.claim.scale
        color = OUTCOME_COLORS[verdict.outcome]
        ax.scatter(
            np.asarray(verdict.per_seed) * s,
            np.full(verdict.n, -0.35),
            s=12,
            color="0.55",
            label="seeds",
        )
        ax.errorbar(
            [verdict.effect * s],
            [0.0],
            xerr=[
                [(verdict.effect - verdict.ci_low) * s],
                [(verdict.ci_high - verdict.effect) * s],
            ],
            fmt="o",
            color=color,
            capsize=4,
            linewidth=2,
            markersize=6,
        )
        ax.axvline(claim.margin * s, ls="--", lw=1.2, color="0.3")
        ax.set_yticks([0.0], labels=[claim.name])
        ax.set_ylim(-0.8, 0.8)
        ax.set_xlabel(claim.quantity + (f" ({claim.unit})" if claim.unit else ""), fontsize="small")
        ax.text(
            1.01,
            0.5,
            verdict.outcome,
            transform=ax.transAxes,
            color=color,
            va="center",
            fontweight="bold",
        )
    fig.suptitle("Claims: effect with 95% CI; dashed line = margin", fontsize="medium")
    plt.close(fig)  # detached from pyplot: shown once in a notebook, as the returned value
    return fig
