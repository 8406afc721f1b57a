"""Rewinding and the controls that make a lottery ticket falsifiable.

A *ticket* is a mask plus the weights the survivors are reset to: the original initialization
(Frankle & Carbin 2019) or the weights at an early step k (Frankle et al. 2020, "rewinding").
``train(..., checkpoint_steps=[k])`` captures step k; ``rewind`` restores it exactly.

Each control changes one ingredient of the ticket and keeps the rest:

==============  ========================================  ====================================
kind            mask                                      weights
==============  ========================================  ====================================
``"reinit"``    the ticket's                              a fresh random initialization
``"random"``    random, same per-layer counts             the ticket's (rewound)
``"shuffled"``  the ticket's, permuted within each layer  the ticket's (rewound)
``"sign"``      the ticket's                              fresh magnitudes, the ticket's signs
==============  ========================================  ====================================

After rewinding, training resumes at step k (``train(..., start_step=k)``): the learning-rate
schedule and data order continue from step k, and the optimizer starts fresh (zero moments), as in
open_lth.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn

from . import prune
from .masks import Mask
from .models import init_

__all__ = ["CONTROLS", "control", "rewind"]

CONTROLS = ("reinit", "random", "shuffled", "sign")


def rewind(model: nn.Module, checkpoint: Mapping[str, torch.Tensor], mask: Mask | None = None):
    """Reset ``model`` in place to ``checkpoint`` (a ``state_dict``), zero the pruned weights, and
    return it. Values are copied, so later training never writes into ``checkpoint``."""
    state = model.state_dict()
    missing = set(state) ^ set(checkpoint)
    if missing:
        raise ValueError(
            f"checkpoint does not fit the model: names differ in {sorted(missing)}; "
            "rewind to a checkpoint taken from the same architecture"
        )
    # copy_ broadcasts, so a smaller layer of the same name would otherwise fill it silently.
    wrong = [n for n, v in state.items() if v.shape != checkpoint[n].shape]
    if wrong:
        raise ValueError(
            f"checkpoint does not fit the model: shapes differ for {wrong}; "
            "rewind to a checkpoint taken from the same architecture"
        )
    with torch.no_grad():
        for name, value in state.items():
            value.copy_(checkpoint[name])
    if mask is not None:
        mask.apply(model)
    return model


def control(
    kind: str, model: nn.Module, mask: Mask, seed: int, init: str = "glorot_normal"
) -> tuple[nn.Module, Mask]:
    """The ``kind`` control of the ticket (``model`` at its rewind point, ``mask``).

    Pass ``model`` rewound *without* the mask: random and shuffled masks keep weights the ticket
    pruned, and those must start from their rewind-point values, not from zero.
    Returns a new (model, mask) pair ready to train; the inputs are not modified. ``seed`` drives
    every random choice (fresh weights, random or shuffled masks); ``init`` is the scheme of fresh
    weights. See the module docstring for what each kind keeps and changes.
    """
    if kind not in CONTROLS:
        raise ValueError(f"unknown control {kind!r}; choose one of {CONTROLS}")
    new = copy.deepcopy(model)
    if kind == "random":
        new_mask = prune.random(mask, seed=seed)
    elif kind == "shuffled":
        new_mask = prune.shuffle(mask, seed=seed)
    else:
        new_mask = mask
        fresh = init_(copy.deepcopy(model), init, seed)
        with torch.no_grad():
            originals = dict(model.named_parameters())
            for name, p in new.named_parameters():
                drawn = dict(fresh.named_parameters())[name]
                if kind == "reinit":
                    p.copy_(drawn)
                elif name in mask:
                    p.copy_(drawn.abs() * torch.sign(originals[name]))
    new_mask.apply(new)
    return new, new_mask
