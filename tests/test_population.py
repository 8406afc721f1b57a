"""ticketlab.population: a batched population equals its members trained one by one."""

from __future__ import annotations

from collections import OrderedDict

import pandas as pd
import pytest
import torch
from torch import nn

import ticketlab
from ticketlab.data import Dataset, Split
from ticketlab.models import init_
from ticketlab.population import supports, train_population
from ticketlab.training import TrainConfig, train


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


def test_supports_every_module_without_dropout():
    assert supports(ticketlab.xor_mlp())
    assert supports(ticketlab.lenet_300_100())
    assert supports(ticketlab.conv4(width=2))
    assert supports(ticketlab.resnet(8, 4))
    assert not supports(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)))


def test_a_model_with_dropout_is_a_type_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 10), nn.Dropout(0.5))
    with pytest.raises(
        TypeError, match=r"cannot train Sequential: it has dropout.*ticketlab.train"
    ):
        train_population([model], tiny_images(), XOR, progress=False)


def tiny_digits(n_train=96, n_eval=32, seed=0, device="cpu") -> Dataset:
    """(N, 1, 28, 28) images with 10 classes given by a fixed random linear map: conv4's shape."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(28 * 28, 10, generator=gen)

    def split(n):
        X = torch.randn(n, 1, 28, 28, generator=gen)
        return Split(X.to(device), (X.flatten(1) @ W).argmax(1).to(device))

    return Dataset("tiny-digits", split(n_train), split(n_eval), split(n_eval), 10)


def assert_states_match(member, alone, atol=1e-5):
    """Histories, and every tensor of the state_dict (BatchNorm's running statistics included)."""
    pd.testing.assert_frame_equal(member.history, alone.history, atol=atol, rtol=1e-4)
    ours, theirs = member.model.state_dict(), alone.model.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], atol=atol, rtol=1e-4, msg=name)


def test_conv_population_matches_sequential_training():
    data = tiny_digits()
    # SGD: Adam divides by the root of tiny second moments, which magnifies summation-order noise
    cfg = TrainConfig(
        steps=12, batch_size=8, optimizer="sgd", lr=0.05, momentum=0.9, eval_every=6,
        weight_decay=1e-3,
    )  # fmt: skip
    masks = [random_mask(ticketlab.conv4(width=2), 0.5, seed) for seed in range(2)]
    members = [ticketlab.conv4(width=2, seed=s) for s in range(2)]
    results = train_population(
        members, data, cfg, masks=masks, data_seeds=[3, 4], checkpoint_steps=[6], progress=False
    )
    for s, member in enumerate(results):
        assert member.model is members[s]
        alone = train(ticketlab.conv4(width=2, seed=s), data, cfg, mask=masks[s], data_seed=3 + s,
                      checkpoint_steps=[6], progress=False)  # fmt: skip
        assert_states_match(member, alone)
        for name, value in alone.checkpoints[6].items():
            torch.testing.assert_close(member.checkpoints[6][name], value, atol=1e-5, rtol=1e-4)
        pruned = ~masks[s]["conv1.weight"]
        assert not member.model.conv1.weight[pruned].any()


@pytest.mark.parametrize("setting", ["all", "bn_only", "random_params"])
def test_batchnorm_population_matches_sequential_training(setting):
    """Each member's running statistics are its own: updated while training, used to evaluate."""
    data = tiny_images()
    cfg = TrainConfig(steps=10, batch_size=8, optimizer="sgd", lr=0.05, eval_every=5)

    def start(seed):
        model = ticketlab.resnet(8, 4, seed=seed)
        if setting == "bn_only":
            ticketlab.batchnorm.freeze_all_but_batchnorm(model)
        return model

    grad_masks = [None, None]
    if setting == "random_params":
        grad_masks = [random_mask(start(0), 0.3, seed) for seed in (5, 6)]
    members = [start(s) for s in range(2)]
    results = train_population(
        members, data, cfg, grad_masks=grad_masks, data_seeds=[0, 1], progress=False
    )
    for s, member in enumerate(results):
        alone = train(start(s), data, cfg, grad_mask=grad_masks[s], data_seed=s, progress=False)
        assert_states_match(member, alone)
        assert not torch.equal(member.model.bn.running_mean, start(s).bn.running_mean)


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
    with pytest.raises(ValueError, match="got 2 models but 1 masks, 2 grad_masks and 2 data seeds"):
        train_population(models, data, XOR, masks=[None])
    with pytest.raises(ValueError, match=r"start_step=99 must lie in \[0, steps=60\]"):
        train_population(models, data, XOR, start_step=99)
    bad_mask = ticketlab.Mask({"nope.weight": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"masks\[0\]: the mask has an entry for 'nope.weight'"):
        train_population(models, data, XOR, masks=[bad_mask, None])


def test_train_many_picks_the_measured_faster_way():
    from ticketlab.population import prefers_population, train_many

    mlps = [ticketlab.lenet_300_100(seed=s) for s in range(2)]
    resnets = [ticketlab.resnet(8, 4, seed=s) for s in range(2)]
    assert prefers_population(mlps, torch.device("cpu"))
    assert not prefers_population(resnets, torch.device("cpu"))
    assert prefers_population(resnets, torch.device("cuda"))
    assert not prefers_population([], torch.device("cpu"))
    assert not prefers_population(mlps[:1], torch.device("cpu"))  # one model: ``train`` itself
    assert not prefers_population(resnets[:1], torch.device("cuda"))
    # Forced either way, the two agree (the contract); the default on a CPU is one by one.
    data, cfg = tiny_images(), TrainConfig(steps=4, batch_size=8, optimizer="sgd", lr=0.05)
    runs = {
        way: list(train_many([ticketlab.resnet(8, 4, seed=s) for s in range(2)], data, cfg,
                             masks=[None, None], data_seeds=[0, 1], progress=False,
                             population=way))
        for way in (True, False, None)
    }  # fmt: skip
    for forced, default in zip(runs[True], runs[None], strict=True):
        assert_states_match(forced, default)
    for alone, default in zip(runs[False], runs[None], strict=True):
        for name, value in alone.model.state_dict().items():
            assert torch.equal(value, default.model.state_dict()[name]), name
