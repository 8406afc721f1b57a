"""Explorers: the pure views draw what the tables say; moving a control redraws the Output."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from ticketlab import imp, widgets
from ticketlab.masks import Mask
from ticketlab.models import xor_mlp
from ticketlab.recipes import get


@pytest.fixture(autouse=True)
def _no_figure_leaks():
    yield
    leaked = plt.get_fignums()
    plt.close("all")
    assert leaked == [], f"figures left open in pyplot: {leaked}"


def _png_bytes(explorer) -> bytes:
    image = explorer.output.outputs[0]["data"]["image/png"]
    return base64.b64decode(image)


def _snapshot(explorer) -> tuple[bytes, str]:
    return _png_bytes(explorer), explorer.caption


# --- a crafted IMP result: 2 seeds, rounds 0-2, a (4, 784) first layer -------------------------

KEEP = {0: 4, 1: 2, 2: 1}  # first-layer rows kept per pixel column pattern, see _mask


def _mask(round_: int) -> Mask:
    """Round r keeps, for every pixel, the first KEEP[r] of its 4 connections; out stays dense."""
    fc1 = torch.zeros(4, 784, dtype=torch.bool)
    fc1[: KEEP[round_]] = True
    if round_ == 2:
        fc1[:, :28] = True  # the top pixel row keeps everything: a visible stripe
    return Mask({"fc1.weight": fc1, "out.weight": torch.ones(10, 4, dtype=torch.bool)})


def _fake_imp():
    rows = []
    for seed in (0, 1):
        rows.append((seed, 0, _mask(0).density, "dense", 0.90 + 0.02 * seed))
        for r in (1, 2):
            d = _mask(r).density
            rows.append((seed, r, d, "ticket", 0.91 + 0.01 * r + 0.02 * seed))
            rows.append((seed, r, d, "reinit", 0.88 - 0.01 * r + 0.02 * seed))
    table = pd.DataFrame(rows, columns=["seed", "round", "density", "kind", "test_acc"])
    masks = {(seed, r): _mask(r) for seed in (0, 1) for r in (0, 1, 2)}
    return SimpleNamespace(table=table, masks=masks)


def test_density_view_draws_the_rounds_mask_and_rings_its_accuracy():
    result = _fake_imp()
    fig = widgets.density_view(result, round=2, seed=1)
    assert isinstance(fig, Figure)
    mask = _mask(2)
    assert fig._suptitle.get_text() == (
        f"Round 2: {100 * mask.density:.1f}% of weights remaining (seed 1)"
    )

    heat = fig.axes[0].images[0].get_array()
    expected = np.full((28, 28), 1 / 4)  # one of four connections kept per pixel ...
    expected[0, :] = 1.0  # ... except the top row, which keeps all four
    np.testing.assert_allclose(heat, expected)
    layer_density = expected.mean()
    assert fig.axes[0].images[0].get_clim() == pytest.approx((0.0, 2 * layer_density))

    accuracy = next(ax for ax in fig.axes if ax.get_xscale() == "log")
    ringed = [c for c in accuracy.collections if isinstance(c, PathCollection)]
    assert len(ringed) == 1
    # mean over seeds of the round-2 ticket: (0.93 + 0.95) / 2
    np.testing.assert_allclose(ringed[0].get_offsets()[0], [100 * mask.density, 94.0])
    assert any("round 2" in t.get_text() for t in accuracy.texts)


def test_density_view_at_round_zero_rings_the_dense_network():
    fig = widgets.density_view(_fake_imp(), round=0)
    accuracy = next(ax for ax in fig.axes if ax.get_xscale() == "log")
    ringed = [c for c in accuracy.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(ringed[0].get_offsets()[0], [100.0, 91.0])  # (0.90 + 0.92) / 2
    assert "(seed 0)" in fig._suptitle.get_text()  # the smallest seed by default


def test_density_view_rejects_unknown_rounds_and_seeds():
    with pytest.raises(ValueError, match=r"round 5 was not run .* \[0, 1, 2\]"):
        widgets.density_view(_fake_imp(), round=5)
    with pytest.raises(ValueError, match=r"seed 7 is not in this result; its seeds are \[0, 1\]"):
        widgets.density_view(_fake_imp(), round=1, seed=7)


def test_density_explorer_slider_is_labelled_by_density_and_redraws():
    result = _fake_imp()
    explorer = widgets.density_explorer(result)
    slider = explorer.slider
    assert slider.continuous_update is False
    labels = [f"{100 * _mask(r).density:.1f}%" for r in (0, 1, 2)]
    assert list(slider.options) == list(zip(labels, (0, 1, 2), strict=True))
    assert slider.value == 2  # starts at the sparsest round
    assert explorer.children[-1] is explorer.output

    png_before, caption_before = _snapshot(explorer)
    assert png_before.startswith(b"\x89PNG")
    assert caption_before.startswith(f"round 2: {labels[2]} of weights remain; ticket")
    slider.value = 0
    png_after, caption_after = _snapshot(explorer)
    assert png_after != png_before
    assert (
        caption_after
        == "round 0: 100.0% of weights remain; dense test accuracy 91.0% (mean of 2 seeds)"
    )
    assert len(explorer.output.outputs) == 2  # replaced, not appended


def test_density_explorer_on_a_real_imp_run(tmp_path):
    recipe = get("lenet_mnist_paper", budget="quick", steps=30, eval_every=15)
    result = imp.run(recipe, rounds=1, seeds=[0], cache_dir=tmp_path, progress=False)
    explorer = widgets.density_explorer(result)
    densities = [result.masks[(0, r)].density for r in (0, 1)]
    assert [label for label, _ in explorer.slider.options] == [f"{100 * d:.1f}%" for d in densities]
    before = _snapshot(explorer)
    explorer.slider.value = 0
    after = _snapshot(explorer)
    assert after[0] != before[0]
    dense = result.table.query("round == 0")["test_acc"].mean()
    assert f"dense test accuracy {100 * dense:.1f}%" in after[1]


# --- a crafted instability result: bumps of known height ------------------------------------------

HEIGHTS = {(0, "dense"): 0.30, (10, "dense"): 0.04, (0, "ticket"): 0.10, (10, "ticket"): 0.01}


def _fake_instability():
    alphas = np.linspace(0, 1, 11)
    curves, rows = [], []
    for (step, kind), height in HEIGHTS.items():
        for seed, base in ((0, 0.02), (1, 0.04)):
            bump = seed * 0.5 * height + (1 - seed) * 1.5 * height  # seeds 1.5h and 0.5h
            error = base + bump * 4 * alphas * (1 - alphas)
            ids = {"seed": seed, "rewind_step": step, "kind": kind}
            curves.append(pd.DataFrame({**ids, "alpha": alphas, "loss": error, "error": error}))
            rows.append({**ids, "density": 1.0, "barrier": bump, "distance": 1.0,
                         "error_a": base, "error_b": base})  # fmt: skip
    return SimpleNamespace(table=pd.DataFrame(rows), extras={"curves": pd.concat(curves)})


def test_interpolation_view_annotates_the_barrier():
    fig = widgets.interpolation_view(_fake_instability(), rewind_step=0)
    ax = fig.axes[0]
    # the mean curve peaks at α = 0.5 with height (1.5h + 0.5h) / 2 = h above its endpoints
    assert any(t.get_text() == "barrier 30 pp" for t in ax.texts)
    assert ax.get_title() == "dense copies from step 0: mean barrier 30 pp over 2 seeds"
    thick = [line for line in ax.get_lines() if line.get_label() == "dense, mean"]
    assert len(thick) == 1
    np.testing.assert_allclose(thick[0].get_ydata()[5], 100 * (0.03 + 0.30))


def test_interpolation_view_names_what_exists_when_asked_for_what_does_not():
    with pytest.raises(ValueError, match=r"rewind_step=5, kind='dense'.*\(0, 'dense'\)"):
        widgets.interpolation_view(_fake_instability(), rewind_step=5)
    with pytest.raises(ValueError, match="extras\\['curves'\\] is missing"):
        widgets.interpolation_view(SimpleNamespace(table=None, extras={}), rewind_step=0)


def test_interpolation_explorer_redraws_for_step_and_kind():
    explorer = widgets.interpolation_explorer(_fake_instability())
    assert explorer.slider.continuous_update is False
    assert list(explorer.slider.options) == [("step 0", 0), ("step 10", 10)]
    assert list(explorer.kind.options) == ["dense", "ticket"]  # the dense baseline first
    first = _snapshot(explorer)
    assert first[1].startswith("dense, rewind step 0: mean barrier 30.00 pp over 2 seeds")

    explorer.slider.value = 10
    second = _snapshot(explorer)
    assert second[0] != first[0]
    assert second[1].startswith("dense, rewind step 10: mean barrier 4.00 pp")

    explorer.kind.value = "ticket"
    third = _snapshot(explorer)
    assert third[0] != second[0]
    assert third[1].startswith("ticket, rewind step 10: mean barrier 1.00 pp")


# --- a crafted XOR result: one network that computes XOR, one that cannot ------------------------


def _xor_solver():
    """relu(x1 − x2) + relu(x2 − x1) − 1 > 0 exactly when the signs differ."""
    model = xor_mlp(2)
    with torch.no_grad():
        model.fc1.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
        model.fc1.bias.zero_()
        model.out.weight.copy_(torch.tensor([[1.0, 1.0]]))
        model.out.bias.fill_(-1.0)
    return model


def _xor_constant():
    """Every weight zero, bias −1: predicts label 0 everywhere (2 of 4 corners right)."""
    model = xor_mlp(2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.out.bias.fill_(-1.0)
    return model


def _fake_xor():
    table = pd.DataFrame(
        [
            (5, "small", 1.0, 2), (7, "small", 0.0, 2),
            (5, "large", 1.0, 10), (7, "large", 1.0, 10),
        ],
        columns=["seed", "setting", "success", "hidden"],
    )  # fmt: skip
    models = {"small": [_xor_solver(), _xor_constant()], "large": [_xor_solver(), _xor_solver()]}
    return SimpleNamespace(table=table, extras={"models": models})


def _regions(fig) -> np.ndarray:
    return np.asarray(fig.axes[0].images[0].get_array())


def test_xor_view_shows_the_chosen_runs_boundary_and_outcome():
    result = _fake_xor()
    good = widgets.xor_view(result, "small", 0)
    bad = widgets.xor_view(result, "small", index=1)
    assert good.axes[0].get_title().splitlines()[0] == "small, seed 5, 2 hidden units: learned XOR"
    assert bad.axes[0].get_title().splitlines()[0] == "small, seed 7, 2 hidden units: failed"
    regions = _regions(good)  # rows run from x₂ = −limit (bottom) to +limit
    n = len(regions)
    corners = {(-1, -1): 0, (-1, 1): 1, (1, -1): 1, (1, 1): 0}
    for (x1, x2), label in corners.items():
        row, col = (n // 4 if x2 < 0 else 3 * n // 4), (n // 4 if x1 < 0 else 3 * n // 4)
        assert regions[row, col] == label
    assert (_regions(bad) == 0).all()


def test_xor_view_rejects_unknown_settings_and_indices():
    with pytest.raises(ValueError, match=r"unknown setting 'ticket'; this result has \['small'"):
        widgets.xor_view(_fake_xor(), "ticket")
    with pytest.raises(ValueError, match=r"index must lie in \[0, 1\]"):
        widgets.xor_view(_fake_xor(), "small", 2)


def test_xor_explorer_redraws_for_setting_and_run():
    explorer = widgets.xor_explorer(_fake_xor())
    assert explorer.slider.continuous_update is False
    assert (explorer.slider.min, explorer.slider.max) == (0, 1)
    first = _snapshot(explorer)
    assert (
        first[1] == "small, seed 5: learned XOR; the small setting learns XOR in 50% of its 2 runs"
    )

    explorer.slider.value = 1
    second = _snapshot(explorer)
    assert second[0] != first[0]
    assert second[1].startswith("small, seed 7: failed")

    explorer.setting.value = "large"
    third = _snapshot(explorer)
    assert (
        third[1] == "large, seed 7: learned XOR; the large setting learns XOR in 100% of its 2 runs"
    )
