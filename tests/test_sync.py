"""No host-device synchronization inside a training step or a pruning call (CUDA only).

``torch.cuda.set_sync_debug_mode("error")`` turns every synchronizing CUDA call (``.item()``,
``nonzero``, blocking copies, ...) into an exception, so these tests fail if one sneaks in.
"""

from __future__ import annotations

import pytest
import torch

import ticketlab as tl
from ticketlab import prune
from ticketlab.training import TrainConfig, TrainStep

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture
def sync_errors():
    """Restore the default sync debug mode even when a test fails mid-way."""
    yield
    torch.cuda.set_sync_debug_mode("default")


def _masked_lenet():
    model = tl.lenet_300_100(seed=0).cuda()
    mask = prune.one_shot(model, 0.1)
    return model, mask


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_training_step_never_syncs(optimizer, sync_errors):
    model, mask = _masked_lenet()
    config = TrainConfig(optimizer=optimizer, lr=0.01, momentum=0.9 if optimizer == "sgd" else 0)
    step = TrainStep(model, config, mask=mask)
    X = torch.randn(60, 1, 28, 28, device="cuda")
    y = torch.randint(0, 10, (60,), device="cuda")
    step(X, y, 0.01)  # first call allocates optimizer state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    for _ in range(3):
        loss = step(X, y, 0.01)
    torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss)
    params = dict(model.named_parameters())
    assert all(bool((params[n] * ~m).eq(0).all()) for n, m in mask.items())


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_magnitude_pruning_never_syncs(scope, sync_errors):
    model, mask = _masked_lenet()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    pruned = prune.magnitude(model, mask, 0.2, scope, {"out.weight": 0.1})
    torch.cuda.set_sync_debug_mode("default")
    assert pruned.kept < mask.kept
