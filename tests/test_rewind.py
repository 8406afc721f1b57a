"""ticketlab.rewinding: exact, alias-free restoring, and controls that change one thing each."""

from __future__ import annotations

import copy

import pytest
import torch

import ticketlab
from ticketlab import models
from ticketlab.masks import Mask
from ticketlab.rewinding import CONTROLS, control, rewind


def state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_equal_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name


def scramble(model) -> None:
    """Change every tensor of the state dict, buffers included."""
    with torch.no_grad():
        for value in model.state_dict().values():
            value.add_(1)


def half_mask(model, seed=0) -> Mask:
    """Each prunable layer keeps a random half of its weights (oracle-free: plain torch.rand)."""
    gen = torch.Generator().manual_seed(seed)
    return Mask(
        {
            name: torch.rand(p.shape, generator=gen) < 0.5
            for name, p in model.named_parameters()
            if name in models.prunable_names(model)
        }
    )


def kept_counts(mask: Mask) -> dict[str, int]:
    return {name: int(keep.sum()) for name, keep in mask.items()}


def test_rewind_restores_every_tensor_bit_exactly(device):
    model = models.resnet(width=2, seed=0).to(device)
    model.train()
    with torch.no_grad():  # moves BatchNorm running statistics and num_batches_tracked
        model(torch.randn(4, 1, 8, 8, device=device))
    checkpoint = state(model)
    scramble(model)
    assert not torch.equal(model.bn.running_mean, checkpoint["bn.running_mean"])
    assert rewind(model, checkpoint) is model
    assert_equal_states(state(model), checkpoint)


def test_training_after_rewind_never_writes_into_the_checkpoint(device):
    data = ticketlab.xor(noise=0.1, samples_per_corner=4, device=device)
    result = ticketlab.train(
        models.xor_mlp(hidden=4), data, steps=20, batch_size=4, eval_every=10,
        checkpoint_steps=[5], progress=False,
    )  # fmt: skip
    checkpoint = result.checkpoints[5]
    frozen = {k: v.clone() for k, v in checkpoint.items()}
    model = rewind(models.xor_mlp(hidden=4, seed=3).to(device), checkpoint)
    assert_equal_states(state(model), frozen)
    ticketlab.train(model, data, steps=20, batch_size=4, start_step=5, progress=False)
    assert not torch.equal(model.fc1.weight, frozen["fc1.weight"])
    assert_equal_states(checkpoint, frozen)
    for name, value in model.state_dict().items():  # no storage shared with the checkpoint
        assert value.data_ptr() != checkpoint[name].data_ptr()


def test_rewind_applies_the_mask():
    source = models.lenet_300_100(seed=1)
    checkpoint = state(source)
    mask = half_mask(source)
    model = rewind(models.lenet_300_100(seed=2), checkpoint, mask)
    for name, value in model.state_dict().items():
        if name in mask:
            keep = mask[name]
            assert torch.count_nonzero(value[~keep]) == 0, name
            assert torch.equal(value[keep], checkpoint[name][keep]), name
        else:
            assert torch.equal(value, checkpoint[name]), name
    assert torch.count_nonzero(checkpoint["fc1.weight"][~mask["fc1.weight"]]) > 0  # untouched


def test_rewind_rejects_checkpoints_of_other_architectures():
    with pytest.raises(ValueError, match=r"names differ in \['fc2.bias', 'fc2.weight'\]"):
        rewind(models.xor_mlp(), {**state(models.xor_mlp()), **state(models.lenet_300_100())})
    # Same names, smaller layers: copy_ would broadcast (1, 2) into (4, 2) without the check.
    with pytest.raises(ValueError, match=r"shapes differ for \['fc1.weight', 'fc1.bias', 'out"):
        rewind(models.xor_mlp(hidden=4), state(models.xor_mlp(hidden=1)))


def ticket(seed=0):
    """A rewound ticket: the init of LeNet (unmasked, as control expects) and a half mask."""
    model = models.lenet_300_100(seed=seed)
    return model, half_mask(model, seed)


@pytest.mark.parametrize("kind", CONTROLS)
def test_controls_keep_per_layer_counts_and_leave_inputs_alone(kind):
    model, mask = ticket()
    before, mask_before = state(model), Mask(dict(mask.items()))
    new_model, new_mask = control(kind, model, mask, seed=5)
    assert new_model is not model
    assert kept_counts(new_mask) == kept_counts(mask)
    for name, keep in new_mask.items():  # the control's own mask is applied
        assert torch.count_nonzero(dict(new_model.named_parameters())[name][~keep]) == 0
    assert_equal_states(state(model), before)
    assert mask == mask_before


def test_reinit_changes_weights_but_keeps_the_mask():
    model, mask = ticket()
    new_model, new_mask = control("reinit", model, mask, seed=9, init="kaiming_normal")
    assert new_mask == mask
    fresh = models.lenet_300_100(init="kaiming_normal", seed=9)  # oracle: the constructor
    for name, p in new_model.named_parameters():
        expected = fresh.state_dict()[name]
        if name in mask:
            expected = expected * mask[name]
        assert torch.equal(p.detach(), expected), name
    kept = mask["fc1.weight"]
    assert not torch.equal(new_model.fc1.weight[kept], model.fc1.weight[kept])


def test_sign_control_keeps_signs_and_changes_magnitudes():
    model, mask = ticket()
    new_model, new_mask = control("sign", model, mask, seed=4)
    assert new_mask == mask
    fresh = models.lenet_300_100(seed=4)
    for name in mask:
        keep = mask[name]
        old = dict(model.named_parameters())[name].detach()[keep]
        new = dict(new_model.named_parameters())[name].detach()[keep]
        assert torch.equal(torch.sign(new), torch.sign(old)), name
        assert torch.equal(new.abs(), fresh.state_dict()[name][keep].abs()), name
        assert (new.abs() != old.abs()).float().mean() > 0.99, name
    assert torch.equal(new_model.fc1.bias, model.fc1.bias)  # not in the mask: the ticket's


@pytest.mark.parametrize("kind", ["random", "shuffled"])
def test_random_and_shuffled_keep_the_weights_and_change_the_mask(kind):
    model, mask = ticket()
    new_model, new_mask = control(kind, model, mask, seed=2)
    assert new_mask != mask
    for name, keep in new_mask.items():
        original = dict(model.named_parameters())[name].detach()
        new = dict(new_model.named_parameters())[name].detach()
        # Every newly kept weight has its rewind-point value, including those the ticket pruned.
        assert torch.equal(new[keep], original[keep]), name
        assert (keep & ~mask[name]).any(), name
    assert torch.equal(new_model.fc1.bias, model.fc1.bias)


@pytest.mark.parametrize("kind", CONTROLS)
def test_controls_are_deterministic_per_seed(kind):
    model, mask = ticket()
    a_model, a_mask = control(kind, model, mask, seed=7)
    b_model, b_mask = control(kind, copy.deepcopy(model), mask, seed=7)
    c_model, c_mask = control(kind, model, mask, seed=8)
    assert a_mask == b_mask
    assert_equal_states(state(a_model), state(b_model))
    if kind in ("random", "shuffled"):
        assert a_mask != c_mask
    else:
        assert not torch.equal(a_model.fc1.weight, c_model.fc1.weight)


def test_unknown_control():
    model, mask = ticket()
    with pytest.raises(ValueError, match=r"unknown control 'pruned'; choose one of \("):
        control("pruned", model, mask, seed=0)
