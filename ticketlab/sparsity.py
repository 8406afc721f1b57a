"""Does sparsity make a network faster? Timing machinery for honest answers.

Pruning in every lottery-ticket codebase (and in ``torch.nn.utils.prune``) multiplies weights by a
mask: the zeros are still stored and still multiplied, so a 90 %-sparse network does exactly the
work of the dense one. Real speed needs a *sparse format*, which stores only the kept weights plus
their positions, and a kernel that uses it. This module builds the same pruned layer in each
format and times them side by side:

* ``dense``: the full, unpruned weight (the baseline every speedup is measured against);
* ``masked-dense``: the pruned weight ``weight * mask``, zeros included, in ordinary dense storage;
* ``csr``: compressed sparse rows (``Tensor.to_sparse_csr()``): per row, the column index and value
  of each kept weight;
* ``coo``: coordinate format (``Tensor.to_sparse()``): a (row, column) pair and value per kept
  weight;
* ``2:4`` (CUDA, compute capability ≥ 8.0 only): semi-structured sparsity
  (``torch.sparse.to_sparse_semi_structured``), at most 2 kept weights in every group of 4
  consecutive inputs, in float16, run by the sparse tensor cores of Ampere and newer GPUs;
  ``dense-fp16`` (the unpruned weight in float16) is its fair baseline.

How timings are made robust (``time_variants``). A loaded machine runs slower at some moments than
at others. Timing variant A for a while and then variant B lets that drift masquerade as a speed
difference. Instead, every *repeat* runs all variants back to back, so within a repeat they see
nearly the same machine, and the ratio ``seconds(dense) / seconds(variant)`` is stable even when
the absolute seconds are not. The order changes from repeat to repeat (A B C, C B A, B C A, A C B,
...: rotated every second repeat, reversed every other one), so each variant runs equally often
early and late and after each neighbour (caches remember who ran last). We report per variant the
median seconds, their interquartile range, and the *median over repeats of the per-repeat ratio*
to dense (``summarize``). Each measurement calls the function ``number`` times in a loop
(calibrated so one measurement lasts at least ``min_time``) and divides, because one call of a
small layer takes microseconds, near the clock's resolution.

Which clock. On a CPU with one PyTorch thread (the benchmark's default), the clock is the thread's
own CPU time (``time.thread_time``): it stops while the operating system runs other programs, so
the numbers stay meaningful on a shared, busy machine, where wall-clock ratios can be off by
several times. Otherwise (several threads, or a GPU) it is the wall clock (``time.perf_counter``).

On a GPU, kernels run asynchronously: ``time_call`` synchronizes the device before starting and
after stopping the clock, so the time covers the work, not just its launch.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import prune
from .config import device as pick_device
from .config import generator
from .masks import Mask
from .models import init_

__all__ = [
    "LENET_WIDTHS",
    "UNPRUNED",
    "VARIANTS",
    "check_equal",
    "default_timer",
    "inference_benchmark",
    "is_semi_structured",
    "mlp",
    "network_variants",
    "num_threads",
    "run_order",
    "semi_structured_mask",
    "semi_structured_support",
    "sparse_linear_variants",
    "storage_bytes",
    "summarize",
    "time_call",
    "time_variants",
]

VARIANTS = ("dense", "masked-dense", "csr", "coo", "dense-fp16", "2:4")
"""Every variant name, in display order (the last two only on GPUs with 2:4 support)."""

UNPRUNED = ("dense", "dense-fp16")
"""Variants that compute the unpruned layer; all others compute the pruned one."""

LENET_WIDTHS = (784, 300, 100, 10)
"""Layer widths of LeNet-300-100, the fully connected network of the labs."""

_HALF = (torch.float16, torch.bfloat16)
# 2:4 kernels need both matrix dimensions to be multiples of a block size (32 × 64 for CUTLASS
# float16, 16 × 16 for cuSPARSELt); padding every width to a multiple of 64 satisfies both.
_SEMI_PAD = 64


# -- timing ----------------------------------------------------------------------------------------


def _synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits until ``device`` has finished its queued work (no-op on CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def default_timer(device: str | torch.device | None = "cpu") -> Callable[[], float]:
    """The clock ``time_call`` uses: thread CPU time on a CPU running one PyTorch thread, else
    the wall clock (module docstring)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    return time.perf_counter


def time_call(
    fn: Callable[[], Any],
    *,
    repeats: int = 5,
    warmup: int = 1,
    number: int = 1,
    device: str | torch.device | None = "cpu",
    timer: Callable[[], float] | None = None,
) -> list[float]:
    """Seconds per call of ``fn()``, one value per repeat (a list of ``repeats`` floats).

    ``fn`` is first called ``warmup`` times untimed (first calls pay for allocation, kernel
    selection and caches). Each repeat then calls it ``number`` times in a row and reports the
    elapsed time divided by ``number``. On CUDA/MPS the device is synchronized before the clock
    starts and before it stops. ``timer`` is the clock in seconds (default ``default_timer``);
    tests pass a fake one.
    """
    if repeats < 1 or number < 1 or warmup < 0:
        raise ValueError(
            f"need repeats >= 1, number >= 1 and warmup >= 0; got repeats={repeats}, "
            f"number={number}, warmup={warmup}"
        )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    sync = _synchronizer(dev)
    timer = default_timer(dev) if timer is None else timer
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        sync()
        start = timer()
        for _ in range(number):
            fn()
        sync()
        seconds.append((timer() - start) / number)
    return seconds


def run_order(names: Sequence[str], repeat: int) -> list[str]:
    """The order in which ``time_variants`` runs ``names`` in repeat number ``repeat``.

    Rotated by one every second repeat and reversed on odd repeats: over 2·len(names) repeats,
    every name runs in every position equally often, and after each of its neighbours.
    """
    names = list(names)
    shift = (repeat // 2) % len(names)
    rotated = names[shift:] + names[:shift]
    return rotated[::-1] if repeat % 2 else rotated


def time_variants(
    calls: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 5,
    warmup: int = 1,
    number: int | Mapping[str, int] | None = None,
    min_time: float = 5e-3,
    max_number: int = 1000,
    device: str | torch.device | None = "cpu",
    timer: Callable[[], float] | None = None,
) -> pd.DataFrame:
    """Time several functions interleaved; a tidy table, one row per (repeat, variant).

    After ``warmup`` untimed calls of each function, every repeat runs each function of ``calls``
    once (one untimed call, then one measurement of ``number`` calls, see ``time_call``) in the
    order ``run_order`` gives, so drift of the machine hits all variants alike (module
    docstring). ``number`` is per
    variant: given, or calibrated from one timed call so a measurement lasts at least
    ``min_time`` seconds (at most ``max_number`` calls).

    Returns columns repeat (0…repeats−1), position (its place in that repeat's order), variant,
    seconds (per call), number.
    """
    if not calls:
        raise ValueError("time_variants needs at least one function to time")
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    if number is None:
        counts = {}
        for name in names:
            once = time_call(calls[name], repeats=1, warmup=0, device=device, timer=timer)[0]
            counts[name] = min(max_number, max(1, math.ceil(min_time / max(once, 1e-9))))
    elif isinstance(number, Mapping):
        counts = {name: int(number[name]) for name in names}
    else:
        counts = dict.fromkeys(names, int(number))
    rows = []
    for rep in range(repeats):
        for position, name in enumerate(run_order(names, rep)):
            # One untimed call first: the variant before may have evicted this one's weights
            # from the caches, and that reload would otherwise count against it.
            (seconds,) = time_call(
                calls[name], repeats=1, warmup=1, number=counts[name], device=device, timer=timer
            )
            rows.append({"repeat": rep, "position": position, "variant": name,
                         "seconds": seconds, "number": counts[name]})  # fmt: skip
    return pd.DataFrame(rows)


def summarize(timings: pd.DataFrame, baseline: str = "dense") -> pd.DataFrame:
    """Per variant: seconds_median, seconds_iqr and speedup_vs_dense (one row per variant).

    ``timings`` is ``time_variants``' table. ``speedup_vs_dense`` is the median over repeats of
    ``seconds(baseline) / seconds(variant)`` taken *within* each repeat (> 1: faster than the
    baseline). The IQR is the 75th minus the 25th percentile of the seconds.
    """
    if baseline not in set(timings["variant"]):
        raise ValueError(
            f"the baseline {baseline!r} was not timed; variants: {sorted(set(timings['variant']))}"
        )
    wide = timings.pivot(index="repeat", columns="variant", values="seconds")
    ratios = wide.rdiv(wide[baseline], axis=0)
    order = list(dict.fromkeys(timings["variant"]))
    return pd.DataFrame(
        {
            "variant": order,
            "seconds_median": [wide[v].median() for v in order],
            "seconds_iqr": [wide[v].quantile(0.75) - wide[v].quantile(0.25) for v in order],
            "speedup_vs_dense": [ratios[v].median() for v in order],
        }
    )


# -- storage ---------------------------------------------------------------------------------------


def storage_bytes(tensor: Tensor) -> int:
    """Bytes needed to store ``tensor``'s data in its format (shape metadata not counted).

    Dense (strided): numel × element size, zeros included. COO: the (2, nnz) index tensor plus
    nnz values. CSR: row pointers (rows + 1), column indices (nnz) and values (nnz). 2:4
    semi-structured: the compressed values plus the metadata that says where they sit.
    """
    if isinstance(tensor, torch.sparse.SparseSemiStructuredTensor):
        parts = (getattr(tensor, attr, None) for attr in ("packed", "meta", "packed_t", "meta_t"))
        return sum(_nbytes(p) for p in parts if p is not None)
    if tensor.layout == torch.sparse_coo:
        return _nbytes(tensor._indices()) + _nbytes(tensor._values())
    if tensor.layout == torch.sparse_csr:
        return sum(_nbytes(t) for t in (tensor.crow_indices(), tensor.col_indices(),
                                        tensor.values()))  # fmt: skip
    if tensor.layout == torch.strided:
        return _nbytes(tensor)
    raise TypeError(f"storage_bytes does not know the layout {tensor.layout}")


def _nbytes(tensor: Tensor) -> int:
    return tensor.numel() * tensor.element_size()


# -- 2:4 semi-structured sparsity ------------------------------------------------------------------


def semi_structured_support(device: str | torch.device | None = None) -> str | None:
    """``None`` when 2:4 sparse matmuls can run on ``device``; otherwise the reason, in words."""
    dev = pick_device(device)
    if dev.type != "cuda":
        return (
            f"2:4 semi-structured sparsity needs an NVIDIA GPU with compute capability >= 8.0 "
            f"(Ampere or newer); this run is on {dev.type}"
        )
    major, minor = torch.cuda.get_device_capability(dev)
    if major < 8:
        return (
            f"2:4 semi-structured sparsity needs compute capability >= 8.0 (Ampere or newer); "
            f"{torch.cuda.get_device_name(dev)} has {major}.{minor}"
        )
    if not hasattr(torch.sparse, "to_sparse_semi_structured"):
        return f"PyTorch {torch.__version__} lacks torch.sparse.to_sparse_semi_structured (>= 2.1)"
    return None


def semi_structured_mask(weight: Tensor) -> Tensor:
    """The 2:4 magnitude mask of a (out, in) weight: in every group of 4 consecutive inputs of a
    row, keep the 2 largest in absolute value. A bool tensor, weight's shape and device;
    ``in`` must be a multiple of 4."""
    out_features, in_features = _check_weight(weight)
    if in_features % 4:
        raise ValueError(
            f"2:4 sparsity groups inputs by 4, but the weight has {in_features} inputs; "
            "pad the layer to a multiple of 4 inputs"
        )
    groups = weight.detach().abs().reshape(out_features, in_features // 4, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(2, dim=-1).indices, True)
    return keep.reshape(out_features, in_features)


def is_semi_structured(mask: Tensor) -> bool:
    """Whether a (out, in) mask keeps at most 2 of every 4 consecutive inputs in each row."""
    out_features, in_features = mask.shape
    if in_features % 4:
        return False
    return bool((mask.reshape(out_features, -1, 4).sum(-1) <= 2).all())


class _SemiStructuredLinear:
    """``F.linear`` with a 2:4-compressed float16 weight, padded with zero rows and columns to
    widths the kernels accept; inputs are cast and padded, outputs sliced back (a view)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, convert: Callable[[Tensor], Tensor]):
        out_features, in_features = weight.shape
        out_pad = -out_features % _SEMI_PAD
        self.in_padded = in_features + (-in_features % _SEMI_PAD)
        padded = F.pad(weight.detach(), (0, self.in_padded - in_features, 0, out_pad))
        self.weight = convert(padded.to(torch.float16).contiguous())
        self.bias = None if bias is None else F.pad(bias.detach(), (0, out_pad)).half()
        self.out_features = out_features

    def __call__(self, x: Tensor) -> Tensor:
        x = x.to(torch.float16)
        if x.shape[1] < self.in_padded:
            x = F.pad(x, (0, self.in_padded - x.shape[1]))
        return F.linear(x, self.weight, self.bias)[:, : self.out_features]


# -- building the variants -------------------------------------------------------------------------


def _check_weight(weight: Tensor) -> tuple[int, int]:
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise ValueError(
            f"expected a 2-D (out_features, in_features) weight, got "
            f"{getattr(weight, 'shape', type(weight).__name__)}"
        )
    return weight.shape[0], weight.shape[1]


def _sparse_call(sparse: Tensor, bias: Tensor | None) -> Callable[[Tensor], Tensor]:
    """y = x Wᵀ + b with W sparse, computed as (W xᵀ)ᵀ: sparse-times-dense, sparse on the left.

    The result is a transposed view; the next layer's ``x.T`` is then contiguous again, so a chain
    of sparse layers copies its activations only once, at the input.
    """
    column = None if bias is None else bias.detach().reshape(-1, 1)

    def call(x: Tensor) -> Tensor:
        xt = x.T.contiguous()
        if column is None:
            return torch.sparse.mm(sparse, xt).T
        return torch.addmm(column, sparse, xt).T

    return call


def sparse_linear_variants(
    weight: Tensor,
    mask: Tensor,
    bias: Tensor | None = None,
    *,
    semi_structured: bool | None = None,
    notes: dict[str, str] | None = None,
) -> dict[str, Callable[[Tensor], Tensor]]:
    """One linear layer ``y = x Wᵀ + b`` in every storage format; name → callable.

    Args:
        weight: (out_features, in_features) float tensor; ``mask`` a bool tensor of its shape and
            device (True = kept); ``bias`` (out_features,) or None.
        semi_structured: add ``dense-fp16`` and ``2:4`` (``None``: when the device supports 2:4
            and ``mask`` has the 2:4 pattern, see ``is_semi_structured``).
        notes: a dict that receives ``variant → reason`` for each variant this device cannot run
            (the variant is left out instead of failing the whole benchmark).
    Each callable maps x (batch, in_features) on weight's device to (batch, out_features): the
    unpruned layer for ``UNPRUNED`` variants, the pruned one for the others (``2:4`` and
    ``dense-fp16`` return float16). Sparse formats are built once, here, not per call.
    """
    _check_weight(weight)
    if not isinstance(mask, Tensor) or mask.shape != weight.shape or mask.device != weight.device:
        raise ValueError(
            f"mask must be a tensor of the weight's shape {tuple(weight.shape)} on "
            f"{weight.device}; got {getattr(mask, 'shape', type(mask).__name__)}"
        )
    weight = weight.detach()
    bias = None if bias is None else bias.detach()
    pruned = weight * mask.to(weight.dtype)
    calls: dict[str, Callable[[Tensor], Tensor]] = {
        "dense": lambda x: F.linear(x, weight, bias),
        "masked-dense": lambda x: F.linear(x, pruned, bias),
    }
    builders: dict[str, Callable[[], Callable[[Tensor], Tensor]]] = {
        "csr": lambda: _sparse_call(pruned.to_sparse_csr(), bias),
        "coo": lambda: _sparse_call(pruned.to_sparse(), bias),
    }
    reason = semi_structured_support(weight.device)
    if semi_structured is None:
        semi_structured = reason is None and is_semi_structured(mask)
    if semi_structured:
        if not is_semi_structured(mask):
            raise ValueError(
                "semi_structured=True needs a 2:4 mask (at most 2 kept in every 4 consecutive "
                "inputs); build one with semi_structured_mask(weight)"
            )
        half_weight = weight.half()
        half_bias = None if bias is None else bias.half()
        calls["dense-fp16"] = lambda x: F.linear(x.half(), half_weight, half_bias)
        if reason is not None:
            _note(notes, "2:4", reason)
        else:
            convert = torch.sparse.to_sparse_semi_structured
            builders["2:4"] = lambda: _SemiStructuredLinear(pruned, bias, convert)
    for name, build in builders.items():
        try:
            calls[name] = build()
        except (RuntimeError, NotImplementedError, TypeError) as err:
            _note(notes, name, f"{name} is not available on {weight.device}: {err}")
    return calls


def _note(notes: dict[str, str] | None, name: str, reason: str) -> None:
    if notes is not None:
        notes[name] = reason


def network_variants(
    model: nn.Sequential,
    mask: Mask,
    *,
    semi_structured: bool | None = None,
    notes: dict[str, str] | None = None,
) -> dict[str, Callable[[Tensor], Tensor]]:
    """A whole MLP (``nn.Sequential`` of Flatten, Linear and ReLU) in every storage format.

    Every Linear weight named in ``mask`` gets the variants of ``sparse_linear_variants`` (a
    Linear whose weight is not in the mask counts as unpruned); a variant is kept only if every
    layer has it. Returns name → callable mapping the model's input (batch, ...) to its logits
    (batch, classes), in the variant's dtype.
    """
    per_layer: list[Any] = []
    for module_name, module in model.named_children():
        if isinstance(module, nn.Linear):
            name = f"{module_name}.weight"
            keep = mask[name] if name in mask else torch.ones_like(module.weight, dtype=torch.bool)
            variants = sparse_linear_variants(
                module.weight, keep, module.bias, semi_structured=semi_structured, notes=notes
            )
            per_layer.append(variants)
        elif isinstance(module, nn.ReLU):
            per_layer.append(torch.relu)
        elif isinstance(module, nn.Flatten):
            per_layer.append(lambda x: x.flatten(1))
        else:
            raise TypeError(
                f"network_variants handles Flatten, Linear and ReLU layers only; "
                f"{module_name!r} is a {type(module).__name__}. Time such layers one at a time "
                "with sparse_linear_variants."
            )
    layer_dicts = [step for step in per_layer if isinstance(step, dict)]
    if not layer_dicts:
        raise ValueError("the model has no Linear layer to time")
    names = [n for n in VARIANTS if all(n in step for step in layer_dicts)]

    def chain(name: str) -> Callable[[Tensor], Tensor]:
        steps = [step[name] if isinstance(step, dict) else step for step in per_layer]

        def forward(x: Tensor) -> Tensor:
            for step in steps:
                x = step(x)
            return x

        return forward

    return {name: chain(name) for name in names}


def check_equal(
    variants: Mapping[str, Callable[[Tensor], Tensor]],
    x: Tensor,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    half_tol: float = 2e-2,
) -> None:
    """Raise ``AssertionError`` unless all variants compute the same function on ``x``.

    ``UNPRUNED`` variants are compared with ``variants["dense"](x)``, the others with
    ``variants["masked-dense"](x)``, in float32, within ``torch.allclose(rtol, atol)``; float16
    variants within ``half_tol`` relative to the largest reference value. Correctness first: a
    fast wrong kernel is no result.
    """
    with torch.no_grad():
        references = {"dense": variants["dense"](x).float(),
                      "masked-dense": variants["masked-dense"](x).float()}  # fmt: skip
        for name, call in variants.items():
            expected = references["dense" if name in UNPRUNED else "masked-dense"]
            got = call(x)
            half = got.dtype in _HALF
            if got.shape != expected.shape:
                raise AssertionError(
                    f"variant {name!r} returns shape {tuple(got.shape)}, "
                    f"expected {tuple(expected.shape)}"
                )
            got = got.float()
            if half:
                scale = float(expected.abs().max()) or 1.0
                ok = bool(((got - expected).abs() <= half_tol * scale).all())
            else:
                ok = torch.allclose(got, expected, rtol=rtol, atol=atol)
            if not ok:
                worst = float((got - expected).abs().max())
                raise AssertionError(
                    f"variant {name!r} disagrees with the dense reference: max |difference| "
                    f"{worst:.3g}; its kernel (or the way it was built) is wrong"
                )


# -- the benchmark ---------------------------------------------------------------------------------


def mlp(widths: Sequence[int] = LENET_WIDTHS, seed: int = 0, init: str = "glorot_normal"):
    """A ReLU MLP with layers ``fc1, fc2, …, out`` (``nn.Sequential``), input (batch, widths[0]).

    With the default widths and init its weights equal ``models.lenet_300_100(init, seed)``'s.
    """
    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise ValueError(f"widths must list at least 2 positive layer sizes, got {widths!r}")
    layers: dict[str, nn.Module] = {}
    pairs = list(itertools.pairwise(widths))
    for i, (fan_in, fan_out) in enumerate(pairs, start=1):
        last = i == len(pairs)
        layers["out" if last else f"fc{i}"] = nn.Linear(int(fan_in), int(fan_out))
        if not last:
            layers[f"relu{i}"] = nn.ReLU()
    return init_(nn.Sequential(OrderedDict(layers)), init, seed)


@contextlib.contextmanager
def num_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` PyTorch CPU threads (None: unchanged); restored afterwards.

    >>> with num_threads(1):   # one thread: timings use the thread's CPU clock
    ...     timings = time_variants(calls)
    """
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def inference_benchmark(
    densities: Sequence[float] = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01),
    batch_sizes: Sequence[int] = (1, 60, 1000),
    device: str | torch.device | None = None,
    repeats: int = 5,
    rounds: int = 3,
    seed: int = 0,
    *,
    widths: Sequence[int] = LENET_WIDTHS,
    threads: int | None = 1,
    semi_structured: bool | None = None,
    min_time: float = 5e-3,
    timer: Callable[[], float] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Time inference of a pruned MLP (default LeNet-300-100) in every format; a tidy table.

    For each round r (``seed`` = seed + r: the weights' init and the inputs), each density (the
    fraction of each layer's weights kept, by magnitude, ``prune.one_shot``) and each batch size,
    all variants are checked against each other (``check_equal``) and then timed interleaved
    (``time_variants``, ``repeats`` repeats). When 2:4 is supported (``semi_structured`` None:
    auto), each round adds a group ``structure="2:4"`` at density 0.5 with 2:4 magnitude masks.

    Args:
        threads: CPU threads for the run (restored afterwards); 1 by default, because on a busy
            machine multi-threaded kernels wait for each other and timings become erratic.
            None leaves PyTorch's setting.
        timer: the clock (default ``default_timer``: CPU time of the thread on a one-thread
            CPU run, else wall time); tests pass a fake one.
    Returns one row per (seed, structure, batch, density, variant) with columns device,
    threads, widths, structure ("unstructured" or "2:4"), batch, density, variant, seed,
    seconds_median, seconds_iqr, speedup_vs_dense, memory_bytes (weight storage of all layers),
    flops (2 × multiply-adds the variant performs per batch), repeats. Rows with variant "ideal"
    are the theory: time × density, speedup 1/density, values only (no indices), useful FLOPs.
    ``.attrs["notes"]`` lists variants that could not run here, with the reason.
    """
    from tqdm.auto import tqdm

    densities = [float(d) for d in densities]
    if not densities or any(not 0.0 < d <= 1.0 for d in densities):
        raise ValueError(
            f"densities must be fractions in (0, 1], e.g. 0.1 for 10 %; got {densities}"
        )
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive ints, got {batch_sizes!r}")
    if repeats < 2 or rounds < 1:
        raise ValueError(f"need repeats >= 2 and rounds >= 1, got {repeats} and {rounds}")
    dev = pick_device(device)
    support = semi_structured_support(dev)
    with_semi = support is None if semi_structured is None else semi_structured
    notes: dict[str, str] = {}
    if not with_semi:
        notes["2:4"] = support or "2:4 was switched off (semi_structured=False)"
    groups = [("unstructured", d) for d in densities] + ([("2:4", 0.5)] if with_semi else [])
    context = {"device": str(dev), "widths": "-".join(map(str, widths)), "repeats": repeats}
    rows: list[dict] = []
    bar = tqdm(total=rounds * len(groups), desc="timing", disable=not progress, leave=False)
    with num_threads(threads if dev.type == "cpu" else None), torch.no_grad():
        context["threads"] = torch.get_num_threads() if dev.type == "cpu" else None
        for r in range(rounds):
            model = mlp(widths, seed=seed + r).to(dev)
            gen = generator(seed + r, dev)
            inputs = {int(b): torch.randn(int(b), widths[0], generator=gen, device=dev)
                      for b in batch_sizes}  # fmt: skip
            for structure, density in groups:
                if structure == "2:4":
                    mask = Mask({name: semi_structured_mask(w) for name, w in _linears(model)})
                else:
                    mask = prune.one_shot(model, density)
                variants = network_variants(
                    model, mask, semi_structured=structure == "2:4", notes=notes
                )
                try:
                    check_equal(variants, inputs[min(inputs)])
                except (RuntimeError, NotImplementedError) as err:
                    if structure != "2:4":
                        raise
                    # 2:4 kernels are a prototype API: a kernel that cannot run is a note,
                    # not a failed benchmark (wrong results still raise AssertionError).
                    notes["2:4"] = f"2:4 kernels failed on {dev}: {err}"
                    bar.update()
                    continue
                static = _static_columns(model, mask, variants)
                for batch, x in inputs.items():
                    calls = {name: (lambda f=f, x=x: f(x)) for name, f in variants.items()}
                    timings = time_variants(
                        calls, repeats=repeats, min_time=min_time, device=dev, timer=timer
                    )
                    where = {**context, "structure": structure, "batch": batch,
                             "density": density, "seed": seed + r}  # fmt: skip
                    rows += _rows(summarize(timings), static, where)
                bar.update()
    bar.close()
    table = pd.DataFrame(rows, columns=_COLUMNS)
    table.attrs["notes"] = notes
    return table


def _rows(summary: pd.DataFrame, static: dict, where: dict) -> list[dict]:
    """The table rows of one timed group: one per variant, plus the "ideal" row."""
    batch = where["batch"]
    rows = [
        {**where, **record, "memory_bytes": static[record["variant"]]["memory_bytes"],
         "flops": static[record["variant"]]["flops_per_example"] * batch}
        for record in summary.to_dict("records")
    ]  # fmt: skip
    ideal = static["ideal"]
    dense_seconds = summary.set_index("variant").loc["dense", "seconds_median"]
    rows.append({**where, "variant": "ideal", "seconds_median": dense_seconds * ideal["density"],
                 "seconds_iqr": float("nan"), "speedup_vs_dense": 1.0 / ideal["density"],
                 "memory_bytes": ideal["memory_bytes"],
                 "flops": ideal["flops_per_example"] * batch})  # fmt: skip
    return rows


_COLUMNS = ["device", "threads", "widths", "structure", "batch", "density", "variant", "seed",
            "seconds_median", "seconds_iqr", "speedup_vs_dense", "memory_bytes", "flops",
            "repeats"]  # fmt: skip


def _linears(model: nn.Sequential) -> list[tuple[str, Tensor]]:
    """(parameter name, detached weight) of each Linear child, in order."""
    return [(f"{name}.weight", module.weight.detach()) for name, module in model.named_children()
            if isinstance(module, nn.Linear)]  # fmt: skip


def _static_columns(model: nn.Sequential, mask: Mask, variants: Mapping[str, Any]) -> dict:
    """Per variant: bytes of weight storage and 2 × multiply-adds per example, over all layers.

    Sparse variants are measured on the actual sparse tensors they would build; "ideal" counts only
    the kept values (no indices) and the FLOPs of the kept weights.
    """
    linears = _linears(model)
    out: dict[str, dict[str, float]] = {}
    total = sum(w.numel() for _, w in linears)
    kept_of = {name: (mask[name] if name in mask else torch.ones_like(w, dtype=torch.bool))
               for name, w in linears}  # fmt: skip
    kept = sum(int(k.sum()) for k in kept_of.values())
    pruned = [w * kept_of[name] for name, w in linears]
    itemsize = linears[0][1].element_size()
    for name in variants:
        if name in ("dense", "masked-dense"):
            memory, flops = total * itemsize, 2 * total
        elif name == "dense-fp16":
            memory, flops = total * 2, 2 * total
        elif name == "csr":
            memory, flops = sum(storage_bytes(p.to_sparse_csr()) for p in pruned), 2 * kept
        elif name == "coo":
            memory, flops = sum(storage_bytes(p.to_sparse()) for p in pruned), 2 * kept
        else:  # 2:4: the padded weight, half of it stored and multiplied
            layers = [_SemiStructuredLinear(p, None, torch.sparse.to_sparse_semi_structured)
                      for p in pruned]  # fmt: skip
            memory = sum(storage_bytes(layer.weight) for layer in layers)
            flops = sum(layer.weight.shape[0] * layer.weight.shape[1] for layer in layers)
        out[name] = {"memory_bytes": memory, "flops_per_example": flops}
    out["ideal"] = {"memory_bytes": kept * itemsize, "flops_per_example": 2 * kept,
                    "density": kept / total}  # fmt: skip
    return out
