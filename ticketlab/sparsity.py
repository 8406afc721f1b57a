"""Sparse storage formats and their kernels: the same pruned layer stored each way, checked equal.

Pruning in every lottery-ticket codebase (and in ``torch.nn.utils.prune``) multiplies weights by a
mask: the zeros are still stored and still multiplied, so a 90 %-sparse network does exactly the
work of the dense one. Real speed needs a *sparse format*, which stores only the kept weights plus
their positions, and a kernel that uses it. This module builds the same pruned layer (or whole
MLP) in each format, as callables that compute it:

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

It also says what each format costs: bytes of storage (``storage_bytes``) and multiply-adds
(``layer_costs``). Timing them is ``ticketlab.timing``'s job; the experiment that times LeNet in
every format is ``experiments.hardware``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import device as pick_device
from .masks import Mask

__all__ = [
    "UNPRUNED",
    "VARIANTS",
    "check_equal",
    "is_semi_structured",
    "layer_costs",
    "network_variants",
    "semi_structured_mask",
    "semi_structured_support",
    "sparse_linear_variants",
    "storage_bytes",
]

VARIANTS = ("dense", "masked-dense", "csr", "coo", "dense-fp16", "2:4")
"""Every variant name, in display order (the last two only on GPUs with 2:4 support)."""

UNPRUNED = ("dense", "dense-fp16")
"""Variants that compute the unpruned layer; all others compute the pruned one."""

_HALF = (torch.float16, torch.bfloat16)
# 2:4 kernels need both matrix dimensions to be multiples of a block size (32 × 64 for CUTLASS
# float16, 16 × 16 for cuSPARSELt); padding every width to a multiple of 64 satisfies both.
_SEMI_PAD = 64


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


def layer_costs(
    weight: Tensor, mask: Tensor, variants: Iterable[str]
) -> dict[str, tuple[int, int]]:
    """Per variant: (bytes of weight storage, FLOPs per example) of one (out, in) layer.

    ``mask`` is a bool tensor of the weight's shape (True = kept). FLOPs are 2 × the
    multiply-adds the variant's kernel performs for one input row: every weight for the dense
    variants, the kept ones for CSR and COO, and half of the padded weight for 2:4 (its kernel
    multiplies 2 of every 4). Bytes are ``storage_bytes`` of the format the variant builds; the
    2:4 format can be built only where ``semi_structured_support`` is None. Biases not counted.
    """
    weight = weight.detach()
    pruned = weight * mask.to(weight.dtype)
    total, kept = weight.numel(), int(mask.sum())
    costs = {}
    for name in variants:
        if name in ("dense", "masked-dense"):
            costs[name] = (total * weight.element_size(), 2 * total)
        elif name == "dense-fp16":
            costs[name] = (total * 2, 2 * total)
        elif name == "csr":
            costs[name] = (storage_bytes(pruned.to_sparse_csr()), 2 * kept)
        elif name == "coo":
            costs[name] = (storage_bytes(pruned.to_sparse()), 2 * kept)
        elif name == "2:4":
            convert = torch.sparse.to_sparse_semi_structured
            compressed = _SemiStructuredLinear(pruned, None, convert).weight
            rows, cols = compressed.shape  # padded; 2 × (half of rows × cols) multiply-adds
            costs[name] = (storage_bytes(compressed), rows * cols)
        else:
            raise ValueError(f"unknown variant {name!r}; the variants are {VARIANTS}")
    return costs


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
