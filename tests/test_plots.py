"""Figures: axes, scales, lines and drawn values checked against numbers computed here."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch
from torch import nn

from ticketlab import plots
from ticketlab.verdict import Claim, evaluate

T975_2 = 4.302653  # t_{0.975, 2}: 95% band over 3 seeds
DENSITIES = [1.0, 0.512, 0.262, 0.134]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _density_table():
    rows = []
    for seed in range(3):
        rows.append((seed, 0, 1.0, "dense", 0.95 + 0.01 * seed, 900 + 10 * seed))
        for r, d in enumerate(DENSITIES[1:], start=1):
            rows.append((seed, r, d, "ticket", 0.96 + 0.01 * r + 0.002 * seed, 800 - 100 * r))
            rows.append((seed, r, d, "reinit", 0.94 - 0.01 * r + 0.004 * seed, 1000 + 50 * r))
    return pd.DataFrame(
        rows, columns=["seed", "round", "density", "kind", "test_acc", "early_stop_step"]
    )


def _y_at(line, x):
    """The y value a line draws at abscissa x."""
    xs = np.asarray(line.get_xdata(), dtype=float)
    return line.get_ydata()[np.flatnonzero(np.isclose(xs, x))[0]]


def _band_at(collection, x):
    """The y values of a fill_between polygon at abscissa x (its low and high edges)."""
    vertices = collection.get_paths()[0].vertices
    ys = vertices[np.isclose(vertices[:, 0], x), 1]
    return ys.min(), ys.max()


def test_accuracy_vs_density_layout_and_values():
    table = _density_table()
    fig = plots.accuracy_vs_density(table)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.xaxis_inverted()
    assert sorted(ax.get_xticks()) == pytest.approx(sorted(d * 100 for d in DENSITIES))
    assert "%" in ax.get_ylabel() and "%" in ax.get_xlabel()

    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"ticket", "reinit", "dense"}
    assert lines["dense"].get_linestyle() == "--"
    assert lines["dense"].get_ydata()[0] == pytest.approx(100 * (0.95 + 0.96 + 0.97) / 3)
    ticket = table[table["kind"] == "ticket"]
    expected = ticket.groupby("density")["test_acc"].mean().sort_index()
    for density, mean in expected.items():
        assert _y_at(lines["ticket"], density * 100) == pytest.approx(mean * 100)

    assert len(ax.collections) == 2  # one band per kind
    at = ticket[ticket["density"] == 0.262]["test_acc"].to_numpy()
    half = T975_2 * at.std(ddof=1) / math.sqrt(3)
    low, high = _band_at(ax.collections[0], 26.2)
    assert (low, high) == pytest.approx((100 * (at.mean() - half), 100 * (at.mean() + half)))
    assert to_rgb(lines["ticket"].get_color()) == pytest.approx(sns.color_palette("colorblind")[0])


def test_accuracy_vs_density_averages_rows_within_a_seed_and_accepts_an_axis():
    table = _density_table()
    extra = table[table["kind"] == "reinit"].assign(test_acc=lambda t: t["test_acc"] + 0.02)
    fig, ax = plt.subplots()
    returned = plots.accuracy_vs_density(pd.concat([table, extra]), ax=ax)
    assert returned is fig
    reinit = next(line for line in ax.get_lines() if line.get_label() == "reinit")
    at = table[(table["kind"] == "reinit") & (table["density"] == 0.512)]["test_acc"].mean()
    assert _y_at(reinit, 51.2) == pytest.approx(100 * (at + 0.01))


def test_accuracy_vs_density_rejects_percentages():
    table = _density_table().assign(test_acc=lambda t: t["test_acc"] * 100)
    with pytest.raises(ValueError, match="divide percentages by 100"):
        plots.accuracy_vs_density(table)
    with pytest.raises(ValueError, match="needs columns"):
        plots.accuracy_vs_density(table.drop(columns="kind"))


def test_early_stop_vs_density():
    table = _density_table()
    ax = plots.early_stop_vs_density(table).axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis_inverted()
    assert "iteration" in ax.get_ylabel().lower()
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["dense"].get_ydata()[0] == pytest.approx(910)
    assert _y_at(lines["reinit"], 13.4) == pytest.approx(1150)


def test_interpolation_curves_one_line_per_group():
    alphas = np.linspace(0, 1, 5)
    rows = [
        (kind, step, seed, a, 0.02 + 0.1 * (kind == "random") * math.sin(math.pi * a) + 0.01 * seed)
        for kind in ("ticket", "random")
        for step in (0, 100)
        for seed in range(3)
        for a in alphas
    ]
    curves = pd.DataFrame(rows, columns=["kind", "rewind_step", "seed", "alpha", "error"])
    ax = plots.interpolation_curves(curves).axes[0]
    lines = ax.get_lines()
    assert len(lines) == 4
    assert len(ax.collections) == 4
    assert ax.get_ylabel() == "Error (%)"
    assert ax.get_xlim() == (0.0, 1.0)
    random0 = next(line for line in lines if line.get_label() == "rewind_step=0, kind=random")
    assert random0.get_ydata()[2] == pytest.approx(100 * (0.02 + 0.1 + 0.01))  # α = 0.5, mean seed
    assert (
        random0.get_linestyle()
        != next(
            line for line in lines if line.get_label() == "rewind_step=0, kind=ticket"
        ).get_linestyle()
    )


def test_mask_heatmap_shows_kept_fraction_per_pixel():
    g = torch.Generator().manual_seed(0)
    first = torch.rand(30, 784, generator=g) < torch.linspace(0, 1, 784)  # right pixels kept more
    mask = {"fc1.weight": first, "out.weight": torch.ones(10, 30, dtype=torch.bool)}
    fig = plots.mask_heatmap(mask)
    ax = fig.axes[0]
    image = np.asarray(ax.images[0].get_array())
    expected = first.sum(dim=0).double().numpy().reshape(28, 28) / 30
    assert image.shape == (28, 28)
    assert np.allclose(image, expected)
    assert ax.images[0].get_clim() == (0.0, 1.0)
    assert "fc1.weight" in ax.get_title()
    with pytest.raises(ValueError, match=r"\(out_features, 784\)"):
        plots.mask_heatmap(mask, name="out.weight")
    with pytest.raises(ValueError, match="not in the mask"):
        plots.mask_heatmap(mask, name="fc2.weight")


def test_gamma_histogram_signed_on_a_symlog_axis_with_the_disabled_band():
    rng = np.random.default_rng(0)
    shallow, deep = rng.uniform(-1, 1, 200), rng.uniform(-0.5, 0.5, 50)
    frame = pd.DataFrame(
        {"gamma": np.concatenate([shallow, deep]), "depth": [14] * 200 + [110] * 50}
    )
    ax = plots.gamma_histogram(frame, threshold=0.1, bins=10).axes[0]

    def y(x):  # the oracle: linear within ±0.1, log10 outside, continuous at ±0.1
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(np.abs(x) <= 0.1, x / 0.1, np.sign(x) * (1 + np.log10(np.abs(x) / 0.1)))

    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert len(steps) == 2
    for patch, values in zip(steps, (shallow, deep), strict=True):
        heights, edges, _ = patch.get_data()
        assert len(edges) == 11 and np.allclose(np.diff(y(edges)), np.diff(y(edges))[0])
        assert np.allclose(edges[[0, -1]], [frame["gamma"].min(), frame["gamma"].max()])
        assert np.allclose(heights, np.histogram(values, bins=edges)[0] / len(values))
    labels = [patch.get_label() for patch in steps]
    disabled, negative = np.mean(np.abs(shallow) < 0.1), np.mean(shallow < 0)
    assert labels[0] == f"depth=14 ({disabled:.1%} disabled, {negative:.0%} negative)"
    # The axis is the same transform (matplotlib's is 0.1 · y), and the band is ±threshold.
    assert ax.get_xscale() == "symlog"
    probe = np.array([-0.8, -0.1, -0.03, 0.0, 0.05, 0.1, 0.6])
    assert np.allclose(ax.xaxis.get_transform().transform(probe), 0.1 * y(probe))
    (band,) = [p for p in ax.patches if not isinstance(p, StepPatch)]
    assert np.isclose(band.get_x(), -0.1) and np.isclose(band.get_width(), 0.2)
    assert band.get_label() == "disabled: |γ| < 0.1"
    assert ax.get_xlabel().startswith("γ")
    without = plots.gamma_histogram(frame[["gamma"]]).axes[0]
    assert [p.get_label() for p in without.patches] == ["all features"]


def _linear(weight, bias):
    model = nn.Linear(2, len(weight))
    with torch.no_grad():
        model.weight.copy_(torch.tensor(weight))
        model.bias.copy_(torch.tensor(bias))
    return model


def test_decision_boundaries_regions_and_corners():
    by_x1 = _linear([[1.0, 0.0]], [0.0])  # single logit: class 1 iff x1 > 0
    by_x2 = _linear([[0.0, -1.0], [0.0, 1.0]], [0.0, 0.0])  # two logits: class 1 iff x2 > 0
    by_x1.train()
    fig = plots.decision_boundaries([by_x1, by_x2], titles=["x1", "x2"], grid=50)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 2
    axis = np.linspace(-1.5, 1.5, 50)
    grid_x1, grid_x2 = np.meshgrid(axis, axis)  # rows follow x2, columns x1 (origin lower)
    for ax, expected in zip(visible, (grid_x1 > 0, grid_x2 > 0), strict=True):
        assert np.array_equal(np.asarray(ax.images[0].get_array()), expected.astype(int))
        assert sum(len(c.get_offsets()) for c in ax.collections) == 4  # the XOR corners
    # corners (−1,−1)→0, (−1,1)→1, (1,−1)→1, (1,1)→0: x1 > 0 gets 2 of 4 right
    assert visible[0].get_title() == "x1\n50% correct"
    assert by_x1.training  # the model's mode is restored


def test_verdict_summary_effects_margins_and_colors():
    table = pd.DataFrame(
        {
            "seed": [0, 1, 2] * 2,
            "kind": ["ticket"] * 3 + ["reinit"] * 3,
            "test_acc": [0.97, 0.98, 0.975, 0.96, 0.965, 0.96],
        }
    )
    base = dict(
        statement="s",
        citation="c",
        metric="test_acc",
        treatment={"kind": "ticket"},
        control={"kind": "reinit"},
        unit="pp",
        scale=100,
    )
    supported = evaluate(Claim(name="beats", **base), table)
    refuted = evaluate(Claim(name="beats by 3pp", margin=0.03, **base), table)
    fig = plots.verdict_summary([supported, refuted])
    assert len(fig.axes) == 2
    palette = sns.color_palette("colorblind")
    for ax, verdict, color in zip(
        fig.axes, (supported, refuted), (palette[2], palette[3]), strict=True
    ):
        marker = next(line for line in ax.get_lines() if line.get_marker() == "o")
        assert marker.get_xdata()[0] == pytest.approx(verdict.effect * 100)
        assert to_rgb(marker.get_color()) == pytest.approx(color)
        caps = [line for line in ax.get_lines() if line.get_marker() == "|"]
        ends = sorted(x for line in caps for x in line.get_xdata())
        assert ends == pytest.approx([verdict.ci_low * 100, verdict.ci_high * 100])
        margin = next(line for line in ax.get_lines() if line.get_linestyle() == "--")
        assert margin.get_xdata()[0] == pytest.approx(verdict.claim.margin * 100)
        assert [t.get_text() for t in ax.get_yticklabels()] == [verdict.claim.name]
        assert "pp" in ax.get_xlabel()


def test_set_theme_uses_the_colorblind_palette():
    with matplotlib.rc_context():
        plots.set_theme()
        cycle = [to_rgb(c["color"]) for c in plt.rcParams["axes.prop_cycle"]]
        assert np.allclose(cycle, sns.color_palette("colorblind"))
        assert plt.rcParams["axes.grid"]
