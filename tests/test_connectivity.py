"""Linear interpolation between networks, checked against by-hand paths and direct evaluation."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.connectivity import error_barrier, interpolate, interpolated, l2_distance
from ticketlab.data import Split
from ticketlab.masks import Mask


def _mlp(seed: int, device, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, classes)).to(device)


def _data(device, n: int = 20, classes: int = 3, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return Split(X.to(device), y.to(device))


def _lerp_model(model_a, model_b, alpha):
    """θ(α) built by hand: (1 − α)·θ_a + α·θ_b for every parameter."""
    model = copy.deepcopy(model_a)
    with torch.no_grad():
        for (_, p), pa, pb in zip(
            model.named_parameters(), model_a.parameters(), model_b.parameters(), strict=True
        ):
            p.copy_((1 - alpha) * pa + alpha * pb)
    return model.eval()


def _metrics(model, split):
    with torch.no_grad():
        logits = model(split.X)
    loss = F.cross_entropy(logits, split.y).item()
    error = (logits.argmax(1) != split.y).double().mean().item()
    return loss, error


def test_endpoints_equal_the_models_own_metrics(device):
    a, b, data = _mlp(0, device), _mlp(1, device), _data(device)
    curve = interpolate(a, b, data, points=7, batch_size=6)  # 4 batches, the last one short
    assert list(curve.columns) == ["alpha", "loss", "error"]
    assert curve["alpha"].tolist() == pytest.approx([i / 6 for i in range(7)])
    for row, model in ((0, a), (6, b)):
        loss, error = _metrics(model.eval(), data)
        assert curve.loc[row, "loss"] == pytest.approx(loss, rel=1e-5)
        assert curve.loc[row, "error"] == pytest.approx(error, abs=1e-12)
    # an interior point against a model interpolated by hand
    loss, error = _metrics(_lerp_model(a, b, 1 / 3), data)
    assert curve.loc[2, "loss"] == pytest.approx(loss, rel=1e-5)
    assert curve.loc[2, "error"] == pytest.approx(error, abs=1e-12)


def test_a_model_with_itself_is_flat_with_zero_barrier(device):
    a, data = _mlp(0, device), _data(device)
    curve = interpolate(a, a, data, points=5)
    assert curve["loss"].nunique() == 1
    assert curve["error"].nunique() == 1
    assert error_barrier(curve) == 0.0


def test_single_logit_linear_path_by_hand(device):
    # logit = w·x with w = 1 at A and w = −1 at B, so w(α) = 1 − 2α.
    a, b = nn.Linear(1, 1, bias=False).to(device), nn.Linear(1, 1, bias=False).to(device)
    with torch.no_grad():
        a.weight.fill_(1.0)
        b.weight.fill_(-1.0)
    data = Split(
        torch.tensor([[1.0], [2.0], [-1.0]], device=device), torch.tensor([1, 1, 0], device=device)
    )
    curve = interpolate(a, b, data, points=5)

    def softplus(z):
        return math.log1p(math.exp(z))

    expected_loss = []
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
        w = 1 - 2 * alpha
        # BCE: −log σ(z) = softplus(−z) for label 1, softplus(z) for label 0
        expected_loss.append((softplus(-w * 1) + softplus(-w * 2) + softplus(w * -1)) / 3)
    assert curve["loss"].tolist() == pytest.approx(expected_loss, rel=1e-6)
    # w > 0: all right; w = 0: every logit is 0, predicted 0, so both label-1 points are wrong
    assert curve["error"].tolist() == pytest.approx([0, 0, 2 / 3, 1, 1])
    assert error_barrier(curve) == pytest.approx(1 - (0 + 1) / 2)


def _bn_pair(device, w_a: float, w_b: float, out_bias: float = -1.0):
    """x → Linear(1, 1) with weight w → BatchNorm1d(1) → a single logit = BN output + out_bias."""

    def make(w):
        model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1), nn.Linear(1, 1))
        with torch.no_grad():
            model[0].weight.fill_(w)
            model[2].weight.fill_(1.0)
            model[2].bias.fill_(out_bias)
        return model.to(device)

    return make(w_a), make(w_b)


def test_batchnorm_statistics_are_recomputed_not_averaged(device):
    train_x = torch.tensor([[-2.0], [-1.0], [0.0], [1.0], [2.0]], device=device)
    train = Split(train_x, torch.zeros(5, dtype=torch.long, device=device))
    a, b = _bn_pair(device, 1.0, 3.0)
    # give each endpoint the running statistics of its own activations, as training would
    for model, w in ((a, 1.0), (b, 3.0)):
        h = w * train_x
        model[1].running_mean.fill_(h.mean().item())
        model[1].running_var.fill_(h.var(unbiased=True).item())
    # Midpoint w = 2, h = 2x. Recomputed: mean 0, var 4 · 2.5 = 10, so at x = 1.7 the logit is
    # 3.4/√10 − 1 = +0.075 (class 1, right). Naively averaged: var (2.5 + 22.5)/2 = 12.5, and
    # 3.4/√12.5 − 1 = −0.038 (class 0, wrong).
    test = Split(torch.tensor([[1.7], [-1.0]], device=device), torch.tensor([1, 0], device=device))
    curve = interpolate(a, b, test, points=3, train_data=train)

    mid = interpolated(a, b, 0.5, train_data=train)
    h = 2.0 * train_x
    assert mid[1].running_mean.item() == pytest.approx(h.mean().item(), abs=1e-6)
    assert mid[1].running_var.item() == pytest.approx(h.var(unbiased=True).item(), rel=1e-6)
    assert not mid.training

    def error_with(mean, var):
        z = (2.0 * test.X - mean) / math.sqrt(var + 1e-5) - 1.0
        return ((z.reshape(-1) > 0).long() != test.y).double().mean().item()

    naive = error_with(0.0, (2.5 + 22.5) / 2)
    recomputed = error_with(h.mean().item(), h.var(unbiased=True).item())
    assert naive == 0.5
    assert recomputed == 0.0
    assert curve.loc[1, "error"] == recomputed


def test_batchnorm_statistics_average_full_batches(device):
    torch.manual_seed(0)
    a, b = (
        nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).to(device)
        for _ in range(2)
    )
    g = torch.Generator().manual_seed(1)
    train = Split(
        torch.randn(7, 3, generator=g).to(device), torch.zeros(7, dtype=torch.long, device=device)
    )
    alpha = 0.3
    model = interpolated(a, b, alpha, train_data=train, batch_size=3)
    # oracle: pre-BN activations of θ(α), batches [0:3] and [3:6]; the short batch [6:7] is left out
    weight = (1 - alpha) * a[0].weight + alpha * b[0].weight
    bias = (1 - alpha) * a[0].bias + alpha * b[0].bias
    with torch.no_grad():
        batches = [train.X[0:3] @ weight.T + bias, train.X[3:6] @ weight.T + bias]
        mean = sum(h.mean(0) for h in batches) / 2
        var = sum(h.var(0, unbiased=True) for h in batches) / 2
    assert torch.allclose(model[1].running_mean, mean, rtol=1e-5, atol=1e-6)
    assert torch.allclose(model[1].running_var, var, rtol=1e-5, atol=1e-6)
    assert model[1].momentum == 0.1  # restored after the cumulative pass

    first = interpolated(a, b, alpha, train_data=train, batch_size=3, bn_batches=1)
    assert torch.allclose(first[1].running_mean, batches[0].mean(0), rtol=1e-5, atol=1e-6)


def test_batchnorm_needs_train_data(device):
    a, b = _bn_pair(device, 1.0, 2.0)
    data = Split(torch.randn(4, 1, device=device), torch.tensor([0, 1, 0, 1], device=device))
    with pytest.raises(ValueError, match="train_data"):
        interpolate(a, b, data)


def test_endpoint_models_are_not_modified(device):
    a, b = _bn_pair(device, 1.0, 3.0)
    a.train()
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (a, b)]
    data = Split(torch.randn(6, 1, device=device), torch.tensor([0, 1] * 3, device=device))
    interpolate(
        a,
        b,
        data,
        points=4,
        train_data=data,
        mask={"0.weight": torch.zeros(1, 1, dtype=torch.bool)},
    )
    for model, saved in zip((a, b), before, strict=True):
        for key, value in model.state_dict().items():
            assert torch.equal(value, saved[key]), key
    assert a.training and b.training
    assert a[1].momentum == 0.1


def test_mask_zeroes_pruned_weights_along_the_path(device):
    a, b, data = _mlp(0, device), _mlp(1, device), _data(device)
    g = torch.Generator().manual_seed(3)
    mask = {
        "0.weight": torch.rand(8, 4, generator=g) > 0.5,
        "2.weight": torch.rand(3, 8, generator=g) > 0.3,
    }
    curve = interpolate(a, b, data, points=4, mask=mask)
    for row, alpha in enumerate((0, 1 / 3, 2 / 3, 1)):
        model = _lerp_model(a, b, alpha)
        with torch.no_grad():
            for name, keep in mask.items():
                model.get_parameter(name).mul_(keep.to(device))
        loss, error = _metrics(model, data)
        assert curve.loc[row, "loss"] == pytest.approx(loss, rel=1e-5)
        assert curve.loc[row, "error"] == pytest.approx(error, abs=1e-12)
    as_mask = interpolate(
        a, b, data, points=4, mask=Mask({k: v.to(device) for k, v in mask.items()})
    )
    pd.testing.assert_frame_equal(as_mask, curve)
    masked = interpolated(a, b, 0.5, mask=mask)
    assert not masked[0].weight[~mask["0.weight"].to(device)].any()
    with pytest.raises(ValueError, match=r"has an entry for .* but the model has no such"):
        interpolate(a, b, data, mask={"fc9.weight": torch.ones(8, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        interpolate(a, b, data, mask={"0.weight": torch.ones(4, 8, dtype=torch.bool)})


def test_bad_inputs_are_clear_errors(device):
    a, data = _mlp(0, device), _data(device)
    with pytest.raises(ValueError, match="points"):
        interpolate(a, a, data, points=1)
    with pytest.raises(ValueError, match="different architectures"):
        interpolate(a, nn.Sequential(nn.Linear(4, 3)).to(device), data)
    with pytest.raises(ValueError, match="shape"):
        interpolate(a, _mlp(0, device, classes=5), data)
    with pytest.raises(ValueError, match="alpha"):
        interpolated(a, a, 1.5)
    with pytest.raises(TypeError, match="Split"):
        interpolate(a, a, data.X)
    conv = nn.Conv1d(1, 2, 1).to(device)  # returns (N, 2, L): not classifier logits
    with pytest.raises(ValueError, match="logits"):
        interpolate(
            conv,
            conv,
            Split(
                torch.randn(3, 1, 5, device=device), torch.zeros(3, dtype=torch.long, device=device)
            ),
        )


def test_error_barrier_by_hand():
    curve = pd.DataFrame({"alpha": [1.0, 0.0, 0.5], "error": [0.2, 0.1, 0.3]})  # order irrelevant
    assert error_barrier(curve) == pytest.approx(0.3 - (0.1 + 0.2) / 2)
    with pytest.raises(ValueError, match="several paths"):
        error_barrier(pd.concat([curve, curve]))
    with pytest.raises(ValueError, match="alpha = 0"):
        error_barrier(curve[curve["alpha"] > 0])
    with pytest.raises(ValueError, match="columns"):
        error_barrier(curve.drop(columns="error"))


def test_l2_distance_by_hand(device):
    a, b = nn.Linear(2, 1).to(device), nn.Linear(2, 1).to(device)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[1.0, 2.0]]))
        b.weight.copy_(torch.tensor([[4.0, 6.0]]))
        a.bias.fill_(0.0)
        b.bias.fill_(12.0)
    assert l2_distance(a, b) == pytest.approx(13.0)  # √(3² + 4² + 12²)
    assert l2_distance(a, b, names=["weight"]) == pytest.approx(5.0)
    assert l2_distance(a, a) == 0.0
    with pytest.raises(ValueError, match="not a parameter"):
        l2_distance(a, b, names=["fc1.weight"])


def test_l2_distance_matches_flat_vectors(device):
    a, b = _mlp(0, device), _mlp(1, device)
    flat = nn.utils.parameters_to_vector(a.parameters()) - nn.utils.parameters_to_vector(
        b.parameters()
    )
    assert l2_distance(a, b) == pytest.approx(flat.norm().item(), rel=1e-6)
