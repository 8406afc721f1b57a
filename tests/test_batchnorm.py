"""ticketlab.batchnorm and the BatchNorm-only experiment: freezing, γ init, the random control."""

from __future__ import annotations

from collections import OrderedDict

import pandas as pd
import pytest
import torch
from torch import nn

from ticketlab.batchnorm import (
    DISABLED_THRESHOLD,
    batchnorm_parameter_count,
    disabled_fraction,
    freeze_all_but_batchnorm,
    freeze_all_but_subset,
    gamma_frame,
    init_gamma,
    random_parameter_mask,
    train_random_subset,
    trainable_count,
)
from ticketlab.data import Dataset, Split
from ticketlab.experiments.batchnorm import CLAIMS, SETTINGS, batchnorm_only, downsample
from ticketlab.models import init_, lenet_300_100, resnet
from ticketlab.training import train
from ticketlab.verdict import Verdict

# resnet(8, width) by hand: the stem BN, two BNs in stage 1, and two BNs plus the shortcut's BN
# in stages 2 and 3. Channels: w + 2w + 3·2w + 3·4w = 21w, so 42w γ/β elements.
RESNET8_BN = [
    "bn",
    "block1_0.bn1",
    "block1_0.bn2",
    "block2_0.bn1",
    "block2_0.bn2",
    "block2_0.shortcut.bn",
    "block3_0.bn1",
    "block3_0.bn2",
    "block3_0.shortcut.bn",
]
MLP_BN = ["bn1", "bn2"]


def bn_mlp(seed: int = 0) -> nn.Sequential:
    """8 → 16 → 16 → 3 with BatchNorm1d after each hidden Linear."""
    layers = OrderedDict(
        fc1=nn.Linear(8, 16),
        bn1=nn.BatchNorm1d(16),
        relu1=nn.ReLU(),
        fc2=nn.Linear(16, 16),
        bn2=nn.BatchNorm1d(16),
        relu2=nn.ReLU(),
        out=nn.Linear(16, 3),
    )
    return init_(nn.Sequential(layers), seed=seed)


def bn3d_net() -> nn.Sequential:
    layers = OrderedDict(
        conv=nn.Conv3d(1, 2, 3, padding=1),
        norm=nn.BatchNorm3d(2),
        flatten=nn.Flatten(),
        out=nn.Linear(2 * 4 * 4 * 4, 3),
    )
    return init_(nn.Sequential(layers))


def params_of(layers: list[str]) -> set[str]:
    return {f"{layer}.{attr}" for layer in layers for attr in ("weight", "bias")}


def blobs(shape=(8,), n=96, classes=3, seed=0, device="cpu") -> Dataset:
    """A small learnable task: the label is the argmax of a fixed random linear map of X."""
    gen = torch.Generator().manual_seed(seed)
    features = torch.Size(shape).numel()
    W = torch.randn(features, classes, generator=gen)

    def split(size):
        X = torch.randn(size, *shape, generator=gen)
        return Split(X.to(device), (X.flatten(1) @ W).argmax(1).to(device))

    return Dataset("blobs", split(n), split(32), split(32), classes)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def requiring_grad(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


# ---------------------------------------------------------------------------------- freezing


def test_freeze_leaves_exactly_batchnorm_trainable_in_resnet():
    model = freeze_all_but_batchnorm(resnet(8, width=4))
    assert requiring_grad(model) == params_of(RESNET8_BN)


@pytest.mark.parametrize(
    ("build", "layers"), [(bn_mlp, MLP_BN), (bn3d_net, ["norm"])], ids=["BatchNorm1d", "3d"]
)
def test_freeze_covers_every_batchnorm_type(build, layers):
    assert requiring_grad(freeze_all_but_batchnorm(build())) == params_of(layers)


def test_freeze_with_train_output_also_trains_the_output_layer():
    model = freeze_all_but_batchnorm(bn_mlp(), train_output=True)
    assert requiring_grad(model) == params_of([*MLP_BN, "out"])
    # and freezing again without it takes the output layer back out
    assert requiring_grad(freeze_all_but_batchnorm(model)) == params_of(MLP_BN)


def test_freeze_refuses_a_model_without_batchnorm():
    with pytest.raises(ValueError, match="no BatchNorm"):
        freeze_all_but_batchnorm(lenet_300_100())


@pytest.mark.parametrize(
    ("build", "shape", "layers"),
    [(bn_mlp, (8,), MLP_BN), (lambda: resnet(8, width=4), (1, 8, 8), RESNET8_BN)],
    ids=["mlp", "resnet"],
)
def test_training_after_freezing_moves_only_batchnorm(device, build, shape, layers):
    model = freeze_all_but_batchnorm(build())
    init_gamma(model, "uniform", seed=1)
    before = snapshot(model)
    train(model, blobs(shape, device=device), steps=5, batch_size=32, lr=1e-2, progress=False)
    after = snapshot(model)
    bn = params_of(layers)
    for name in before:
        if name in bn:
            assert not torch.equal(before[name].to(device), after[name]), name
        else:
            assert torch.equal(before[name].to(device), after[name]), name


# ---------------------------------------------------------------------------------- γ init


def test_uniform_gamma_init_statistics_and_it_really_changes_gamma():
    model = nn.Sequential(nn.Linear(4, 20_000), nn.BatchNorm1d(20_000))
    model[1].bias.data.fill_(3.0)
    assert torch.equal(model[1].weight, torch.ones(20_000))  # PyTorch's default γ = 1
    gamma = init_gamma(model, "uniform", seed=0)[1].weight.detach()
    assert gamma.min() >= 0 and gamma.max() <= 1
    assert abs(gamma.mean().item() - 0.5) < 0.01  # std of the mean: 0.29 / √20000 = 0.002
    assert abs(gamma.std().item() - 12**-0.5) < 0.01
    assert (gamma != 1).all()
    assert torch.equal(model[1].bias.detach(), torch.zeros(20_000))


def test_gamma_init_is_seeded_and_reaches_every_batchnorm_type():
    a, b, c = (init_gamma(bn3d_net(), "uniform", seed=s) for s in (0, 0, 1))
    assert torch.equal(a.norm.weight, b.norm.weight)
    assert not torch.equal(a.norm.weight, c.norm.weight)
    net = init_gamma(resnet(8, width=4), "uniform", seed=0)
    for layer in RESNET8_BN:
        assert (net.get_submodule(layer).weight != 1).all(), layer


def test_gamma_init_is_the_same_on_every_device(device):
    cpu = init_gamma(bn_mlp(), seed=3)
    there = init_gamma(bn_mlp().to(device), seed=3)
    assert there.bn2.weight.device.type == torch.device(device).type
    assert torch.equal(cpu.bn2.weight, there.bn2.weight.cpu())


def test_ones_gamma_init():
    model = init_gamma(bn_mlp(), "uniform", seed=0)
    init_gamma(model, "ones")
    for layer in MLP_BN:
        assert torch.equal(model.get_submodule(layer).weight, torch.ones(16))
        assert torch.equal(model.get_submodule(layer).bias, torch.zeros(16))


def test_gamma_init_refuses_bad_input():
    with pytest.raises(ValueError, match="no BatchNorm"):
        init_gamma(lenet_300_100())
    with pytest.raises(ValueError, match="uniform"):
        init_gamma(bn_mlp(), "normal")


# ---------------------------------------------------------------------------------- counts


def test_counts_by_hand():
    model = bn_mlp()
    # fc1 8·16+16, bn1 2·16, fc2 16·16+16, bn2 2·16, out 16·3+3
    assert trainable_count(model) == 144 + 32 + 272 + 32 + 51
    assert batchnorm_parameter_count(model) == 64
    assert trainable_count(freeze_all_but_batchnorm(model)) == 64
    assert trainable_count(freeze_all_but_batchnorm(model, train_output=True)) == 64 + 51
    assert batchnorm_parameter_count(resnet(8, width=4)) == 42 * 4
    assert batchnorm_parameter_count(lenet_300_100()) == 0


def test_trainable_count_honours_a_grad_mask():
    model = freeze_all_but_batchnorm(bn_mlp())
    partial = torch.zeros(16, dtype=torch.bool)
    partial[:5] = True
    # bn1.weight counts 5 of 16; fc1 is named but frozen, so it counts nothing
    mask = {"bn1.weight": partial, "fc1.weight": torch.ones(16, 8, dtype=torch.bool)}
    assert trainable_count(model, grad_mask=mask) == 5 + 16 + 16 + 16


# ---------------------------------------------------------------------------------- random control


def test_random_mask_picks_exactly_count_elements_outside_batchnorm_and_output():
    model = bn_mlp()
    mask = random_parameter_mask(model, 37, seed=0)
    assert list(mask) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert sum(int(m.sum()) for m in mask.values()) == 37
    params = dict(model.named_parameters())
    for name, m in mask.items():
        assert m.dtype == torch.bool and m.shape == params[name].shape
    with_output = random_parameter_mask(model, 37, seed=0, include_output=True)
    assert {"out.weight", "out.bias"} < set(with_output)
    with_bn = random_parameter_mask(model, 37, seed=0, exclude_batchnorm=False)
    assert params_of(MLP_BN) < set(with_bn)


def test_a_model_without_linear_layer_has_no_output_layer():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    mask = random_parameter_mask(model, 19)  # conv: 2·9 weights + 2 biases = 20 eligible
    assert list(mask) == ["0.weight", "0.bias"]
    assert sum(int(m.sum()) for m in mask.values()) == 19
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        freeze_all_but_batchnorm(model, train_output=True)


def test_random_mask_is_seeded():
    a, b, c = (random_parameter_mask(bn_mlp(), 50, seed=s) for s in (4, 4, 5))
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def test_random_mask_is_uniform_over_eligible_elements():
    # 4 + 4 eligible elements (fc weight and bias; no BN, output excluded), 3 chosen each time.
    model = nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    runs = 3000
    hits = torch.zeros(8)
    for seed in range(runs):
        mask = random_parameter_mask(model, 3, seed=seed)
        hits += torch.cat([m.flatten().float() for m in mask.values()])
    # each element is chosen with probability 3/8; the binomial std of a frequency is 0.009
    assert torch.allclose(hits / runs, torch.full((8,), 3 / 8), atol=0.04)


def test_random_mask_refuses_impossible_counts():
    model = bn_mlp()  # 144 + 272 = 416 eligible elements
    random_parameter_mask(model, 416)
    for bad in (417, -1, 2.5):
        with pytest.raises(ValueError, match=r"\[0, 416\]"):
            random_parameter_mask(model, bad)


def test_freeze_all_but_subset_refuses_unknown_names():
    with pytest.raises(ValueError, match="not parameters"):
        freeze_all_but_subset(bn_mlp(), {"fc9.weight": torch.ones(1, dtype=torch.bool)})


@pytest.mark.parametrize("train_output", [False, True])
def test_random_control_trains_exactly_the_requested_count(device, train_output):
    model = resnet(8, width=4)
    init_gamma(model, seed=0)
    before = snapshot(model)
    count = batchnorm_parameter_count(model)
    result, chosen = train_random_subset(
        model, blobs((1, 8, 8), device=device), count=count, seed=7,
        train_output=train_output, steps=4, batch_size=32, lr=1e-2, progress=False,
    )  # fmt: skip
    assert not result.diverged
    after = snapshot(model)
    changed = {name: before[name].to(device) != after[name] for name in before}
    output = {"out.weight", "out.bias"}
    for name, moved in changed.items():
        if name in chosen:  # Adam moves every element with a gradient; unchosen never move
            assert torch.equal(moved, chosen[name]), name
        elif name in output and train_output:
            assert moved.all(), name
        else:  # BatchNorm, and the output layer unless it trains
            assert not moved.any(), name
    assert sum(int(changed[name].sum()) for name in chosen) == count


# ---------------------------------------------------------------------------------- reading γ


def hand_set_gammas() -> nn.Sequential:
    model = bn_mlp()
    with torch.no_grad():
        model.bn1.weight.copy_(torch.linspace(-0.8, 0.7, 16))  # steps of 0.1: -0.8 … 0.7
        model.bn2.weight.fill_(1.0)
        model.bn2.weight[:3] = torch.tensor([0.005, -0.009, 0.02])
    return model


def test_disabled_fraction_on_hand_set_gammas():
    model = hand_set_gammas()
    # |γ| < 0.01: bn1 has only 0.0 (and float noise around it), bn2 has 0.005 and -0.009
    assert disabled_fraction(model, threshold=0.01) == pytest.approx(3 / 32)
    assert DISABLED_THRESHOLD == 0.01
    assert disabled_fraction(model) == pytest.approx(3 / 32)
    # |γ| < 0.15: bn1 has -0.1, 0.0, 0.1 and bn2 has 0.005, -0.009, 0.02
    assert disabled_fraction(model, threshold=0.15) == pytest.approx(6 / 32)
    with pytest.raises(ValueError, match="positive"):
        disabled_fraction(model, threshold=0)
    with pytest.raises(ValueError, match="no BatchNorm"):
        disabled_fraction(lenet_300_100())


def test_gamma_frame_lists_every_feature():
    model = hand_set_gammas()
    frame = gamma_frame(model)
    assert list(frame.columns) == ["layer", "layer_index", "channel", "gamma", "beta"]
    assert len(frame) == 32
    assert frame["layer"].tolist() == ["bn1"] * 16 + ["bn2"] * 16
    assert frame["layer_index"].tolist() == [0] * 16 + [1] * 16
    assert frame["channel"].tolist() == list(range(16)) * 2
    expected = torch.cat([model.bn1.weight, model.bn2.weight]).detach().numpy()
    assert (frame["gamma"].to_numpy() == expected).all()
    assert (frame["beta"] == 0).all()
    assert gamma_frame(resnet(8, width=4))["layer"].unique().tolist() == RESNET8_BN


# ---------------------------------------------------------------------------------- experiment


def test_downsample_averages_blocks():
    X = torch.arange(16.0).view(1, 1, 4, 4)
    split = Split(X, torch.zeros(1, dtype=torch.int64))
    pooled = downsample(Dataset("toy", split, split, split, 2), 2)
    expected = torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]])  # means of the 2×2 blocks
    assert torch.equal(pooled.train.X, expected)
    with pytest.raises(ValueError, match="positive int"):
        downsample(pooled, 0)


@pytest.mark.slow
def test_tiny_experiment_table_and_verdicts(device):
    result = batchnorm_only(
        depths=(14, 8), seeds=2, width=2, steps=3, pool=4, device=device, progress=False
    )
    table = result.table
    assert list(table.columns) == [
        "depth", "depth_role", "seed", "setting", "trainable", "bn_params", "test_acc",
        "val_acc", "train_loss", "disabled_fraction", "chance", "diverged",
    ]  # fmt: skip
    assert len(table) == 2 * 2 * 3
    per_run = table.groupby(["depth", "seed"])["setting"].apply(tuple)
    assert (per_run.map(lambda settings: settings == SETTINGS)).all()
    roles = dict(zip(table["depth"], table["depth_role"], strict=True))
    assert roles == {8: "shallowest", 14: "deepest"}
    # by hand for width 2: 42w = 84 γ/β elements at depth 8; depth 14 adds one block per stage
    # (2w + 4w + 8w channels, 2 BNs each): 84 + 56 = 140
    bn_only = table[table["setting"] == "bn_only"].set_index(["depth", "seed"])
    random = table[table["setting"] == "random_params"].set_index(["depth", "seed"])
    full = table[table["setting"] == "full"].set_index(["depth", "seed"])
    assert bn_only["trainable"].to_dict() == {(8, 0): 84, (8, 1): 84, (14, 0): 140, (14, 1): 140}
    assert (random["trainable"] == bn_only["trainable"]).all()
    for (depth, _), n in full["trainable"].items():
        assert n == sum(p.numel() for p in resnet(depth, width=2).parameters())
    models = result.extras["models"]
    assert len(models) == 12
    for (setting, depth, seed), model in models.items():
        gammas = torch.cat([m.weight.detach().cpu() for m in model.modules()
                            if isinstance(m, nn.BatchNorm2d)])  # fmt: skip
        row = table.set_index(["setting", "depth", "seed"]).loc[(setting, depth, seed)]
        assert row["disabled_fraction"] == pytest.approx((gammas.abs() < 0.01).float().mean())
        if setting == "random_params":  # γ stays at its U[0, 1] draw
            assert gammas.min() >= 0 and gammas.max() <= 1
    assert table["test_acc"].between(0, 1).all()
    assert [v.claim for v in result.verdicts] == list(CLAIMS)
    assert all(isinstance(v, Verdict) and v.n == 2 for v in result.verdicts)
    gammas = result.extras["gammas"]
    assert {"gamma", "depth", "seed"} <= set(gammas.columns)
    assert len(gammas) == (84 + 140) // 2 * 2  # γ per channel, two seeds
    ax = result.plot().axes[0]
    assert "%" in ax.get_ylabel() and "depth" in ax.get_xlabel()


def test_experiment_drops_the_depth_claim_for_one_depth_and_needs_two_seeds():
    result = batchnorm_only(depths=(8,), seeds=[3, 5], width=2, steps=2, pool=4, progress=False)
    assert [v.claim.name for v in result.verdicts] == [c.name for c in CLAIMS[:2]]
    assert isinstance(result.table, pd.DataFrame) and set(result.table["seed"]) == {3, 5}
    with pytest.raises(ValueError, match="at least 2"):
        batchnorm_only(depths=(8,), seeds=1, steps=2, progress=False)
