"""Tests for the deconstructing-tickets experiments: supermask, pruning_at_init, rewinding.

Oracles: hand computations on small tensors, an independent re-implementation of the masked
forward pass (plain matrix products on the weights built by ``models.lenet_300_100``), and the
single-model trainer ``ticketlab.training.train`` for the rewind checkpoint.
"""

from __future__ import annotations

import math

import pytest
import torch

from ticketlab import recipes
from ticketlab.experiments import (
    pruning_at_init,
    rewinding_vs_finetuning,
    supermask,
)
from ticketlab.experiments.deconstruct import layer_densities
from ticketlab.experiments.pruning_at_init import CLAIMS as PAI_CLAIMS
from ticketlab.experiments.pruning_at_init import snip_batch
from ticketlab.experiments.rewinding import retraining
from ticketlab.experiments.supermask import large_final_same_sign, signed_constant
from ticketlab.masks import Mask
from ticketlab.models import lenet_300_100
from ticketlab.training import TrainConfig, train

OUTCOMES = {"supported", "refuted", "inconclusive"}
NAMES = ("fc1.weight", "fc2.weight", "out.weight")


# -- the mask rules, by hand --------------------------------------------------------------------


def test_large_final_same_sign_by_hand():
    initial = {"w": torch.tensor([[1.0, -1.0, 0.5], [-2.0, 0.3, 0.7]])}
    final = {"w": torch.tensor([[0.5, 0.9, -2.0], [-0.3, 0.1, 3.0]])}
    # Scores max(0, w_final · sign(w_init)): 0.5, 0 (flipped), 0 (flipped), 0.3, 0.1, 3.0.
    mask = large_final_same_sign(initial, final, {"w": 0.5})  # keeps 3 of 6
    assert mask["w"].tolist() == [[True, False, False], [True, False, True]]
    # The largest final magnitude (-2.0) flipped sign, so it never beats a same-sign weight.
    mask = large_final_same_sign(initial, final, {"w": 4 / 6})
    assert mask["w"].tolist() == [[True, False, False], [True, True, True]]


def test_layer_densities_follow_the_recipe_rates():
    rec = recipes.get("lenet_mnist_paper", budget="quick")
    model = lenet_300_100()
    got = layer_densities(rec, model, 0.02)
    rounds = math.log(0.02) / math.log(0.8)  # rounds of 20 % pruning that leave 2 %
    assert got["fc1.weight"] == got["fc2.weight"] == 0.02
    assert got["out.weight"] == pytest.approx(0.9**rounds)  # 10 % per round in the output layer
    assert layer_densities(rec, model, 1.0) == dict.fromkeys(NAMES, 1.0)
    kept_dense = layer_densities(recipes.get("lenet_mnist_openlth", budget="quick"), model, 0.1)
    assert kept_dense == {"fc1.weight": 0.1, "fc2.weight": 0.1, "out.weight": 1.0}


def test_signed_constant_keeps_signs_with_the_layer_std():
    w = torch.tensor([[1.0, -3.0], [2.0, -0.5]])
    out = signed_constant({"w": w, "b": torch.ones(2)}, ["w"])
    sigma = torch.tensor([1.0, -3.0, 2.0, -0.5]).std().item()
    assert torch.allclose(out["w"], torch.tensor([[sigma, -sigma], [sigma, -sigma]]))
    assert torch.equal(out["b"], torch.ones(2)) and torch.equal(w[0], torch.tensor([1.0, -3.0]))


def test_snip_batch_draws_ten_per_class_from_train():
    data = recipes.get("lenet_mnist_paper", budget="quick").data.load("cpu")
    X, y = snip_batch(data, seed=3)
    assert X.shape == (100, 1, 28, 28) and y.shape == (100,)
    index = {row.numpy().tobytes(): int(label) for row, label in zip(*data.train, strict=True)}
    picked = [index.get(row.numpy().tobytes()) for row in X]
    assert picked == y.tolist()  # training examples, with their own labels
    assert len({row.numpy().tobytes() for row in X}) == 100  # without replacement
    assert torch.equal(snip_batch(data, seed=3)[0], X)


# -- rewinding: where each method starts ---------------------------------------------------------


def _state(value: float) -> dict[str, torch.Tensor]:
    return {"w": torch.full((2, 2), value), "b": torch.full((2,), value)}


def test_retraining_starts_from_the_right_weights_and_learning_rate():
    config = TrainConfig(steps=100, optimizer="sgd", lr=0.1, momentum=0.9, milestones=(50, 75))
    mask = Mask({"w": torch.tensor([[True, False], [False, True]])})
    trained, rewound = _state(3.0), _state(-1.0)
    starts = {
        m: retraining(m, trained=trained, rewound=rewound, mask=mask, config=config, rewind_step=10)
        for m in ("finetune", "weight_rewind", "lr_rewind")
    }
    masked = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    for method, (state, cfg, start) in starts.items():
        source = rewound if method == "weight_rewind" else trained
        assert torch.equal(state["w"], source["w"] * masked)
        assert torch.equal(state["b"], source["b"])  # biases are never pruned
        assert start == 10 and cfg.steps == 100
    final_lr = 0.1 * 0.1 * 0.1
    ft = starts["finetune"][1]
    assert [ft.lr_at(s) for s in (10, 60, 99)] == pytest.approx([final_lr] * 3)
    for method in ("weight_rewind", "lr_rewind"):
        cfg = starts[method][1]
        assert [cfg.lr_at(s) for s in (10, 60, 99)] == pytest.approx([0.1, 0.01, 0.001])
    assert trained["w"][0, 1] == 3.0  # inputs untouched
    with pytest.raises(ValueError, match="unknown retraining method"):
        retraining("prune", trained=trained, rewound=rewound, mask=mask, config=config,
                   rewind_step=1)  # fmt: skip
    with pytest.raises(ValueError, match="rewind_step"):
        retraining("lr_rewind", trained=trained, rewound=rewound, mask=mask, config=config,
                   rewind_step=100)  # fmt: skip


# -- end to end, tiny ---------------------------------------------------------------------------


def _masked_accuracy(seed: int, mask: Mask, data, signed: bool = False) -> float:
    """Accuracy of the untrained seed's LeNet under ``mask``, by plain matrix products; with
    ``signed``, each layer's weights replaced by ±(their standard deviation) first."""
    net = lenet_300_100(seed=seed)
    w = {n: p.detach().cpu() for n, p in net.named_parameters() if n in mask}
    if signed:
        w = {n: torch.where(v > 0, 1.0, -1.0) * v.std() for n, v in w.items()}
    w = {n: v * mask[n].cpu() for n, v in w.items()}
    X, y = data.test
    h = torch.relu(X.cpu().flatten(1) @ w["fc1.weight"].T)  # biases start at zero
    h = torch.relu(h @ w["fc2.weight"].T)
    return ((h @ w["out.weight"].T).argmax(1) == y.cpu()).float().mean().item()


def test_supermask_masks_the_untrained_initialization(device):
    result = supermask(density=[0.5, 0.1], seeds=3, steps=8, device=device, progress=False)
    table = result.table
    assert list(table.columns) == ["seed", "setting", "density", "mask_density", "test_acc",
                                   "test_loss", "val_acc"]  # fmt: skip
    settings = {"trained", "unmasked", "supermask", "random_mask", "signed_supermask"}
    assert set(table["setting"]) == settings and len(table) == 3 * (2 + 3 * 2)
    assert {v.outcome for v in result.verdicts} <= OUTCOMES and len(result.verdicts) == 2
    data = result.extras["recipe"].data.load(device)
    for (seed, d), mask in result.extras["masks"].items():
        # The initial weights are those of the seed, built independently, and never trained.
        fresh = lenet_300_100(seed=seed).state_dict()
        assert all(
            torch.equal(v.cpu(), fresh[n]) for n, v in result.extras["initial"][seed].items()
        )
        row = table[(table["seed"] == seed) & (table["density"] == d)]
        got = row.set_index("setting")["test_acc"]
        assert got["supermask"] == pytest.approx(_masked_accuracy(seed, mask, data), abs=1e-6)
        signed = _masked_accuracy(seed, mask, data, signed=True)
        assert got["signed_supermask"] == pytest.approx(signed, abs=1e-6)
        random_mask = result.extras["random_masks"][(seed, d)]
        assert got["random_mask"] == pytest.approx(
            _masked_accuracy(seed, random_mask, data), abs=1e-6
        )
        # Per-layer counts: the supermask hits each layer's target; the random mask copies them.
        rec = result.extras["recipe"]
        for name, target in layer_densities(rec, lenet_300_100(), d).items():
            n = mask[name].numel()
            assert int(mask[name].sum()) == math.floor(target * n + 0.5)
            assert int(random_mask[name].sum()) == int(mask[name].sum())
        # The kept weights are the largest final magnitudes among those that kept their sign.
        init, final = result.extras["initial"][seed], result.extras["trained"][seed]
        for name in NAMES:
            same = init[name].sign() == final[name].sign()
            assert int(same.sum()) >= int(mask[name].sum())  # enough of them at these densities
            score = final[name].abs() * same
            assert score[mask[name]].min() >= score[~mask[name]].max()
    fig = result.plot()
    assert fig.axes[0].get_ylabel() == "Test accuracy (%)"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["50", "10"]


def test_pruning_at_init_masks_densities_and_shuffles(device):
    result = pruning_at_init(density=0.05, seeds=3, steps=6, device=device, progress=False)
    table = result.table
    assert list(table.columns) == ["seed", "method", "shuffled", "density", "mask_density",
                                   "test_acc", "val_acc", "train_loss", "early_stop_step",
                                   "early_stop_test_acc", "diverged"]  # fmt: skip
    # Per seed: the dense run, four methods, and the shuffles of all but random.
    assert len(table) == 3 * (1 + 4 + 3)
    assert [v.claim.name for v in result.verdicts] == [c.name for c in PAI_CLAIMS]
    assert {v.outcome for v in result.verdicts} <= OUTCOMES
    masks = result.extras["masks"]
    total = sum(p.numel() for n, p in lenet_300_100().named_parameters() if n in NAMES)
    for (seed, method, shuffled, d), mask in masks.items():
        counts = {n: int(mask[n].sum()) for n in NAMES}
        if method == "random":  # uniform: every layer loses round(95 %) of its weights
            for n in NAMES:
                size = mask[n].numel()
                assert counts[n] == size - math.floor(0.95 * size + 0.5)
        else:  # the global methods keep floor(5 % of all prunable weights + 0.5)
            assert sum(counts.values()) == math.floor(0.05 * total + 0.5)
        # Magnitude masks keep the largest |w| of all layers: at init, or after training.
        source = {"magnitude_init": lenet_300_100(seed=seed).state_dict(),
                  "magnitude_trained": result.extras["trained"][seed]}.get(method)  # fmt: skip
        if source is not None and not shuffled:
            kept = torch.cat([source[n].abs().cpu()[mask[n].cpu()] for n in NAMES])
            pruned = torch.cat([source[n].abs().cpu()[~mask[n].cpu()] for n in NAMES])
            assert kept.min() >= pruned.max()
        if shuffled:
            original = masks[(seed, method, False, d)]
            assert counts == {n: int(original[n].sum()) for n in NAMES}
            assert mask != original
    assert not any(m == "random" and s for _, m, s, _ in masks)
    ticks = [t.get_text() for t in result.plot().axes[0].get_xticklabels()]
    assert ticks == ["snip", "magnitude_init", "random", "magnitude_trained"]


def test_pruning_at_init_leaves_out_claims_about_methods_not_run(device):
    result = pruning_at_init(density=0.05, seeds=3, steps=2,
                             methods=("magnitude_trained", "random"), device=device,
                             progress=False)  # fmt: skip
    assert [v.claim.name for v in result.verdicts] == ["shuffling hurts after-training mask"]
    assert set(result.table["method"]) == {"dense", "magnitude_trained", "random"}
    with pytest.raises(ValueError, match="methods"):
        pruning_at_init(methods=("grasp",), seeds=3, steps=2, device=device, progress=False)


def test_rewinding_starts_each_method_where_it_should(device):
    result = rewinding_vs_finetuning(density=0.1, seeds=3, steps=10, rewind_step=3,
                                     device=device, progress=False)  # fmt: skip
    table = result.table
    assert list(table.columns) == ["seed", "method", "density", "mask_density", "start_lr",
                                   "test_acc", "val_acc"]  # fmt: skip
    assert (
        table.groupby("seed")["method"].apply(list).tolist()
        == [["dense", "pruned", "finetune", "weight_rewind", "lr_rewind"]] * 3
    )
    assert len(result.verdicts) == len(result.claims) and result.extras["rewind_step"] == 3
    rec = result.extras["recipe"]
    assert rec.train.milestones == (5, 7) and rec.train.momentum == 0.9

    seed = 1
    mask = result.extras["masks"][(seed, 0.1)]
    # Oracle for the rewind point: the same dense run by the single-model trainer.
    alone = train(lenet_300_100(init="kaiming_normal", seed=seed), rec.data.load(device),
                  rec.train, data_seed=seed, checkpoint_steps=[3], progress=False)  # fmt: skip
    trained = alone.model.state_dict()
    expected = {"finetune": trained, "lr_rewind": trained, "weight_rewind": alone.checkpoints[3]}
    for method, source in expected.items():
        run = result.extras["runs"][(seed, method, 0.1)]
        start = run.checkpoints[3]
        for name, value in start.items():
            want = source[name] * mask[name] if name in mask else source[name]
            torch.testing.assert_close(value, want, rtol=1e-4, atol=1e-5)
        lrs = [run.config.lr_at(s) for s in range(3, 10)]
        if method == "finetune":
            assert lrs == pytest.approx([0.01 * 0.01] * 7)  # the final rate, throughout
        else:
            assert lrs == pytest.approx([0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4, 1e-4])
    start_lr = table[table["seed"] == seed].set_index("method")["start_lr"]
    assert start_lr["finetune"] == pytest.approx(1e-4)
    assert start_lr["lr_rewind"] == start_lr["weight_rewind"] == pytest.approx(0.01)
    ticks = [t.get_text() for t in result.plot().axes[0].get_xticklabels()]
    assert ticks == ["pruned", "finetune", "weight_rewind", "lr_rewind"]


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="density"):
        supermask(density=[0.5, 0.0], seeds=3, steps=2, progress=False)
    with pytest.raises(ValueError, match="seeds"):
        supermask(seeds=[1, 1], steps=2, progress=False)
    with pytest.raises(ValueError, match="rewind_step"):
        rewinding_vs_finetuning(seeds=3, steps=10, rewind_step=10, progress=False)
