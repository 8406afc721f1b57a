"""ticketlab.population: a batched population equals its members trained one by one."""

from __future__ import annotations

import math
from collections import OrderedDict

import pandas as pd
import pytest
import torch
from torch import nn

import ticketlab
from ticketlab.data import Dataset, Split
from ticketlab.models import init_
from ticketlab.population import supports, train_population
from ticketlab.train import TrainConfig, train


def tiny_images(n_train=120, n_eval=40, seed=0, device="cpu") -> Dataset:
    """MNIST-like: (N, 1, 6, 6) images, 10 classes given by a fixed random linear map."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(36, 10, generator=gen)

    def split(n):
        X = torch.randn(n, 1, 6, 6, generator=gen)
        return Split(X.to(device), (X.flatten(1) @ W).argmax(1).to(device))

    return Dataset("tiny-images", split(n_train), split(n_eval), split(n_eval), 10)


def image_mlp(seed: int) -> nn.Sequential:
    layers = OrderedDict(
        flatten=nn.Flatten(),
        fc1=nn.Linear(36, 12),
        relu1=nn.ReLU(),
        fc2=nn.Linear(12, 12),
        relu2=nn.Tanh(),
        out=nn.Linear(12, 10),
    )
    return init_(nn.Sequential(layers), seed=seed)


def random_mask(model: nn.Module, density: float, seed: int) -> ticketlab.Mask:
    gen = torch.Generator().manual_seed(seed)
    return ticketlab.Mask(
        {
            name: torch.rand(p.shape, generator=gen) < density
            for name, p in model.named_parameters()
            if name.endswith("weight")
        }
    )


def assert_member_matches(member, alone, atol=1e-5):
    assert member.history["step"].tolist() == alone.history["step"].tolist()
    pd.testing.assert_frame_equal(member.history, alone.history, atol=atol, rtol=1e-4)
    ours, theirs = member.model.state_dict(), alone.model.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=atol, rtol=1e-4)


XOR = TrainConfig(steps=60, batch_size=8, lr=0.05, eval_every=20)


def xor_net(seed: int) -> nn.Sequential:
    return ticketlab.xor_mlp(hidden=4, activation="tanh", seed=seed)


def test_xor_population_matches_sequential_training(device):
    data = ticketlab.xor(noise=0.2, samples_per_corner=4, device=device)
    # tanh, not ReLU: a ReLU whose input sits within rounding error of 0 may switch on in one
    # computation and not in the other, and training amplifies that into visible differences.
    seeds = list(range(16))
    masks = [None if s % 4 == 0 else random_mask(xor_net(0), 0.7, s) for s in seeds]
    data_seeds = [100 + s for s in seeds]
    members = [xor_net(s) for s in seeds]
    results = train_population(
        members, data, XOR, masks=masks, data_seeds=data_seeds, progress=False
    )
    assert len(results) == 16
    for s, member in zip(seeds, results, strict=True):
        assert member.model is members[s]  # updated in place
        alone = train(
            xor_net(s),
            data,
            XOR,
            mask=masks[s],
            data_seed=data_seeds[s],
            progress=False,
        )
        assert_member_matches(member, alone)
        assert not member.diverged


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_image_mlp_population_matches_sequential_training(device, optimizer):
    data = tiny_images(device=device)
    extra = {"momentum": 0.9, "lr": 0.05} if optimizer == "sgd" else {"lr": 0.01}
    cfg = TrainConfig(
        steps=24, batch_size=16, eval_every=8, optimizer=optimizer, weight_decay=1e-3, **extra
    )
    masks = [random_mask(image_mlp(0), 0.5, seed) for seed in range(3)]
    results = train_population(
        [image_mlp(seed) for seed in range(3)],
        data,
        cfg,
        masks=masks,
        checkpoint_steps=[8],
        progress=False,
    )
    for seed, member in enumerate(results):
        alone = train(
            image_mlp(seed), data, cfg, mask=masks[seed], data_seed=seed, checkpoint_steps=[8],
            progress=False,
        )  # fmt: skip
        assert_member_matches(member, alone)
        for name, value in alone.checkpoints[8].items():
            torch.testing.assert_close(member.checkpoints[8][name], value, atol=1e-5, rtol=1e-4)


def test_start_step_matches_sequential_resumption():
    data = tiny_images()
    cfg = TrainConfig(steps=30, batch_size=16, optimizer="sgd", lr=0.05, eval_every=10)
    starts = [image_mlp(seed) for seed in range(2)]
    results = train_population(starts, data, cfg, data_seeds=[5, 6], start_step=20, progress=False)
    for seed, member in enumerate(results):
        alone = train(image_mlp(seed), data, cfg, data_seed=5 + seed, start_step=20, progress=False)
        assert_member_matches(member, alone)
        assert member.history["step"].tolist() == [20, 30]


def test_masks_are_enforced_per_member():
    data = tiny_images()
    masks = [random_mask(image_mlp(0), density, seed=1) for density in (0.2, 0.9)]
    results = train_population(
        [image_mlp(0), image_mlp(0)],
        data,
        TrainConfig(steps=20, batch_size=16, lr=0.05, weight_decay=0.1, eval_every=10),
        masks=masks,
        data_seeds=[0, 0],
        progress=False,
    )
    for mask, member in zip(masks, results, strict=True):
        params = dict(member.model.named_parameters())
        for name, keep in mask.items():
            assert torch.count_nonzero(params[name][~keep]) == 0, name
            assert torch.count_nonzero(params[name][keep]) == keep.sum(), name
    assert not torch.equal(results[0].model.fc1.weight, results[1].model.fc1.weight)


def test_one_diverging_member_leaves_the_others_untouched():
    data = ticketlab.xor(noise=0.2, samples_per_corner=4)
    members = [xor_net(s) for s in range(4)]
    with torch.no_grad():
        members[1].fc1.weight[0, 0] = math.nan  # NaN from the first step
        members[2].out.bias.fill_(math.inf)  # infinite loss
    with pytest.warns(RuntimeWarning) as caught:
        results = train_population(members, data, XOR, data_seeds=[0, 1, 2, 3], progress=False)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert messages[0].startswith("member 1 diverged by step 20") and "lr=0.05" in messages[0]
    assert messages[1].startswith("member 2 diverged by step 20")
    assert [r.diverged for r in results] == [False, True, True, False]
    for bad in (results[1], results[2]):
        assert bad.history["step"].tolist() == [0, 20]
        assert "diverged by step 20" in bad.message
    for s in (0, 3):
        alone = train(xor_net(s), data, XOR, data_seed=s, progress=False)
        assert_member_matches(results[s], alone)


def test_history_dtypes_match_train():
    data = ticketlab.xor()
    cfg = XOR.replace(batch_size=4, steps=10, eval_every=5)
    member = train_population([ticketlab.xor_mlp(seed=0)], data, cfg, progress=False)[0]
    alone = train(ticketlab.xor_mlp(seed=0), data, cfg, data_seed=0, progress=False)
    assert member.history.dtypes.equals(alone.history.dtypes)


def test_flatten_matches_nn_flatten_for_inputs_without_a_channel_dimension():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(30, 6, 6, generator=gen)  # (N, H, W): nn.Flatten makes (N, 36)
    y = torch.randint(0, 10, (30,), generator=gen)
    data = Dataset("hw", Split(X, y), Split(X[:10], y[:10]), Split(X[:10], y[:10]), 10)
    cfg = TrainConfig(steps=4, batch_size=1, optimizer="sgd", lr=0.05, eval_every=2)
    member = train_population([image_mlp(0)], data, cfg, progress=False)[0]
    alone = train(image_mlp(0), data, cfg, data_seed=0, progress=False)
    assert_member_matches(member, alone)


def test_supports():
    assert supports(ticketlab.xor_mlp())
    assert supports(ticketlab.lenet_300_100())
    assert not supports(ticketlab.conv4(width=2))
    assert not supports(nn.Linear(2, 1))  # not a Sequential


def test_unsupported_architecture_is_a_type_error():
    with pytest.raises(TypeError, match=r"supports nn.Sequential MLPs.*ticketlab.train"):
        train_population([ticketlab.conv4(width=2)], tiny_images(), XOR, progress=False)


def test_mismatched_architectures_raise():
    data = ticketlab.xor()
    with pytest.raises(ValueError, match="member 1 has a different architecture"):
        train_population(
            [ticketlab.xor_mlp(hidden=2), ticketlab.xor_mlp(hidden=3)], data, XOR, progress=False
        )
    with pytest.raises(ValueError, match="member 1 has a different architecture"):
        train_population(
            [ticketlab.xor_mlp(activation="relu"), ticketlab.xor_mlp(activation="tanh")],
            data,
            XOR,
            progress=False,
        )


def test_bad_arguments_are_clear_errors():
    data = ticketlab.xor()
    models = [ticketlab.xor_mlp(seed=s) for s in range(2)]
    with pytest.raises(ValueError, match="at least one model"):
        train_population([], data, XOR)
    with pytest.raises(ValueError, match="got 2 models but 1 masks and 2 data seeds"):
        train_population(models, data, XOR, masks=[None])
    with pytest.raises(ValueError, match=r"start_step=99 must lie in \[0, steps=60\]"):
        train_population(models, data, XOR, start_step=99)
    bad_mask = ticketlab.Mask({"nope.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"masks name \['nope.weight'\]"):
        train_population(models, data, XOR, masks=[bad_mask, None])
