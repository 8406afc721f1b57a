"""ticketlab.mlp_step: a plain MLP's gradients by hand equal autograd's bit for bit (the oracle)."""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ticketlab as tl
from ticketlab.mlp_step import MLPGrad
from ticketlab.training import TrainConfig, TrainStep


def _autograd_grads(model: nn.Module, X: torch.Tensor, y: torch.Tensor):
    """The oracle: cross-entropy through the module's own forward and ``loss.backward()``."""
    for p in model.parameters():
        p.grad = None
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}


def _by_hand(model: nn.Module, X: torch.Tensor, y: torch.Tensor):
    for p in model.parameters():
        p.grad = None
    loss = MLPGrad.of(model).grads(X, y)
    return loss, {n: p.grad for n, p in model.named_parameters()}


def _batch(shape, classes=10, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(shape, generator=gen, dtype=dtype)
    return X, torch.randint(classes, (shape[0],), generator=gen)


def _tanh_mlp_without_biases(dtype) -> nn.Sequential:
    torch.manual_seed(3)
    layers = OrderedDict(
        fc1=nn.Linear(12, 9, bias=False), act1=nn.Tanh(), fc2=nn.Linear(9, 7), act2=nn.ReLU(),
        out=nn.Linear(7, 4, bias=False),
    )  # fmt: skip
    return nn.Sequential(layers).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lenet_gradients_and_loss_are_autograds_bit_for_bit(dtype):
    model = tl.lenet_300_100(seed=1).to(dtype)
    X, y = _batch((60, 1, 28, 28), dtype=dtype)
    loss_a, grads_a = _autograd_grads(copy.deepcopy(model), X, y)
    loss_b, grads_b = _by_hand(copy.deepcopy(model), X, y)
    assert torch.equal(loss_a, loss_b)
    for name, g in grads_a.items():
        assert grads_b[name].shape == g.shape and grads_b[name].is_contiguous(), name
        assert torch.equal(g, grads_b[name]), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tanh_and_missing_biases_and_frozen_parameters_match_autograd(dtype):
    model = _tanh_mlp_without_biases(dtype)
    model.fc2.weight.requires_grad_(False)
    X, y = _batch((33, 12), classes=4, seed=5, dtype=dtype)
    loss_a, grads_a = _autograd_grads(copy.deepcopy(model), X, y)
    loss_b, grads_b = _by_hand(copy.deepcopy(model), X, y)
    assert torch.equal(loss_a, loss_b)
    assert grads_a["fc2.weight"] is None and grads_b["fc2.weight"] is None
    for name, g in grads_a.items():
        if g is not None:
            assert torch.equal(g, grads_b[name]), name


def test_trained_weights_equal_the_autograd_trainers_after_many_masked_steps():
    """600 Adam steps with a pruning mask, a trainability mask and weight decay: identical bits."""
    data = tl.mnist(device="cpu")
    base = tl.lenet_300_100(seed=0)
    mask = tl.prune.one_shot(base, 0.2)
    grad_mask = {
        "fc2.weight": torch.rand(100, 300, generator=torch.Generator().manual_seed(1)) > 0.5
    }
    config = TrainConfig(steps=200, batch_size=60, lr=1.2e-3, weight_decay=1e-4, eval_every=50)
    X, y = data.train
    results = []
    for by_hand in (True, False):
        model = copy.deepcopy(base)
        step = TrainStep(model, config, mask=mask, grad_mask=grad_mask)
        assert step.by_hand is not None
        if not by_hand:
            step.by_hand = None  # the autograd path: the oracle
        gen = torch.Generator().manual_seed(2)
        for _ in range(config.steps):
            idx = torch.randint(len(y), (60,), generator=gen)
            step(X[idx], y[idx], config.lr)
        results.append(model.state_dict())
    for name, w in results[0].items():
        assert torch.equal(w, results[1][name]), name
    assert (results[0]["fc1.weight"][~mask["fc1.weight"]] == 0).all()


def test_train_uses_the_path_and_its_history_equals_the_autograd_one(monkeypatch):
    data = tl.mnist(device="cpu")
    base = tl.lenet_300_100(seed=0)
    mask = tl.prune.one_shot(base, 0.3)
    fast = tl.train(copy.deepcopy(base), data, steps=120, eval_every=40, mask=mask, progress=False)
    calls = []
    monkeypatch.setattr(MLPGrad, "of", classmethod(lambda cls, model: calls.append(1)))
    slow = tl.train(copy.deepcopy(base), data, steps=120, eval_every=40, mask=mask, progress=False)
    assert calls, "train() did not ask for the by-hand path"
    assert fast.history.equals(slow.history)
    for name, w in fast.model.state_dict().items():
        assert torch.equal(w, slow.model.state_dict()[name]), name


class _ScaledLinear(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


def _with_hook(model):
    model[1].register_forward_hook(lambda module, args, out: out * 0)
    return model


def _shared(model):
    model.fc2.weight = model.fc1.weight
    return model


@pytest.mark.parametrize(
    "make",
    [
        lambda: tl.conv4(seed=0, width=4),  # convolutions
        lambda: tl.resnet(8, 4),  # not a Sequential of plain layers
        lambda: nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5), nn.Linear(3, 2)),
        lambda: nn.Sequential(_ScaledLinear(4, 3), nn.ReLU(), nn.Linear(3, 2)),  # a subclass
        lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU(inplace=True), nn.Linear(3, 2)),
        lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU()),  # ends in an activation
        lambda: nn.Sequential(nn.ReLU(), nn.Linear(4, 3)),  # starts with one
        lambda: nn.Sequential(nn.Flatten(0), nn.Linear(4, 2)),  # not the default flatten
        lambda: _with_hook(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))),
        lambda: _shared(nn.Sequential(OrderedDict(fc1=nn.Linear(3, 3), fc2=nn.Linear(3, 3)))),
    ],
    ids=["conv", "resnet", "dropout", "subclass", "inplace", "act-last", "act-first",
         "flatten0", "hook", "shared"],
)  # fmt: skip
def test_other_models_are_left_to_autograd(make):
    assert MLPGrad.of(make()) is None


def test_inputs_it_was_not_written_for_write_nothing():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    grads = MLPGrad.of(model)
    X, y = _batch((8, 6), classes=3)
    assert grads.grads(X, y.float()) is None  # class probabilities, not indices
    assert grads.grads(X.view(8, 2, 3), y) is None  # no Flatten: nn.Linear would broadcast
    assert all(p.grad is None for p in model.parameters())


def test_a_step_on_targets_it_was_not_written_for_falls_back_to_autograd():
    """One-hot float targets (cross-entropy with probabilities) go through autograd and give the
    step that class indices give."""
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    config = TrainConfig(steps=1, batch_size=8, lr=0.1, optimizer="sgd")
    X, y = _batch((8, 6), classes=3)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    TrainStep(a, config)(X, F.one_hot(y, 3).float(), 0.1)
    TrainStep(b, config)(X, y, 0.1)
    for before, pa, pb in zip(model.parameters(), a.parameters(), b.parameters(), strict=True):
        assert not torch.equal(pa, before)  # the step moved the weights
        torch.testing.assert_close(pa, pb)


# A population of MLPs: the stacked by-hand step against the population's autograd step.


def _stacked(models, requires_grad=None):
    from ticketlab.population import _StackedMLP

    net = _StackedMLP(models, torch.device("cpu"))
    for name, p in net.params.items():
        p.requires_grad_(True if requires_grad is None else requires_grad.get(name, True))
    return net


def _population_autograd(net, X, y, alive):
    """The oracle: the population's own forward, its loss and ``backward()`` (population.py)."""
    from ticketlab.training import mean_loss

    for p in net.params.values():
        p.grad = None
    losses = mean_loss(net.forward(X), y)
    torch.where(alive, losses, torch.zeros_like(losses)).sum().backward()
    return losses.detach(), {n: p.grad for n, p in net.params.items()}


def _population_by_hand(net, model, X, y, alive):
    for p in net.params.values():
        p.grad = None
    losses = MLPGrad.of(model, stacked=net.params).grads(X, y, alive)
    return losses, {n: p.grad for n, p in net.params.items()}


def _same_bits(a, b):
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_populations_gradients_and_losses_are_autograds_bit_for_bit(dtype):
    """Three LeNets, one of them no longer alive (its loss left out of the sum)."""
    models = [tl.lenet_300_100(seed=s).to(dtype) for s in range(3)]
    gen = torch.Generator().manual_seed(4)
    X = torch.randn(3, 60, 1, 28, 28, generator=gen, dtype=dtype)
    y = torch.randint(10, (3, 60), generator=gen)
    alive = torch.tensor([True, False, True])
    net = _stacked(models)
    loss_a, grads_a = _population_autograd(net, X, y, alive)
    loss_b, grads_b = _population_by_hand(net, models[0], X, y, alive)
    assert loss_b.shape == (3,)
    _same_bits(loss_a, loss_b)
    for name, g in grads_a.items():
        assert grads_b[name].shape == g.shape and grads_b[name].is_contiguous(), name
        _same_bits(g, grads_b[name])
        assert g[1].abs().sum() == 0, name  # the member that is not alive gets no gradient


def test_a_populations_tanh_missing_biases_frozen_and_diverged_members_match_autograd():
    models = [_tanh_mlp_without_biases(torch.float32) for _ in range(2)]
    net = _stacked(models, requires_grad={"fc2.weight": False})
    with torch.no_grad():
        net.params["fc1.weight"][1, 0, 0] = float("nan")  # member 1 has diverged
    gen = torch.Generator().manual_seed(6)
    X, y = torch.randn(2, 33, 12, generator=gen), torch.randint(4, (2, 33), generator=gen)
    alive = torch.tensor([True, False])
    loss_a, grads_a = _population_autograd(net, X, y, alive)
    loss_b, grads_b = _population_by_hand(net, models[0], X, y, alive)
    _same_bits(loss_a, loss_b)
    assert loss_b[1].isnan() and grads_a["fc2.weight"] is None and grads_b["fc2.weight"] is None
    for name, g in grads_a.items():
        if g is not None:
            _same_bits(g, grads_b[name])


def test_a_population_trained_by_hand_equals_its_autograd_training(monkeypatch):
    """200 Adam steps of 3 LeNets with masks, a trainability mask and weight decay: identical
    weights and histories with the by-hand step and with autograd's."""
    from ticketlab import population

    data = tl.mnist(device="cpu")
    models = [tl.lenet_300_100(seed=s) for s in range(3)]
    masks = [tl.prune.one_shot(m, 0.2 * (i + 1)) for i, m in enumerate(models)]
    grad_masks = [None, {"fc2.bias": torch.arange(100) % 2 == 0}, None]
    config = TrainConfig(steps=200, eval_every=50, batch_size=60, lr=1.2e-3, weight_decay=1e-4)

    def run():
        copies = [copy.deepcopy(m) for m in models]
        results = population.train_population(
            copies, data, config, masks=masks, grad_masks=grad_masks, progress=False
        )
        return copies, results

    fast_models, fast = run()
    calls = []
    monkeypatch.setattr(
        population.MLPGrad, "of", classmethod(lambda cls, model, stacked=None: calls.append(1))
    )
    slow_models, slow = run()
    assert calls, "train_population did not ask for the by-hand path"
    for i in range(3):
        assert fast[i].history.equals(slow[i].history), i
        for name, w in fast_models[i].state_dict().items():
            assert torch.equal(w, slow_models[i].state_dict()[name]), (i, name)
            assert not torch.equal(w, models[i].state_dict()[name]), (i, name)  # they trained


def test_a_population_step_on_inputs_it_was_not_written_for_writes_nothing():
    models = [nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)) for _ in range(2)]
    net = _stacked(models)
    grads = MLPGrad.of(models[0], stacked=net.params)
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(2, 8, 6, generator=gen), torch.randint(3, (2, 8), generator=gen)
    alive = torch.ones(2, dtype=torch.bool)
    assert grads.grads(X, y, None) is None  # no alive flags
    assert grads.grads(X, y, alive[:1]) is None  # one flag for two members
    assert grads.grads(X, y[0], alive) is None  # one member's targets
    assert grads.grads(X[:, :4], y, alive) is None  # targets for another batch size
    assert all(p.grad is None for p in net.params.values())
    assert MLPGrad.of(models[0], stacked={"0.weight": net.params["0.weight"]}) is None


def test_a_gradient_already_there_is_replaced_not_added_to():
    """The trainers call ``grads`` every step without ``zero_grad``: after a second batch the
    gradients must be autograd's for that batch alone."""
    model = tl.lenet_300_100(seed=2)
    X1, y1 = _batch((60, 1, 28, 28), seed=1)
    X2, y2 = _batch((60, 1, 28, 28), seed=2)
    by_hand = MLPGrad.of(model)
    by_hand.grads(X1, y1)
    assert all(p.grad is not None for p in model.parameters())
    loss = by_hand.grads(X2, y2)
    loss_a, grads_a = _autograd_grads(copy.deepcopy(model), X2, y2)
    assert torch.equal(loss, loss_a)
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, grads_a[name]), name  # not the sum of both batches

    models = [tl.lenet_300_100(seed=s) for s in range(2)]
    net = _stacked(models)
    gen = torch.Generator().manual_seed(3)
    Xs = [torch.randn(2, 60, 1, 28, 28, generator=gen) for _ in range(2)]
    ys = [torch.randint(10, (2, 60), generator=gen) for _ in range(2)]
    alive = torch.tensor([True, True])
    stacked = MLPGrad.of(models[0], stacked=net.params)
    stacked.grads(Xs[0], ys[0], alive)
    losses = stacked.grads(Xs[1], ys[1], alive)
    got = {n: p.grad for n, p in net.params.items()}
    losses_a, grads_a = _population_autograd(net, Xs[1], ys[1], alive)  # sets fresh .grad
    _same_bits(losses, losses_a)
    for name, g in grads_a.items():
        _same_bits(got[name], g)  # the second batch's gradients alone


# One logit: binary cross-entropy with logits (the XOR lab's networks).


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_logit_gradients_and_loss_are_autograds_bit_for_bit(activation, dtype):
    """The oracle: binary cross-entropy with logits through the module's forward and backward."""
    model = tl.xor_mlp(10, activation, seed=3).to(dtype)
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(60, 2, generator=gen, dtype=dtype) * 3  # 1/60: not a power of two
    y = torch.randint(2, (60,), generator=gen)
    oracle = copy.deepcopy(model)
    loss_a = F.binary_cross_entropy_with_logits(oracle(X).squeeze(-1), y.to(dtype))
    loss_a.backward()
    loss_b, grads_b = _by_hand(copy.deepcopy(model), X, y)
    assert torch.equal(loss_a.detach(), loss_b)
    for name, p in oracle.named_parameters():
        assert grads_b[name].shape == p.grad.shape and grads_b[name].is_contiguous(), name
        assert torch.equal(p.grad, grads_b[name]), name


def test_a_population_of_one_logit_networks_matches_autograd_bit_for_bit():
    """Fifty XOR networks, some no longer alive, one diverged."""
    models = [tl.xor_mlp(10, seed=s) for s in range(50)]
    net = _stacked(models)
    with torch.no_grad():
        net.params["fc1.weight"][7, 0, 0] = float("nan")
    gen = torch.Generator().manual_seed(8)
    X, y = torch.randn(50, 6, 2, generator=gen) * 2, torch.randint(2, (50, 6), generator=gen)
    alive = torch.rand(50, generator=gen) > 0.2
    alive[7] = False
    loss_a, grads_a = _population_autograd(net, X, y, alive)
    loss_b, grads_b = _population_by_hand(net, models[0], X, y, alive)
    assert loss_b.shape == (50,) and loss_b[7].isnan()
    _same_bits(loss_a, loss_b)
    for name, g in grads_a.items():
        assert grads_b[name].shape == g.shape and grads_b[name].is_contiguous(), name
        _same_bits(g, grads_b[name])


def test_xor_training_by_hand_equals_autograds_for_one_network_and_a_population(monkeypatch):
    """``train`` and ``train_population`` on XOR, masked, 300 Adam steps: the same weights and
    histories with the by-hand step as with autograd's."""
    data = tl.xor()
    seeds = list(range(6))
    masks = [tl.prune.units(tl.xor_mlp(10, seed=s), tl.Mask.ones(tl.xor_mlp(10)), 4) for s in seeds]
    fit = {"steps": 300, "batch_size": 4, "lr": 0.01, "eval_every": 100, "progress": False}

    def run():
        one = tl.xor_mlp(10, "tanh", seed=11)
        single = tl.train(one, data, mask=masks[0], **fit)
        many = [tl.xor_mlp(10, seed=s) for s in seeds]
        results = tl.train_population(many, data, masks=masks, data_seeds=seeds, **fit)
        return [one, *many], [single, *results]

    fast_models, fast = run()
    calls = []

    def no_by_hand(cls, model, stacked=None):
        calls.append(1)

    monkeypatch.setattr(MLPGrad, "of", classmethod(no_by_hand))  # train's and populations' own
    slow_models, slow = run()
    assert len(calls) >= 2, "train and train_population did not ask for the by-hand path"
    for i, (a, b) in enumerate(zip(fast, slow, strict=True)):
        assert a.history.equals(b.history), i
        for name, w in fast_models[i].state_dict().items():
            assert torch.equal(w, slow_models[i].state_dict()[name]), (i, name)
