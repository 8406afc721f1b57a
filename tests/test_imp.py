"""ticketlab.imp: the IMP table, its cache, resumption, and agreement with a hand-written loop.

The LeNet runs use the real recipe at 60 steps; everything else uses a 16-unit XOR network,
whose cells train in milliseconds, so the orchestration can be checked exactly against an
independent loop built from ``train``, ``prune``, ``rewind`` and ``control``.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

import ticketlab
import ticketlab.population as population_module
from ticketlab import prune
from ticketlab.cache import CacheWarning
from ticketlab.imp import derive_seed, run
from ticketlab.masks import Mask
from ticketlab.recipes import DataSpec, ModelSpec, PruneSpec, Recipe
from ticketlab.rewinding import control, rewind
from ticketlab.training import TrainConfig, train

COLUMNS = ["seed", "round", "density", "kind", "test_acc", "val_acc", "train_loss"]
COLUMNS += ["early_stop_step", "early_stop_test_acc", "diverged"]


def cell_files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.pt"))


def cell_path(folder, seed: int, round_: int, kind: str, suffix: str = ".pt"):
    """Where a cell lies: ``<mode>/<population or sequential>/seed<s>/round<rr>_<kind><suffix>``
    (``both_modes`` for rounds 0 and 1)."""
    (path,) = folder.glob(f"*/*/seed{seed}/round{round_:02d}_{kind}{suffix}")
    return path


def assert_tables_close(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal up to float summation order, which is all that separates population training from
    one-by-one training. On 1,000 test images that may still flip a borderline prediction."""
    accuracies = ["test_acc", "val_acc", "early_stop_test_acc"]
    rest = [c for c in a.columns if c not in accuracies]
    pd.testing.assert_frame_equal(a[rest], b[rest], check_exact=False, rtol=1e-3, atol=1e-6)
    pd.testing.assert_frame_equal(a[accuracies], b[accuracies], check_exact=False, atol=0.0025)


# -- LeNet-300-100 on MNIST-5k, 60 steps -----------------------------------------------------

LENET = dict(rounds=2, seeds=[0, 1], controls=["reinit", "random"], device="cpu", progress=False)


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """One finished run (14 cells) that the LeNet tests read, copy and rerun."""
    recipe = ticketlab.recipes.get("lenet_mnist_paper", budget="quick", steps=60, eval_every=30)
    root = tmp_path_factory.mktemp("imp")
    return recipe, root, run(recipe, cache_dir=root, **LENET)


def rerun(lenet, tmp_path, damage=None, **changes):
    """Copy the finished cache, let ``damage`` alter the copy, and run the experiment again."""
    recipe, root, _ = lenet
    shutil.copytree(root, tmp_path, dirs_exist_ok=True)
    folder = next(tmp_path.iterdir())
    if damage is not None:
        damage(folder)
    return folder, run(recipe, cache_dir=tmp_path, **{**LENET, **changes})


def test_table_has_one_row_per_cell_with_the_required_columns(lenet):
    _, _, result = lenet
    table = result.table
    assert list(table.columns) == COLUMNS
    cells = [
        (seed, round_, kind)
        for seed in (0, 1)
        for round_ in range(3)
        for kind in (["dense"] if round_ == 0 else ["ticket", "reinit", "random"])
    ]
    assert list(table[["seed", "round", "kind"]].itertuples(index=False, name=None)) == cells
    assert table["test_acc"].between(0.5, 1).all()  # 60 steps of Adam already learn MNIST
    assert not table["diverged"].any()
    assert result.cached_cells == 0
    assert set(result.history.columns) >= {"seed", "round", "kind", "step", "val_loss"}
    assert len(result.history) == 14 * 3  # steps 0, 30, 60 for every cell


def test_densities_follow_layerwise_rounding(lenet):
    _, _, result = lenet
    # By hand: each round removes round(20 %) of each hidden layer's remaining weights and
    # round(10 %) of the output layer's (fc1 784·300, fc2 300·100, out 100·10).
    kept = {0: (235_200, 30_000, 1_000), 1: (188_160, 24_000, 900), 2: (150_528, 19_200, 810)}
    for (seed, round_), mask in result.masks.items():
        assert tuple(int(m.sum()) for m in mask.values()) == kept[round_], (seed, round_)
    for row in result.table.itertuples():
        assert row.density == pytest.approx(sum(kept[row.round]) / 266_200, abs=1e-12)
    # Controls get the ticket's per-layer counts.
    assert result.table.groupby(["seed", "round"])["density"].nunique().eq(1).all()


def test_summary_and_repr(lenet):
    _, _, result = lenet
    means = result.table.groupby(["round", "kind"])["test_acc"].mean() * 100
    summary = result.summary()
    for (round_, kind), value in means.items():
        density = summary.xs(round_, level="round").index[0]
        assert summary.loc[(round_, density), kind] == pytest.approx(round(value, 2))
    text = repr(result)
    assert text.startswith("ImpResult(lenet_mnist_paper, mode=iterative, seeds=[0, 1], rounds=2")
    assert "14 cells (0 from cache)" in text


def test_rerun_reads_every_cell_from_cache(lenet, tmp_path):
    _, root, first = lenet
    folder, again = rerun(lenet, tmp_path)
    assert again.cached_cells == len(first.table) == 14
    pd.testing.assert_frame_equal(again.table, first.table)
    pd.testing.assert_frame_equal(again.history, first.history)
    assert cell_files(folder) == cell_files(next(root.iterdir()))


def test_a_lost_cell_is_recomputed_with_its_population_bit_for_bit(lenet, tmp_path):
    _, _, first = lenet
    lost = [(1, 2, "ticket"), (1, 2, "reinit"), (0, 2, "random")]

    def interrupt(folder):
        for cell in lost:  # as if the run had been killed before writing them
            cell_path(folder, *cell).unlink()
            cell_path(folder, *cell, suffix=".json").unlink()

    folder, resumed = rerun(lenet, tmp_path, interrupt)
    assert resumed.cached_cells == 14 - 6  # round 2's population (2 seeds x 3 kinds) retrained
    pd.testing.assert_frame_equal(resumed.table, first.table)
    pd.testing.assert_frame_equal(resumed.history, first.history)
    assert all(cell_path(folder, *cell, suffix=".json").exists() for cell in lost)


def test_corrupted_cell_is_detected_and_recomputed(lenet, tmp_path):
    _, _, first = lenet

    def corrupt(folder):
        path = cell_path(folder, 0, 1, "reinit")
        data = bytearray(path.read_bytes())
        data[-50] ^= 0x01
        path.write_bytes(bytes(data))

    with pytest.warns(CacheWarning, match=r"round01_reinit\.pt is unusable: its checksum"):
        _, again = rerun(lenet, tmp_path, corrupt)
    assert again.cached_cells == 14 - 6
    pd.testing.assert_frame_equal(again.table, first.table)


def test_a_cell_copied_over_another_is_detected_and_recomputed(lenet, tmp_path):
    """The cache knows which cell an entry is: seed 0's cell in seed 1's place is not served."""
    _, _, first = lenet

    def copy_seed0_over_seed1(folder):
        for suffix in (".pt", ".json"):
            shutil.copy(
                cell_path(folder, 0, 1, "reinit", suffix), cell_path(folder, 1, 1, "reinit", suffix)
            )

    with pytest.warns(CacheWarning, match=r"seed1/round01_reinit\.pt is unusable: it holds the"):
        _, again = rerun(lenet, tmp_path, copy_seed0_over_seed1)
    assert again.cached_cells == 14 - 6
    pd.testing.assert_frame_equal(again.table, first.table)


def test_cells_of_other_code_are_recomputed(lenet, tmp_path, monkeypatch):
    import ticketlab.imp as imp_module

    monkeypatch.setattr(imp_module, "results_version", lambda module: "another-version")
    with pytest.warns(CacheWarning, match="computed by other code"):
        _, again = rerun(lenet, tmp_path)
    assert again.cached_cells == 0


def test_population_and_sequential_training_agree(lenet, tmp_path):
    recipe, _, first = lenet
    sequential = run(
        recipe, rounds=1, seeds=[0], controls=["random"], cache_dir=tmp_path, device="cpu",
        progress=False, population=False,
    )  # fmt: skip
    expected = first.table[(first.table["seed"] == 0) & (first.table["round"] <= 1)]
    expected = expected[expected["kind"] != "reinit"].reset_index(drop=True)
    assert_tables_close(sequential.table, expected)


def test_one_shot_densities_equal_iterative_ones(lenet, tmp_path):
    recipe, _, iterative = lenet
    one_shot = run(
        recipe, rounds=2, seeds=[0], mode="one_shot", cache_dir=tmp_path, device="cpu",
        progress=False,
    )  # fmt: skip
    assert one_shot.mode == "one_shot"
    assert list(one_shot.table["kind"]) == ["dense", "ticket", "ticket"]
    seed0 = iterative.table[(iterative.table["seed"] == 0)]
    expected = seed0[seed0["kind"].isin(["dense", "ticket"])]["density"].tolist()
    assert one_shot.table["density"].tolist() == expected
    for round_ in (1, 2):
        ours, theirs = one_shot.masks[(0, round_)], iterative.masks[(0, round_)]
        assert [int(m.sum()) for m in ours.values()] == [int(m.sum()) for m in theirs.values()]
    assert sorted(p.name for p in tmp_path.iterdir()) == [recipe.key]
    # Round r keeps the trained dense network's largest weights, as many per layer as iterative
    # pruning keeps at round r: ranked independently here with Python's sort.
    dense = recipe.model.build(0)
    stored = torch.load(next(tmp_path.rglob("round00_dense.pt")), weights_only=True)
    dense.load_state_dict(stored["weights"])
    for round_ in (1, 2):
        for name, keep in one_shot.masks[(0, round_)].items():
            weights = dense.get_parameter(name).detach().abs().flatten().tolist()
            order = sorted(range(len(weights)), key=lambda i: (weights[i], i))
            expected = set(order[len(weights) - int(keep.sum()) :])
            assert set(keep.flatten().nonzero().flatten().tolist()) == expected, (round_, name)


# -- XOR: exact agreement with a hand-written IMP loop -----------------------------------------

# Jittered corners and SGD: on the four exact corners the bias gradients cancel to rounding
# noise, which Adam would scale up to full-size steps, and population and one-by-one training
# (which round differently) would then part ways for no reason worth testing.
XOR = Recipe(
    model=ModelSpec("xor_mlp", hidden=16, activation="tanh"),
    data=DataSpec("xor", noise=0.2),
    train=TrainConfig(steps=30, batch_size=4, optimizer="sgd", lr=0.2, eval_every=10),
    prune=PruneSpec(0.2, layer_rates={"out.weight": 0.1}),
)


def by_hand(recipe, seeds, rounds, controls, device="cpu", mode="iterative") -> pd.DataFrame:
    """IMP written out from the paper, one cell at a time, with ``train`` (no population).

    Prunes 20 % per round and 10 % of the output layer, layerwise: ``XOR``'s prune settings.
    """
    data = recipe.data.load(device)
    k = recipe.prune.rewind_step
    rows = []

    def cell(seed, round_, kind, model, mask, start):
        result = train(model, data, recipe.train, mask=mask, data_seed=seed, start_step=start,
                       checkpoint_steps=[k] if kind == "dense" else [], progress=False)  # fmt: skip
        density = mask.density if mask is not None else 1.0
        rows.append({"seed": seed, "round": round_, "density": density, "kind": kind,
                     **result.summary()})  # fmt: skip
        return result

    for seed in seeds:
        dense = cell(seed, 0, "dense", recipe.model.build(seed), None, 0)
        point = dense.checkpoints[k]  # the rewind point: the weights after k steps
        mask = Mask.ones(dense.model)
        ranked = dense.model
        for round_ in range(1, rounds + 1):
            mask = prune.magnitude(ranked, mask, 0.2, "layerwise", {"out.weight": 0.1})
            ticket = rewind(recipe.model.build(seed).to(device), point, mask)
            result = cell(seed, round_, "ticket", ticket, mask, k)
            for kind in controls:
                unmasked = rewind(recipe.model.build(seed).to(device), point)
                seed_ = derive_seed(seed, round_, kind)
                model, cmask = control(kind, unmasked, mask, seed_, recipe.model.init)
                cell(seed, round_, kind, model, cmask, k)
            if mode == "iterative":
                ranked = result.model  # one_shot keeps ranking the dense weights
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("mode", "controls"),
    [("iterative", ["reinit", "random", "shuffled", "sign"]), ("one_shot", ["random"])],
)
def test_imp_equals_the_hand_written_loop(tmp_path, device, mode, controls):
    # Controls are listed in the table's order of kinds, the order by_hand produces.
    result = run(XOR, rounds=2, seeds=[0, 3], controls=controls, mode=mode, cache_dir=tmp_path,
                 device=device, progress=False, population=False)  # fmt: skip
    expected = by_hand(XOR, [0, 3], 2, controls, device, mode)
    table = result.table.astype({"kind": object})
    pd.testing.assert_frame_equal(table, expected.astype({"kind": object})[table.columns])


def test_one_shot_prunes_the_dense_weights_to_each_rounds_density(tmp_path):
    result = run(XOR, rounds=3, seeds=[0], mode="one_shot", cache_dir=tmp_path, progress=False,
                 population=False)  # fmt: skip
    dense = train(XOR.model.build(0), XOR.data.load("cpu"), XOR.train, data_seed=0, progress=False)
    weights = dict(dense.model.named_parameters())
    # Kept per round, by hand: fc1 (32) loses round(20 %), out (16) round(10 %) of what remains.
    counts = {1: (26, 14), 2: (21, 13), 3: (17, 12)}
    for round_, (n_fc1, n_out) in counts.items():
        mask = result.masks[(0, round_)]
        for name, n in (("fc1.weight", n_fc1), ("out.weight", n_out)):
            magnitudes = weights[name].detach().abs().flatten()
            oracle = torch.zeros_like(magnitudes, dtype=torch.bool)
            oracle[magnitudes.topk(n).indices] = True  # the n largest trained dense weights
            assert torch.equal(mask[name].flatten(), oracle), (round_, name)


@pytest.mark.parametrize(
    ("first", "controls", "population", "shared"),
    [
        # Both runs' populations agree in rounds 0 and 1: 2 seeds × 2 rounds are read.
        ("iterative", [], None, 4),
        ("one_shot", [], None, 4),
        # The iterative run's round-1 population also holds a control: only round 0 agrees.
        ("iterative", ["reinit"], None, 2),
        # Cells trained alone do not depend on their companions: rounds 0 and 1 agree again.
        ("iterative", ["reinit"], False, 4),
    ],
)
def test_the_modes_share_rounds_0_and_1_bit_for_bit(tmp_path, first, controls, population, shared):
    """Rounds 0 and 1 are the same computation in both modes: a run after one of the other mode
    reads their cells, and its table, curves and masks are bit for bit those of a run alone."""
    second = "one_shot" if first == "iterative" else "iterative"
    kwargs = dict(rounds=3, seeds=[0, 1], progress=False, population=population)
    run(XOR, mode=first, controls=controls, cache_dir=tmp_path / "both", **kwargs)
    after = run(XOR, mode=second, cache_dir=tmp_path / "both", **kwargs)
    alone = run(XOR, mode=second, cache_dir=tmp_path / "alone", **kwargs)
    assert (after.cached_cells, alone.cached_cells) == (shared, 0)
    assert len(after.table) == len(alone.table) == 2 * 4
    pd.testing.assert_frame_equal(after.table, alone.table, check_exact=True)
    pd.testing.assert_frame_equal(after.history, alone.history, check_exact=True)
    assert after.masks.keys() == alone.masks.keys()
    assert all(after.masks[key] == mask for key, mask in alone.masks.items())
    # Rounds 2 and 3 differ between the modes and stay in each mode's own folder.
    later = {p.relative_to(tmp_path / "both").parts[1] for p in (tmp_path / "both").rglob("*.pt")}
    assert later == {"both_modes", "iterative", "one_shot"}


def test_population_equals_sequential_on_xor(tmp_path):
    kwargs = dict(rounds=2, seeds=[0, 1, 2], controls=["random", "sign"], progress=False)
    together = run(XOR, cache_dir=tmp_path / "a", **kwargs)
    apart = run(XOR, cache_dir=tmp_path / "b", population=False, **kwargs)
    assert_tables_close(together.table, apart.table)


def test_rewind_step_resets_to_the_checkpoint_at_k(tmp_path):
    result = run(XOR, rounds=1, seeds=[0], controls=["random"], rewind_step=10,
                 cache_dir=tmp_path, progress=False, population=False)  # fmt: skip
    assert result.recipe.prune.rewind_step == 10
    stopped = train(XOR.model.build(0), XOR.data.load("cpu"), XOR.train.replace(steps=10),
                    data_seed=0, progress=False)  # fmt: skip
    stored = cell_path(next(tmp_path.iterdir()), 0, 0, "dense")
    point = torch.load(stored, weights_only=True)["rewind_point"]
    for name, value in stopped.model.state_dict().items():
        assert torch.equal(point[name], value), name  # the rewind point is the state at step 10
    later = result.history[result.history["round"] == 1]
    assert later.groupby("kind")["step"].min().eq(10).all()  # resumed at k, not at 0
    expected = by_hand(XOR.replace(rewind_step=10), [0], 1, ["random"])
    assert result.table["test_acc"].tolist() == expected["test_acc"].tolist()
    assert result.table["train_loss"].tolist() == expected["train_loss"].tolist()


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, monkeypatch):
    kwargs = dict(rounds=2, seeds=[0, 1], controls=["random"], progress=False, population=False)
    reference = run(XOR, cache_dir=tmp_path / "whole", **kwargs)
    calls = []

    def dies_on_the_fifth_cell(*args, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        return train(*args, **kw)

    monkeypatch.setattr(population_module, "train", dies_on_the_fifth_cell)
    with pytest.raises(KeyboardInterrupt):
        run(XOR, cache_dir=tmp_path / "cut", **kwargs)
    monkeypatch.undo()
    folder = next((tmp_path / "cut").iterdir())
    # Both dense cells and the first two cells of round 1 finished, and each was saved then.
    assert cell_files(folder) == [  # cells trained one by one do not depend on each other
        "both_modes/sequential/seed0/round00_dense.pt",
        "both_modes/sequential/seed0/round01_random.pt",
        "both_modes/sequential/seed0/round01_ticket.pt",
        "both_modes/sequential/seed1/round00_dense.pt",
    ]
    resumed = run(XOR, cache_dir=tmp_path / "cut", **kwargs)
    assert resumed.cached_cells == 4
    pd.testing.assert_frame_equal(resumed.table, reference.table)


def test_changing_the_recipe_uses_another_cache_folder(tmp_path):
    run(XOR, rounds=0, cache_dir=tmp_path, progress=False)
    other = run(XOR, rounds=0, cache_dir=tmp_path, progress=False, lr=0.01)
    assert other.cached_cells == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([XOR.key, XOR.replace(lr=0.01).key])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(mode="twice"), "mode must be 'iterative' or 'one_shot'"),
        (dict(controls=["reinit", "lucky"]), r"unknown controls \['lucky'\]"),
        (dict(seeds=[0, 0]), "seeds must be distinct"),
        (dict(seeds=[]), "seeds is empty"),
        (dict(rewind_step=30), "rewind_step=30 must be smaller than steps=30"),
        (dict(rounds=-1), "rounds must be an int >= 0"),
        (dict(stepz=3), "unknown recipe field 'stepz'"),
    ],
)
def test_bad_arguments_are_clear_errors(tmp_path, kwargs, message):
    error = TypeError if "stepz" in kwargs else ValueError
    with pytest.raises(error, match=message):
        run(XOR, cache_dir=tmp_path, progress=False, **kwargs)
    assert not any(tmp_path.iterdir())  # nothing computed, nothing written


def test_controls_drawn_several_times(tmp_path):
    """``control_draws=3`` (the paper reinitializes each ticket three times): the first draw is
    the one-draw run's cell; the others are independent draws, each a control trained by hand
    from its own seed."""
    three = XOR.replace(control_draws=3)
    kwargs = dict(rounds=1, seeds=[0, 1], controls=["reinit"], progress=False, population=False)
    result = run(three, cache_dir=tmp_path / "three", **kwargs)
    once = run(XOR, cache_dir=tmp_path / "once", **kwargs)
    table = result.table
    assert list(table.columns[:5]) == ["seed", "round", "density", "kind", "draw"]
    reinits = table[table["kind"] == "reinit"]
    assert sorted(reinits.groupby("seed")["draw"].apply(list).sum()) == [0, 0, 1, 1, 2, 2]
    first = reinits[reinits["draw"] == 0].drop(columns="draw").reset_index(drop=True)
    expected = once.table[once.table["kind"] == "reinit"].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, expected, check_exact=True)
    data = XOR.data.load("cpu")
    for seed in (0, 1):
        dense = train(XOR.model.build(seed), data, XOR.train, data_seed=seed, progress=False)
        mask = prune.magnitude(dense.model, Mask.ones(dense.model), 0.2, "layerwise",
                               {"out.weight": 0.1})  # fmt: skip
        for draw, name in ((1, "reinit#2"), (2, "reinit#3")):
            unmasked = rewind(XOR.model.build(seed), XOR.model.build(seed).state_dict())
            model, cmask = control(
                "reinit", unmasked, mask, derive_seed(seed, 1, name), "glorot_normal"
            )
            by_hand = train(model, data, XOR.train, mask=cmask, data_seed=seed, progress=False)
            row = reinits[(reinits["seed"] == seed) & (reinits["draw"] == draw)].iloc[0]
            assert (
                row["test_acc"] == by_hand.test_acc
                and row["train_loss"] == by_hand.summary()["train_loss"]
            )
    # Three draws of every control are averaged in the summary, one column per kind.
    assert sorted(result.summary().columns) == ["dense", "reinit", "ticket"]


def test_a_round_of_several_mlp_cells_trains_as_one_population_by_default(tmp_path):
    """``population=None``: an MLP round of several cells is one population (round 0's and round
    1's, one folder each); a one-cell round trains alone (``sequential/``)."""
    run(XOR, rounds=1, seeds=[0, 1], controls=["reinit"], cache_dir=tmp_path, progress=False)
    folders = {p.relative_to(tmp_path).parts[2] for p in tmp_path.rglob("*.pt")}
    assert len(folders) == 2 and all(f.startswith("population-") for f in folders), folders
    run(XOR, rounds=0, seeds=[5], cache_dir=tmp_path / "one", progress=False)
    assert {p.relative_to(tmp_path / "one").parts[2] for p in (tmp_path / "one").rglob("*.pt")} == {
        "sequential"
    }
