"""ticketlab.training: determinism, exact masks, resumption, schedules, divergence, bad input."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import OrderedDict

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ticketlab
import ticketlab.training as train_module
from ticketlab.data import Dataset, Split
from ticketlab.models import init_
from ticketlab.optim import FusedSGD
from ticketlab.training import TrainConfig, TrainResult, batch_indices, early_stop_step, train


def blobs(n_train=96, n_eval=32, features=8, classes=3, seed=0, device="cpu") -> Dataset:
    """A small learnable task: the label is the argmax of a fixed random linear map of X."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(features, classes, generator=gen)

    def split(n):
        X = torch.randn(n, features, generator=gen)
        return Split(X.to(device), (X @ W).argmax(1).to(device))

    return Dataset("blobs", split(n_train), split(n_eval), split(n_eval), classes)


def mlp(seed=0, features=8, hidden=16, classes=3) -> nn.Sequential:
    layers = OrderedDict(
        fc1=nn.Linear(features, hidden), relu=nn.ReLU(), out=nn.Linear(hidden, classes)
    )
    return init_(nn.Sequential(layers), seed=seed)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


SGD = TrainConfig(steps=40, batch_size=16, optimizer="sgd", lr=0.1, eval_every=10)


def test_loss_decreases_on_a_learnable_task(device):
    data = blobs(device=device)
    result = train(mlp(), data, steps=150, batch_size=16, lr=0.01, eval_every=50, progress=False)
    first, last = result.history.iloc[0], result.history.iloc[-1]
    assert last["val_loss"] < 0.5 * first["val_loss"]
    assert result.history["train_loss"].iloc[1] > result.train_loss
    assert result.val_acc >= 0.8
    assert result.model.fc1.weight.device.type == device.type


def test_history_layout_and_eval_steps():
    result = train(mlp(), blobs(), SGD.replace(steps=25), progress=False)
    h = result.history
    assert list(h.columns) == ["step", "train_loss", "val_loss", "val_acc", "test_acc"]
    assert h["step"].tolist() == [0, 10, 20, 25]  # every eval_every steps, and the last step
    assert math.isnan(h["train_loss"].iloc[0]) and h["train_loss"].iloc[1:].notna().all()
    assert result.test_acc == h["test_acc"].iloc[-1]
    assert ((h[["val_acc", "test_acc"]] >= 0) & (h[["val_acc", "test_acc"]] <= 1)).all().all()


def test_history_matches_an_independent_evaluation():
    data = blobs()
    result = train(mlp(), data, SGD, progress=False)
    model = result.model
    with torch.no_grad():
        logits = model(data.val.X)
    val_loss = F.cross_entropy(logits, data.val.y).item()
    val_acc = (logits.argmax(1) == data.val.y).float().mean().item()
    assert result.history["val_loss"].iloc[-1] == pytest.approx(val_loss, rel=1e-5)
    assert result.val_acc == pytest.approx(val_acc)
    assert ticketlab.evaluate(model, data.val) == pytest.approx((val_loss, val_acc), rel=1e-5)


def test_train_loss_is_the_mean_of_the_step_losses():
    # Oracle: a hand-written SGD loop over the same batches.
    data = blobs()
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for idx in batch_indices(96, 16, 0, 0, 10, torch.device("cpu")):
        loss = F.cross_entropy(model(data.train.X[idx]), data.train.y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    result = train(mlp(), data, SGD.replace(steps=10), progress=False)
    assert result.train_loss == pytest.approx(sum(losses) / 10, rel=1e-5)
    for name, p in model.state_dict().items():
        torch.testing.assert_close(result.model.state_dict()[name], p)


def test_two_runs_with_the_same_seeds_are_bit_identical():
    data = blobs()
    cfg = TrainConfig(steps=30, batch_size=16, lr=0.01, eval_every=10)
    a = train(mlp(seed=1), data, cfg, data_seed=4, progress=False)
    b = train(mlp(seed=1), data, cfg, data_seed=4, progress=False)
    assert_same_weights(weights(a.model), weights(b.model))
    pd.testing.assert_frame_equal(a.history, b.history)


def test_a_different_data_seed_changes_the_result():
    data = blobs()
    a = train(mlp(seed=1), data, SGD, data_seed=0, progress=False)
    b = train(mlp(seed=1), data, SGD, data_seed=1, progress=False)
    assert not torch.equal(a.model.fc1.weight, b.model.fc1.weight)
    assert a.train_loss != b.train_loss


def test_checkpoints_are_clones_taken_before_each_steps_update():
    data = blobs()
    start = weights(mlp())
    result = train(mlp(), data, SGD, checkpoint_steps=[0, 7, 40], progress=False)
    assert sorted(result.checkpoints) == [0, 7, 40]
    saved = {step: {k: v.clone() for k, v in ck.items()} for step, ck in result.checkpoints.items()}
    assert_same_weights(result.checkpoints[0], start)
    assert_same_weights(result.checkpoints[40], weights(result.model))
    with torch.no_grad():  # mutating the trained model must not reach any checkpoint
        for p in result.model.parameters():
            p.fill_(7.0)
    for step, ck in result.checkpoints.items():
        assert_same_weights(ck, saved[step])
    stopped = train(mlp(), data, SGD.replace(steps=7), progress=False)
    assert_same_weights(result.checkpoints[7], weights(stopped.model))


def test_early_stop_step_on_a_crafted_history():
    history = pd.DataFrame(
        {
            "step": [0, 10, 20, 30, 40, 50],
            "val_loss": [math.nan, 0.9, 0.3, 0.5, 0.3, math.nan],  # tie at 20 and 40
            "test_acc": [0.1, 0.2, 0.7, 0.6, 0.8, 0.0],
        }
    )
    assert early_stop_step(history) == 20  # the minimum; the earliest of a tie; NaN never wins
    history.loc[0, "val_loss"] = 0.1
    assert early_stop_step(history) == 0
    all_nan = history.assign(val_loss=math.nan)
    assert early_stop_step(all_nan) == 0
    crafted = TrainResult(history=history.assign(val_loss=history["val_loss"] + 1), config=SGD)
    crafted.history.loc[0, "val_loss"] = math.nan
    assert crafted.early_stop_step == 20
    assert crafted.early_stop_test_acc == 0.7


def test_metrics_from_trains_arrays_match_the_dataframe_they_build():
    # A history with a NaN first val_loss and a tie; the DataFrame path (early_stop_step on the
    # DataFrame, pandas' own iloc) is the oracle for the arrays path.
    result = train(mlp(), blobs(), SGD.replace(steps=40, eval_every=5), progress=False)
    lazy = {name: getattr(result, name) for name in result.summary()}
    history = result.history
    assert list(history.columns) == ["step", "train_loss", "val_loss", "val_acc", "test_acc"]
    assert history["step"].dtype == "int64" and len(history) == 9
    from_frame = TrainResult(history=history.copy(), config=SGD)
    assert lazy == {name: getattr(from_frame, name) for name in from_frame.summary()}
    assert lazy["early_stop_step"] == early_stop_step(history)
    assert lazy["test_acc"] == history["test_acc"].iloc[-1]
    assert repr(from_frame).split(", wall_time")[0] == repr(result).split(", wall_time")[0]
    # Once built, the DataFrame is what the metrics read.
    history.loc[history.index[-1], "test_acc"] = 0.125
    assert result.test_acc == 0.125 and result.final["test_acc"] == 0.125


def test_a_train_result_needs_either_a_history_or_its_arrays():
    history = pd.DataFrame({"step": [0], "val_loss": [1.0], "test_acc": [0.5]})
    with pytest.raises(TypeError, match="either history"):
        TrainResult(config=SGD)
    with pytest.raises(TypeError, match="either history"):
        TrainResult(history=history, steps=[0], values=[[1.0, 1.0, 0.5, 0.5]])
    with pytest.raises(TypeError, match="either history"):
        TrainResult(steps=[0])


def test_training_and_reading_the_metrics_never_loads_pandas():
    code = (
        "import sys, torch, ticketlab as tl\n"
        "from ticketlab.data import Dataset, Split\n"
        "g = torch.Generator().manual_seed(0)\n"
        "split = lambda n: Split(torch.randn(n, 4, generator=g), torch.arange(n) % 2)\n"
        "data = Dataset('toy', split(64), split(16), split(16), 2)\n"
        "nn = torch.nn\n"
        "model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))\n"
        "r = tl.train(model, data, steps=5, eval_every=5, progress=False)\n"
        "print(r, r.summary())\n"
        "assert 'pandas' not in sys.modules, 'pandas was loaded'\n"
        "assert len(r.history) == 2 and 'pandas' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("TrainResult(steps=5, test_acc=")


def test_resuming_with_plain_sgd_matches_one_uninterrupted_run():
    # SGD without momentum or weight decay has no state, so "train 0 → k, then start a fresh
    # optimizer at step k" must equal "train 0 → T" bit for bit, provided start_step replays the
    # learning-rate schedule (warmup, milestones) and the data order (epoch permutations) from k.
    data = blobs(n_train=50)  # 3 batches of 16 per epoch: k = 20 resumes mid-epoch
    cfg = SGD.replace(steps=40, warmup_steps=8, milestones=(25,), gamma=0.5)
    whole = train(mlp(), data, cfg, data_seed=3, checkpoint_steps=[20], progress=False)
    first = train(mlp(), data, cfg.replace(steps=20), data_seed=3, progress=False)
    resumed_model = ticketlab.rewind(mlp(seed=9), weights(first.model))
    rest = train(resumed_model, data, cfg, data_seed=3, start_step=20, progress=False)
    assert_same_weights(weights(rest.model), weights(whole.model))
    assert_same_weights(whole.checkpoints[20], weights(first.model))
    tail = whole.history[whole.history["step"] > 20].reset_index(drop=True)
    pd.testing.assert_frame_equal(rest.history.iloc[1:].reset_index(drop=True), tail)
    assert rest.history["step"].iloc[0] == 20
    # Without start_step the schedule and data order would restart: a different result.
    restarted = train(
        ticketlab.rewind(mlp(), weights(first.model)),
        data,
        cfg.replace(steps=20),
        data_seed=3,
        progress=False,
    )
    assert not torch.equal(restarted.model.fc1.weight, whole.model.fc1.weight)


def test_resuming_restarts_the_optimizer_state():
    # Adam keeps moment estimates; a resumed run starts them at zero (open_lth's rewinding), so it
    # differs from an uninterrupted run even though schedule and data order are replayed.
    data = blobs()
    cfg = TrainConfig(steps=20, batch_size=16, lr=0.01, eval_every=10)
    whole = train(mlp(), data, cfg, progress=False)
    first = train(mlp(), data, cfg.replace(steps=10), progress=False)
    rest = train(first.model, data, cfg, start_step=10, progress=False)
    assert not torch.equal(rest.model.fc1.weight, whole.model.fc1.weight)


def reference_permutation(seed: int, epoch: int, n: int) -> list[int]:
    """The documented epoch order in plain Python: sort j by hash(hash(hash(seed) ^ epoch) ^ j)."""

    def mix(x: int) -> int:
        for _ in range(2):
            x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
        return (x >> 16) ^ x

    base = mix(mix(seed) ^ epoch)
    return sorted(range(n), key=lambda j: mix(base ^ j))


def test_batch_indices_epochs_are_permutations_in_the_documented_order():
    n, bs, seed = 10, 3, 5
    batches = list(batch_indices(n, bs, seed, 0, 9, torch.device("cpu")))
    assert len(batches) == 9 and all(b.shape == (bs,) for b in batches)
    for epoch in range(3):  # 10 // 3 = 3 batches per epoch; one example per epoch is dropped
        got = torch.cat(batches[3 * epoch : 3 * epoch + 3]).tolist()
        assert got == reference_permutation(seed, epoch, n)[:9]
        assert len(set(got)) == 9
    epochs = [set(torch.cat(batches[3 * e : 3 * e + 3]).tolist()) for e in range(3)]
    assert len({frozenset(e) for e in epochs}) > 1  # the dropped example changes with the epoch
    assert sorted(train_module.epoch_permutations([seed], 1, n)[0].tolist()) == list(range(n))


@pytest.mark.parametrize("keys_per_block", [1, 24, 2**16])
def test_epochs_shuffled_in_blocks_are_the_documented_permutations(monkeypatch, keys_per_block):
    """A small dataset's epochs are shuffled several at a time; each is still the documented
    permutation, across block boundaries and when resuming inside a block."""
    monkeypatch.setattr(train_module, "_KEYS_PER_BLOCK", keys_per_block)  # blocks of 1, 2, 5461
    n, seeds = 4, [7, 0, 2**40 + 3]
    for start in (0, 3, 10):
        batches = list(batch_indices(n, 4, seeds, start, 23, torch.device("cpu")))
        assert len(batches) == 23 - start
        for step, rows in enumerate(batches, start=start):
            for i, seed in enumerate(seeds):
                assert rows[i].tolist() == reference_permutation(seed & 0xFFFFFFFF, step, n)
    single = list(batch_indices(10, 3, 5, 2, 14, torch.device("cpu")))  # 3 batches per epoch
    for step, idx in enumerate(single, start=2):
        epoch, k = divmod(step, 3)
        assert idx.tolist() == reference_permutation(5, epoch, 10)[3 * k : 3 * k + 3]


def test_batch_indices_for_many_seeds_stack_the_single_seed_streams():
    many = list(batch_indices(12, 4, [3, 0, 3], 2, 8, torch.device("cpu")))
    singles = [list(batch_indices(12, 4, s, 2, 8, torch.device("cpu"))) for s in (3, 0, 3)]
    for step, rows in enumerate(many):
        assert rows.shape == (3, 4)
        for i in range(3):
            assert torch.equal(rows[i], singles[i][step])


def test_batch_indices_resume_sees_the_same_batches():
    full = list(batch_indices(20, 6, 1, 0, 17, torch.device("cpu")))
    for start in (0, 2, 3, 7, 16, 17):
        resumed = list(batch_indices(20, 6, 1, start, 17, torch.device("cpu")))
        assert len(resumed) == 17 - start
        assert all(torch.equal(a, b) for a, b in zip(resumed, full[start:], strict=True))


def test_batch_indices_are_the_same_on_every_device(device):
    batches = list(batch_indices(8, 4, 0, 0, 4, device))
    assert all(b.device.type == device.type for b in batches)
    assert sorted(torch.cat(batches[:2]).tolist()) == list(range(8))
    on_cpu = list(batch_indices(8, 4, 0, 0, 4, torch.device("cpu")))
    assert all(torch.equal(a.cpu(), b) for a, b in zip(batches, on_cpu, strict=True))


def test_batch_size_larger_than_the_data_is_an_error():
    with pytest.raises(ValueError, match=r"batch_size=20 exceeds the 10 training examples"):
        next(batch_indices(10, 20, 0, 0, 1, torch.device("cpu")))
    with pytest.raises(ValueError, match="batch_size"):
        train(mlp(), blobs(n_train=10), SGD.replace(batch_size=20), progress=False)


def test_lr_schedule_against_a_hand_computed_table():
    cfg = TrainConfig(lr=1.0, warmup_steps=4, milestones=(6, 3), gamma=0.5)
    assert cfg.milestones == (3, 6)
    table = [0.25, 0.5, 0.75, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert [cfg.lr_at(t) for t in range(8)] == table
    assert TrainConfig(lr=0.3).lr_at(1000) == 0.3


def test_training_uses_the_schedule(monkeypatch):
    used = []

    class Recording(FusedSGD):
        def step(self, lr):
            used.append(lr)
            return super().step(lr)

    monkeypatch.setattr(train_module, "make_optimizer", lambda params, cfg: Recording(params))
    cfg = SGD.replace(steps=8, lr=1.0, warmup_steps=4, milestones=(3, 6), gamma=0.5)
    train(mlp(), blobs(), cfg, progress=False)
    assert used == [0.25, 0.5, 0.75, 0.5, 0.5, 0.5, 0.25, 0.25]
    used.clear()
    train(mlp(), blobs(), cfg, start_step=5, progress=False)
    assert used == [0.5, 0.25, 0.25]


def random_mask(model: nn.Module, density: float, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        name: torch.rand(p.shape, generator=gen) < density
        for name, p in model.named_parameters()
        if name.endswith("weight")
    }


@pytest.mark.parametrize(
    "settings",
    [
        dict(optimizer="adam", lr=0.05, weight_decay=0.1),
        dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.1),
    ],
    ids=["adam+wd", "sgd+momentum+wd"],
)
def test_mask_keeps_pruned_weights_exactly_zero(device, settings):
    data = blobs(device=device)
    model = mlp()
    mask = random_mask(model, 0.5, seed=2)
    before = weights(model)
    result = train(model, data, SGD.replace(**settings), mask=mask, progress=False)
    for name, keep in mask.items():
        w = result.model.state_dict()[name]
        keep = keep.to(w.device)
        assert torch.count_nonzero(w[~keep]) == 0, name
        assert (w[keep] != before[name].to(w.device)[keep]).all(), name  # the others trained
    assert not torch.equal(result.model.fc1.bias.cpu(), before["fc1.bias"])


def test_mask_accepts_a_ticketlab_mask_and_zeroes_before_training():
    model = mlp()
    mask = ticketlab.Mask(random_mask(model, 0.3, seed=1))
    result = train(model, blobs(), SGD.replace(steps=1), mask=mask, checkpoint_steps=[0])
    for name, keep in mask.items():
        assert torch.count_nonzero(result.checkpoints[0][name][~keep]) == 0


# Without weight decay nothing moves a frozen entry; with it, train() restores them after each step.
@pytest.mark.parametrize("weight_decay", [0.0, 0.5])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_grad_mask_freezes_entries_bit_identically(device, optimizer, weight_decay):
    data = blobs(device=device)
    model = mlp().to(device)
    gen = torch.Generator().manual_seed(0)
    grad_mask = {
        "fc1.weight": torch.rand(16, 8, generator=gen) < 0.5,
        "out.bias": torch.tensor([True, False, True]),
    }
    before = weights(model)
    extra = {"momentum": 0.9} if optimizer == "sgd" else {}
    cfg = SGD.replace(optimizer=optimizer, lr=0.05, weight_decay=weight_decay, **extra)
    result = train(model, data, cfg, grad_mask=grad_mask, progress=False)
    after = weights(result.model)
    for name, trainable in grad_mask.items():
        trainable = trainable.to(device)
        assert torch.equal(after[name][~trainable], before[name][~trainable]), name
        assert (after[name][trainable] != before[name][trainable]).all(), name
    assert not torch.equal(after["fc1.bias"], before["fc1.bias"])  # unmasked params train


def test_parameters_without_requires_grad_never_change():
    model = mlp()
    model.fc1.weight.requires_grad_(False)
    before = model.fc1.weight.detach().clone()
    result = train(model, blobs(), SGD.replace(weight_decay=0.1), progress=False)
    assert torch.equal(result.model.fc1.weight, before)
    assert not torch.equal(result.model.out.weight, mlp().out.weight)


def test_divergence_is_flagged_not_raised():
    with pytest.warns(RuntimeWarning, match=r"diverged by step 10.*lr=1e\+12"):
        result = train(mlp(), blobs(), SGD.replace(lr=1e12), progress=False)
    assert result.diverged
    assert "lr=1e+12" in result.message
    assert result.history["step"].tolist() == [0, 10]  # training stopped at the detection
    assert math.isnan(result.history["val_loss"].iloc[-1])
    assert result.val_acc == 0.0 and result.test_acc == 0.0  # NaN logits answer nothing right
    assert result.early_stop_step == 0
    assert "DIVERGED" in repr(result)


def test_nan_logits_are_never_correct():
    loss_and_correct = train_module.loss_and_correct
    logits = torch.tensor([[math.nan, 0.0], [1.0, 0.0], [math.nan, math.nan]])
    _, correct = loss_and_correct(logits, torch.tensor([0, 0, 0]))
    assert correct.tolist() == [False, True, False]
    _, correct = loss_and_correct(torch.tensor([[math.nan], [-1.0]]), torch.tensor([0, 0]))
    assert correct.tolist() == [False, True]


def test_loss_and_correct_against_hand_formulas():
    gen = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 4, generator=gen), torch.tensor([0, 1, 2, 3, 0, 1])
    loss, correct = train_module.loss_and_correct(logits, y)
    by_hand = torch.logsumexp(logits, 1) - logits[torch.arange(6), y]
    torch.testing.assert_close(loss, by_hand)
    assert torch.equal(correct, logits.argmax(1) == y)
    z = torch.randn(6, 1, generator=gen)
    yb = torch.tensor([0, 1, 1, 0, 1, 0])
    loss, correct = train_module.loss_and_correct(z, yb)
    torch.testing.assert_close(loss, F.softplus(z[:, 0]) - yb * z[:, 0])
    assert torch.equal(correct, (z[:, 0] > 0) == yb.bool())


def test_binary_single_logit_model_learns_xor(device):
    data = ticketlab.xor(noise=0.1, samples_per_corner=8, device=device)
    model = ticketlab.xor_mlp(hidden=8, seed=0)
    result = train(model, data, steps=300, batch_size=8, lr=0.05, eval_every=100, progress=False)
    assert result.test_acc == 1.0
    assert result.history["val_loss"].iloc[-1] < 0.2


def test_nan_before_training_is_a_clear_error():
    model = mlp()
    with torch.no_grad():
        model.fc1.weight[0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN or infinite before training"):
        train(model, blobs(), SGD, progress=False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(optimizer="rmsprop"), "optimizer must be 'adam' or 'sgd'"),
        (dict(steps=0), "steps must be a positive int"),
        (dict(batch_size=2.5), "batch_size must be a positive int"),
        (dict(eval_every=-1), "eval_every must be a positive int"),
        (dict(lr=0.0), "lr must be positive"),
        (dict(lr=math.nan), "lr must be positive"),
        (dict(weight_decay=-0.1), ">= 0"),
        (dict(optimizer="adam", momentum=0.9), "momentum applies to SGD only"),
    ],
)
def test_invalid_configs_are_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"optimizer": "sgd", **changes})


def test_invalid_train_calls_are_clear_errors():
    data, model = blobs(), mlp()
    with pytest.raises(TypeError, match=r"unknown training setting\(s\) \['stepz'\]; valid: "):
        train(model, data, stepz=3)
    with pytest.raises(TypeError, match=r"TrainConfig or a ticketlab\.recipes\.Recipe"):
        train(model, data, {"steps": 3})
    with pytest.raises(ValueError, match=r"start_step=50 must lie in \[0, steps=40\]"):
        train(model, data, SGD, start_step=50)
    with pytest.raises(ValueError, match=r"checkpoint_steps \[41\] lie outside"):
        train(model, data, SGD, checkpoint_steps=[41])
    with pytest.raises(ValueError, match=r"entry for 'fc9\.weight' but the model has no such"):
        train(model, data, SGD, mask={"fc9.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(
        ValueError, match=r"grad_mask: .* has shape \(2,\) but the parameter has shape \(16, 8\)"
    ):
        train(model, data, SGD, grad_mask={"fc1.weight": torch.ones(2, dtype=torch.bool)})
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(model, data, SGD)


def test_a_recipe_is_accepted_as_config():
    recipe = ticketlab.recipes.get("lenet_mnist_paper", budget="quick")
    cfg = train_module._as_config(recipe, {"steps": 3})
    assert cfg == recipe.train.replace(steps=3)


def test_train_result_repr_is_readable():
    result = train(mlp(), blobs(), SGD, progress=False)
    text = repr(result)
    assert text.startswith("TrainResult(steps=40, test_acc=")
    assert f"test_acc={result.test_acc:.2%}" in text
    assert f"early_stop_step={result.early_stop_step}" in text
    assert text.endswith("ok)")
    assert "checkpoints" not in text and "Sequential" not in text
    summary = result.summary()
    assert summary["test_acc"] == result.test_acc
    assert set(summary) == {
        "test_acc",
        "val_acc",
        "train_loss",
        "early_stop_step",
        "early_stop_test_acc",
        "diverged",
    }
