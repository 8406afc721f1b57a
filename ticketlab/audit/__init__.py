"""The robustness audit: is an outcome a notebook checks the same on every machine?

Floats differ between machines (BLAS kernels, vector widths, thread counts) and training amplifies
last-digit differences, so an outcome that sits near its decision rule can flip from one CPU to
another. Before a notebook may check an outcome (``# NBVAL_CHECK_OUTPUT``), the audit reruns the
experiment behind it under the perturbations another machine would bring (``VARIANTS``):

* **threads**: 1 and 2 (``torch.set_num_threads``): a matrix product splits its sums over threads
  differently, which changes their rounding;
* **seeds**: three disjoint seed sets of the size the notebook uses: the notebook's own (at 1 and
  2 threads), and the same seeds shifted by 100,000 and by 200,000 (at 1 thread; at 2 threads
  as extra variants, ``--all-variants``);
* **rounding**: every initial weight multiplied by ``1 + 1e-6·ε`` (ε standard normal,
  ``models.perturbed_init``).

Why the last one is a fair proxy for "another CPU's rounding": another BLAS kernel or vector width
changes results by a few units in the last place of float32 (relative ~1e-7) in the very first
forward and backward pass, and training then amplifies that difference until two runs differ as
much as any two nearby starting points would. A relative perturbation of 1e-6 (about ten units in
the last place) injects a difference of that size at the start, where the amplification begins; it
is small enough to leave the experiment unchanged in every respect a person would name (same
seeds, same data order, same architecture) and large enough not to be rounded away. It cannot
reproduce another machine exactly, but it samples the same thing: the spread of outcomes that
last-digit noise alone produces. The thread variants add a second, real source of such noise.
It passed one test it was not built for: the only failure reported from another CPU (an AMD EPYC:
notebook 07's "subsets of 3, 4 and 5 LeNet seeds reach different verdicts" came out False there)
is exactly what the perturbed run found on this machine.

An outcome is **robust** when every variant reaches it, **fragile** otherwise. Only robust outcomes
may be output-checked (``tests/test_robustness.py`` enforces it); fragile ones are shown and
discussed. Run it with ``./workbook audit`` (``python -m ticketlab.audit --help``): each
(notebook, mode, variant) runs in a fresh process with its own result cache and thread count, its
outcomes are stored under ``artifacts/audit/``, and finished ones are reused (resume) unless the
code changed. It then rewrites ``notebooks/ROBUSTNESS.md`` and ``ticketlab/robustness.json``,
which notebooks read through ``report`` and ``show_checked``.
"""

from __future__ import annotations

from .checks import CHECKS, VARIANTS, Check, Variant, check, required_variants
from .lookup import explanation, findings, report, show_checked
from .rules import notebook_problems

__all__ = [
    "CHECKS",
    "VARIANTS",
    "Check",
    "Variant",
    "check",
    "explanation",
    "findings",
    "notebook_problems",
    "report",
    "required_variants",
    "show_checked",
]
