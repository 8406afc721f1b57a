"""Experiments that answer a paper's claim, each returning ``.table`` and ``.verdicts``.

Every experiment's claims are pre-registered in code (``CLAIMS`` in its module, with citations)
and evaluated on the experiment's own tidy table; see ``ticketlab.verdict``.
"""

from __future__ import annotations

from ._result import ExperimentResult
from .batchnorm import batchnorm_only
from .hardware import sparsity_speed
from .instability import instability
from .pruning_at_init import pruning_at_init
from .rewinding import rewinding_vs_finetuning
from .supermask import supermask
from .xor import xor_tickets

__all__ = [
    "ExperimentResult",
    "batchnorm_only",
    "instability",
    "pruning_at_init",
    "rewinding_vs_finetuning",
    "sparsity_speed",
    "supermask",
    "xor_tickets",
]
