"""One contract, two trainers: ``train`` and ``train_population`` behave the same way.

Every test here runs against both trainers (``fit`` below): ``train`` on one model, and
``train_population`` on that model plus a bystander member whose every weight is frozen (so a
population of two, where a member must not be affected by its neighbour). The contract is
``ticketlab.training.Recorder``'s: history rows, NaN before training, divergence, checkpoints, and
masks checked once, with the same messages.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from test_population import image_mlp, tiny_images

import ticketlab
from ticketlab.masks import MaskError
from ticketlab.population import train_population
from ticketlab.training import TrainConfig, train

TRAINERS = ["train", "population"]
CFG = TrainConfig(steps=60, batch_size=10, lr=0.01, eval_every=20)


def frozen_everywhere(model) -> dict[str, torch.Tensor]:
    return {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in model.named_parameters()}


def fit(trainer, model, data, cfg=CFG, *, mask=None, grad_mask=None, **kwargs):
    """Train ``model`` with ``trainer``; return its ``TrainResult`` (and the bystander's)."""
    if trainer == "train":
        return train(model, data, cfg, mask=mask, grad_mask=grad_mask, progress=False, **kwargs)
    bystander = image_mlp(99)
    results = train_population(
        [model, bystander],
        data,
        cfg,
        masks=[mask, None],
        grad_masks=[grad_mask, frozen_everywhere(bystander)],
        data_seeds=[0, 1],
        progress=False,
        **kwargs,
    )
    return results[0]


@pytest.mark.parametrize("trainer", TRAINERS)
def test_history_rows_at_start_every_eval_and_end(trainer):
    result = fit(trainer, image_mlp(0), tiny_images(), CFG.replace(steps=50))
    assert result.history["step"].tolist() == [0, 20, 40, 50]
    assert math.isnan(result.history["train_loss"].iloc[0])
    assert result.history["train_loss"].iloc[1:].notna().all()
    assert not result.diverged and result.message == ""


@pytest.mark.parametrize("trainer", TRAINERS)
def test_nan_before_training_is_a_clear_error(trainer):
    model = image_mlp(0)
    with torch.no_grad():
        model.fc1.weight[0, 0] = math.nan
    with pytest.raises(ValueError, match="loss is NaN or infinite before training"):
        fit(trainer, model, tiny_images())


@pytest.mark.parametrize("trainer", TRAINERS)
def test_divergence_is_flagged_and_the_model_is_returned_as_it_was_when_detected(trainer):
    # An absurd Adam step (each update moves every weight by ~1e37) overflows within 20 steps.
    cfg = CFG.replace(lr=1e37)
    with pytest.warns(RuntimeWarning, match="diverged by step 20.*lr=1e\\+37") as caught:
        result = fit(trainer, image_mlp(0), tiny_images(), cfg, checkpoint_steps=[20])
    assert len(caught) == 1
    assert result.diverged and "diverged by step 20" in result.message
    assert result.history["step"].tolist() == [0, 20]
    # Frozen at the evaluation that found it: not moved on by its optimizer state afterwards.
    final = result.model.state_dict()
    for name, at_20 in result.checkpoints[20].items():
        torch.testing.assert_close(final[name], at_20, rtol=0, atol=0, equal_nan=True)


def test_a_diverged_member_leaves_its_neighbour_untouched():
    data = tiny_images()
    bystander, diverging = image_mlp(1), image_mlp(0)
    start = {k: v.clone() for k, v in bystander.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        results = train_population(
            [diverging, bystander],
            data,
            CFG.replace(lr=1e37),
            grad_masks=[None, frozen_everywhere(bystander)],
            progress=False,
        )
    assert [r.diverged for r in results] == [True, False]
    assert results[1].history["step"].tolist() == [0, 20, 40, 60]
    for name, value in bystander.state_dict().items():
        assert torch.equal(value, start[name]), name


@pytest.mark.parametrize("trainer", TRAINERS)
def test_grad_mask_holds_frozen_entries_bit_identical(trainer):
    model = image_mlp(0)
    gen = torch.Generator().manual_seed(3)
    keep = {n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = CFG.replace(weight_decay=0.1)  # weight decay is what could move a frozen entry
    fit(trainer, model, tiny_images(), cfg, grad_mask=keep)
    for name, value in model.state_dict().items():
        assert torch.equal(value[~keep[name]], before[name][~keep[name]]), name
        assert not torch.equal(value[keep[name]], before[name][keep[name]]), name


def test_grad_mask_in_a_population_matches_train_alone():
    data = tiny_images()
    gen = torch.Generator().manual_seed(4)
    keep = {n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in image_mlp(0).named_parameters()}
    member = fit("population", image_mlp(0), data, grad_mask=keep)
    alone = fit("train", image_mlp(0), data, grad_mask=keep)
    for name, value in member.model.state_dict().items():
        torch.testing.assert_close(value, alone.model.state_dict()[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("trainer", TRAINERS)
@pytest.mark.parametrize("what", ["mask", "grad_mask"])
def test_a_mask_that_does_not_fit_is_one_clear_error(trainer, what):
    model = image_mlp(0)
    wrong_name = ticketlab.Mask({"fc9.weight": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(MaskError, match=r"has an entry for 'fc9\.weight' but the model has no"):
        fit(trainer, model, tiny_images(), **{what: wrong_name})
    wrong_shape = {"fc1.weight": torch.ones(3, 3, dtype=torch.bool)}
    with pytest.raises(MaskError, match=r"'fc1\.weight' has shape \(3, 3\) but the parameter"):
        fit(trainer, model, tiny_images(), **{what: wrong_shape})
    not_binary = {"fc1.weight": torch.full(model.fc1.weight.shape, 0.5)}
    with pytest.raises(MaskError, match="values other than 0 and 1"):
        fit(trainer, model, tiny_images(), **{what: not_binary})


@pytest.mark.parametrize("trainer", TRAINERS)
def test_bad_steps_are_errors_before_any_weight_changes(trainer):
    model = image_mlp(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mask = {"fc1.weight": torch.zeros(model.fc1.weight.shape, dtype=torch.bool)}
    with pytest.raises(ValueError, match=r"checkpoint_steps \[61\] lie outside"):
        fit(trainer, model, tiny_images(), mask=mask, checkpoint_steps=[61])
    with pytest.raises(ValueError, match=r"start_step=61 must lie in \[0, steps=60\]"):
        fit(trainer, model, tiny_images(), mask=mask, start_step=61)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name


@pytest.mark.parametrize("trainer", TRAINERS)
def test_checkpoints_are_taken_before_that_steps_update(trainer):
    model = image_mlp(0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    result = fit(trainer, model, tiny_images(), checkpoint_steps=[0, 60])
    assert sorted(result.checkpoints) == [0, 60]
    for name, value in result.checkpoints[0].items():
        assert torch.equal(value, init[name])
        assert torch.equal(result.checkpoints[60][name], model.state_dict()[name])


@pytest.mark.parametrize("trainer", TRAINERS)
def test_parameters_without_requires_grad_never_change(trainer):
    # In the population the bystander's fc1 has requires_grad, so the stacked fc1 needs gradients.
    model = image_mlp(0)
    model.fc1.weight.requires_grad_(False)
    before = model.fc1.weight.detach().clone()
    result = fit(trainer, model, tiny_images(), CFG.replace(weight_decay=0.1))
    assert torch.equal(model.fc1.weight, before)
    assert not torch.equal(model.fc2.weight, image_mlp(0).fc2.weight)
    assert not result.diverged
