"""Interactive explorers for the labs: small ipywidgets around pure figure functions.

Each explorer pairs controls with an ``Output`` and redraws one figure when a control changes.
The figure comes from a pure function that is public here and works without widgets, so a
notebook read as a static page (or run by nbval) shows the same picture:

==========================  ===================================  ================================
explorer                    pure function                        controls (attributes)
==========================  ===================================  ================================
``density_explorer``        ``density_view(imp, round, seed)``   ``.slider`` (IMP round)
``interpolation_explorer``  ``interpolation_view(res, k, kind)`` ``.slider`` (rewind step),
                                                                 ``.kind``
``xor_explorer``            ``xor_view(res, setting, index)``    ``.setting``, ``.slider`` (run)
==========================  ===================================  ================================

Every factory returns an ``Explorer`` (an ``ipywidgets.VBox``) without displaying it: put it last
in a cell, or ``display(explorer)``. Its ``.output`` holds the current figure as a PNG and a
one-line caption; setting a control's ``.value`` from code redraws it, which is how the tests
drive the explorers without a browser. The PNG is written to the ``Output``'s ``outputs``
directly instead of being captured from ``plt.show()``: captured output needs a running kernel,
the ``outputs`` trait does not, and the browser shows both the same way.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import plots
from .connectivity import error_barrier

__all__ = [
    "Explorer",
    "density_explorer",
    "density_view",
    "interpolation_explorer",
    "interpolation_view",
    "xor_explorer",
    "xor_view",
]


class Explorer(widgets.VBox):
    """Controls above an ``Output`` that shows ``draw(**values)``: a Figure and a caption.

    ``controls`` maps a keyword of ``draw`` to its widget; each widget is also an attribute of
    the explorer under the name given in ``names`` (e.g. ``explorer.slider``). ``draw`` returns
    ``(figure, caption)``. ``refresh()`` redraws; changing any control's value calls it.
    """

    def __init__(
        self,
        draw: Callable[..., tuple[Figure, str]],
        controls: Mapping[str, widgets.ValueWidget],
        names: Mapping[str, str],
    ) -> None:
        self.output = widgets.Output(layout=widgets.Layout(min_height="120px"))
        super().__init__([widgets.HBox(list(controls.values())), self.output])
        self._draw = draw
        self._controls = dict(controls)
        for keyword, widget in self._controls.items():
            setattr(self, names.get(keyword, keyword), widget)
            widget.observe(self._changed, names="value")
        self.refresh()

    def _changed(self, change: dict) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Redraw the figure for the controls' current values."""
        values = {keyword: widget.value for keyword, widget in self._controls.items()}
        fig, caption = self._draw(**values)
        # Replacing the whole tuple is one update for the browser: no flicker, no stacking.
        self.output.outputs = (
            {
                "output_type": "display_data",
                "data": {"image/png": _png(fig), "text/plain": caption},
                "metadata": {},
            },
            {"output_type": "stream", "name": "stdout", "text": caption + "\n"},
        )

    @property
    def caption(self) -> str:
        """The one-line text shown under the current figure."""
        return self.output.outputs[-1]["text"].rstrip("\n") if self.output.outputs else ""


def _png(fig: Figure) -> str:
    """The figure as a base64 PNG (at the figure's own dpi), then closed to free its memory."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# --- IMP: which weights survive at each density --------------------------------------------------


def _seed_of(table: pd.DataFrame, seed: int | None) -> int:
    seeds = sorted(int(s) for s in table["seed"].unique())
    if seed is None:
        return seeds[0]
    if seed not in seeds:
        raise ValueError(f"seed {seed!r} is not in this result; its seeds are {seeds}")
    return seed


def _rounds(imp_result, seed: int) -> list[int]:
    return sorted(r for s, r in imp_result.masks if s == seed)


def density_view(imp_result, round: int, seed: int | None = None) -> Figure:
    """Round ``round`` of an IMP run: the ticket's first-layer mask next to accuracy vs density.

    Args:
        imp_result: an ``ImpResult`` (``ticketlab.imp.run``), or any object with its ``table``
            (columns seed, round, density, kind, test_acc) and ``masks[(seed, round)]``.
        round: the IMP round, 0 (dense) to the last round run.
        seed: whose mask to draw (default: the smallest seed); the accuracy curves are means
            over all seeds.
    Left: per input pixel, the fraction of its first-layer connections the mask keeps
    (``plots.mask_heatmap``), colored from 0 to twice the layer's density. Right:
    ``plots.accuracy_vs_density`` with the selected round's mean ticket accuracy (dense accuracy
    at round 0) ringed in black. Returns a new Figure, detached from pyplot like every figure of
    ``ticketlab.plots``.
    """
    table = imp_result.table
    seed = _seed_of(table, seed)
    rounds = _rounds(imp_result, seed)
    if round not in rounds:
        raise ValueError(f"round {round!r} was not run for seed {seed}; choose one of {rounds}")
    mask = imp_result.masks[(seed, round)]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(10.0, 3.8), layout="constrained", width_ratios=(1.0, 1.45)
    )
    plots.mask_heatmap(mask, ax=left)
    # Colors from 0 to twice the layer's density: pixels kept more or less than the layer's
    # average stand out even when only a few percent of the weights remain.
    first = next(iter(mask))
    left.images[0].set_clim(0.0, min(1.0, 2 * float(mask[first].float().mean())))
    plots.accuracy_vs_density(table, ax=right)
    kind = "dense" if round == 0 else "ticket"
    chosen = table[(table["round"] == round) & (table["kind"] == kind)]
    x = 100 * float(chosen["density"].mean())
    y = 100 * float(chosen.groupby("seed")["test_acc"].mean().mean())
    right.scatter([x], [y], s=160, facecolors="none", edgecolors="black", linewidths=2, zorder=5)
    right.annotate(
        f"round {round}\n{y:.1f}%", (x, y), xytext=(0, 14), textcoords="offset points",
        ha="center", fontsize="small",
    )  # fmt: skip
    fig.suptitle(f"Round {round}: {mask.density:.1%} of weights remaining (seed {seed})")
    plt.close(fig)
    return fig


def density_explorer(imp_result, seed: int | None = None) -> Explorer:
    """A slider over the IMP rounds (labelled by density) redrawing ``density_view``.

    Starts at the last (sparsest) round. ``.slider`` is a ``SelectionSlider`` whose value is the
    round; ``.output`` shows the figure and a caption with the ticket's mean test accuracy.
    """
    table = imp_result.table
    seed = _seed_of(table, seed)
    rounds = _rounds(imp_result, seed)
    if not rounds:
        raise ValueError(f"the result has no masks for seed {seed}; run IMP first")
    options = [(f"{imp_result.masks[(seed, r)].density:.1%}", r) for r in rounds]
    slider = widgets.SelectionSlider(
        options=options,
        value=rounds[-1],
        description="density",
        continuous_update=False,
        layout=widgets.Layout(width="520px"),
    )

    def draw(round: int) -> tuple[Figure, str]:
        kind = "dense" if round == 0 else "ticket"
        rows = table[(table["round"] == round) & (table["kind"] == kind)]
        accuracy = rows.groupby("seed")["test_acc"].mean().mean()
        density = imp_result.masks[(seed, round)].density
        caption = (
            f"round {round}: {density:.1%} of weights remain; {kind} test accuracy "
            f"{accuracy:.1%} (mean of {rows['seed'].nunique()} seeds)"
        )
        return density_view(imp_result, round, seed), caption

    return Explorer(draw, {"round": slider}, {"round": "slider"})


# --- instability: interpolation paths between two copies -------------------------------------


def _curves(result) -> pd.DataFrame:
    curves = getattr(result, "extras", {}).get("curves")
    if curves is None:
        raise ValueError(
            "interpolation views need an instability result: extras['curves'] is missing; "
            "run ticketlab.experiments.instability(...)"
        )
    return curves


def interpolation_view(result, rewind_step: int, kind: str = "dense") -> Figure:
    """Test error along the straight line between two copies trained from step ``rewind_step``.

    Args:
        result: an ``instability(...)`` result: ``extras["curves"]`` has columns seed,
            rewind_step, kind, alpha, error (a fraction); ``table`` has one barrier per
            (seed, rewind_step, kind).
        rewind_step: the step k both copies started from.
        kind: ``"dense"``, or ``"ticket"`` / ``"random"`` when the run had a sparse round.
    Thin lines are the seeds, the thick line their mean. The arrow is the mean curve's error
    barrier (its highest error minus the mean of its endpoints, ``connectivity.error_barrier``);
    the title gives the mean of the per-seed barriers from ``result.table``.
    """
    curves = _curves(result)
    chosen = curves[(curves["rewind_step"] == rewind_step) & (curves["kind"] == kind)]
    if chosen.empty:
        pairs = sorted(set(zip(curves["rewind_step"], curves["kind"], strict=True)))
        raise ValueError(
            f"no curves for rewind_step={rewind_step!r}, kind={kind!r}; available "
            f"(rewind_step, kind) pairs: {pairs}"
        )
    color = plots.KIND_COLORS.get(kind, plots.KIND_COLORS["ticket"])
    fig, ax = plt.subplots(figsize=(6.0, 3.6), layout="constrained")
    for _, path in chosen.groupby("seed"):
        path = path.sort_values("alpha")
        ax.plot(path["alpha"], 100 * path["error"], color=color, alpha=0.35, lw=1)
    mean = chosen.groupby("alpha", as_index=False)["error"].mean()
    ax.plot(mean["alpha"], 100 * mean["error"], color=color, lw=2.5, label=f"{kind}, mean")
    ends = 100 * mean["error"].iloc[[0, -1]].mean()
    top = mean.loc[mean["error"].idxmax()]
    barrier = 100 * error_barrier(mean)
    ax.axhline(ends, ls="--", lw=1, color="0.4", label="mean of endpoints")
    ax.annotate(
        "", xy=(top["alpha"], 100 * top["error"]), xytext=(top["alpha"], ends),
        arrowprops={"arrowstyle": "<->", "color": "black", "lw": 1.2},
    )  # fmt: skip
    ax.annotate(
        f"barrier {barrier:.2g} pp", (top["alpha"], (ends + 100 * top["error"]) / 2),
        xytext=(6, 0), textcoords="offset points", va="center", fontsize="small",
    )  # fmt: skip
    table = result.table
    rows = table[(table["rewind_step"] == rewind_step) & (table["kind"] == kind)]
    seeds = chosen["seed"].nunique()
    title = f"{kind} copies from step {rewind_step}"
    if not rows.empty:
        title += f": mean barrier {100 * rows['barrier'].mean():.2g} pp over {seeds} seeds"
    ax.set_title(title, fontsize="medium")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0, top=max(5.0, 100 * chosen["error"].max() * 1.15))
    ax.set_xlabel("α (0 = copy A, 1 = copy B)")
    ax.set_ylabel("Test error (%)")
    ax.legend(fontsize="small", loc="upper right")
    plt.close(fig)
    return fig


def interpolation_explorer(instability_result) -> Explorer:
    """A slider over rewind steps and a kind picker, redrawing ``interpolation_view``.

    ``.slider`` (``SelectionSlider``, value = rewind step) and ``.kind`` (``Dropdown``) drive it.
    """
    curves = _curves(instability_result)
    steps = sorted(int(k) for k in curves["rewind_step"].unique())
    present = set(curves["kind"])
    order = ["dense", *(k for k in plots.KIND_COLORS if k != "dense")]  # the dense baseline first
    kinds = [k for k in order if k in present] + sorted(present - set(order))
    slider = widgets.SelectionSlider(
        options=[(f"step {k}", k) for k in steps],
        value=steps[0],
        description="rewind to",
        continuous_update=False,
    )
    kind = widgets.Dropdown(options=kinds, value=kinds[0], description="network")
    table = instability_result.table

    def draw(rewind_step: int, kind: str) -> tuple[Figure, str]:
        rows = table[(table["rewind_step"] == rewind_step) & (table["kind"] == kind)]
        if rows.empty:
            caption = f"{kind}, rewind step {rewind_step}: not run"
            fig, ax = plt.subplots(figsize=(6.0, 1.0))
            ax.axis("off")
            ax.text(0.5, 0.5, caption, ha="center", va="center")
            return fig, caption
        caption = (
            f"{kind}, rewind step {rewind_step}: mean barrier {100 * rows['barrier'].mean():.2f} "
            f"pp over {rows['seed'].nunique()} seeds (stable if < 2 pp)"
        )
        return interpolation_view(instability_result, rewind_step, kind), caption

    return Explorer(
        draw, {"rewind_step": slider, "kind": kind}, {"rewind_step": "slider", "kind": "kind"}
    )


# --- XOR: decision boundaries of single runs ------------------------------------------------------


def _xor_runs(xor_result, setting: str) -> tuple[list, pd.DataFrame]:
    models: dict[str, list] = xor_result.extras.get("models", {})
    if setting not in models:
        raise ValueError(f"unknown setting {setting!r}; this result has {list(models)}")
    rows = xor_result.table[xor_result.table["setting"] == setting].reset_index(drop=True)
    return models[setting], rows


def xor_view(xor_result, setting: str, index: int = 0) -> Figure:
    """The decision boundary of one trained XOR network (``plots.decision_boundaries``).

    Args:
        xor_result: ``xor_tickets(...)``'s result: ``extras["models"][setting]`` lists the trained
            models in the order of the setting's rows in ``table`` (seed, setting, success, ...).
        setting: ``"small"``, ``"large"``, ``"ticket"`` or ``"reinit"``.
        index: which run of that setting (0 = the first seed).
    The title names the setting, the seed, the hidden units alive and whether the run learned
    XOR (all four corners right).
    """
    models, rows = _xor_runs(xor_result, setting)
    if not 0 <= index < len(models):
        raise ValueError(f"index must lie in [0, {len(models) - 1}] for {setting!r}, got {index!r}")
    row = rows.iloc[index]
    outcome = "learned XOR" if bool(row["success"]) else "failed"
    units = f", {int(row['hidden'])} hidden units" if "hidden" in row else ""
    title = f"{setting}, seed {int(row['seed'])}{units}: {outcome}"
    return plots.decision_boundaries(models[index], titles=[title])


def xor_explorer(xor_result) -> Explorer:
    """A setting picker and a run slider, redrawing ``xor_view``.

    ``.setting`` (``Dropdown``) and ``.slider`` (``IntSlider``, the run index) drive it; the
    caption also gives the setting's success rate over all its runs.
    """
    settings = list(xor_result.extras.get("models", {}))
    if not settings:
        raise ValueError("the result holds no trained models (extras['models']); run xor_tickets")
    counts = {s: len(xor_result.extras["models"][s]) for s in settings}
    setting = widgets.Dropdown(options=settings, value=settings[0], description="setting")
    slider = widgets.IntSlider(
        value=0, min=0, max=min(counts.values()) - 1, description="run",
        continuous_update=False,
    )  # fmt: skip

    def draw(setting: str, index: int) -> tuple[Figure, str]:
        _, rows = _xor_runs(xor_result, setting)
        row = rows.iloc[index]
        rate = float(np.mean(rows["success"]))
        verdict = "learned XOR" if bool(row["success"]) else "failed"
        caption = (
            f"{setting}, seed {int(row['seed'])}: {verdict}; the {setting} setting learns XOR in "
            f"{rate:.0%} of its {len(rows)} runs"
        )
        return xor_view(xor_result, setting, index), caption

    return Explorer(draw, {"setting": setting, "index": slider}, {"index": "slider"})
