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
        lambda: tl.xor_mlp(),  # one logit: binary cross-entropy
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
    ids=["conv", "one-logit", "resnet", "dropout", "subclass", "inplace", "act-last", "act-first",
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
