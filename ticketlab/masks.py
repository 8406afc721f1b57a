"""Which weights a sparse network keeps: the ``Mask``.

A mask maps parameter names (``"fc1.weight"``) to bool tensors of the parameter's shape and
device: ``True`` = kept, ``False`` = pruned. It is immutable: pruning (``ticketlab.prune``) returns
new masks, so the masks of every round of an experiment can be kept side by side and compared.

    >>> mask = Mask.ones(model)                  # nothing pruned yet
    >>> mask = prune.magnitude(model, mask, 0.2)  # a new mask, 20% fewer weights
    >>> mask.apply(model)                         # zero the pruned weights in place
    >>> mask.report()                             # one row per layer: layer, total, kept, density

Counting kept weights (``kept``, ``density``, ``report()``, ``repr``) reads numbers from the
device; ``kept_per_layer()`` gives the counts as device tensors, for code that must not wait.
"""

from __future__ import annotations

import hashlib
import html
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:  # pandas loads on first use: a mask's report is not on the training path
    import pandas as pd

from .atomic import atomic_file
from .models import prunable_names

__all__ = ["Mask", "MaskError", "as_mask"]

_FORMAT = "ticketlab.Mask"
_VERSION = 1
# Bit i of a packed byte (most significant first) holds element 8·k + i of the flattened mask.
_BIT_VALUES = (128, 64, 32, 16, 8, 4, 2, 1)


class MaskError(ValueError):
    """A mask does not fit a model, or a mask file cannot be read."""


def _percent(fraction: float) -> str:
    """13.4% — with one more decimal below 1%, where extreme sparsity lives."""
    return f"{fraction:.1%}" if fraction >= 0.01 or fraction == 0 else f"{fraction:.2%}"


class Mask(Mapping[str, Tensor]):
    """An immutable mapping parameter name → bool tensor (True = weight kept).

    Construction copies the tensors, so later changes to the caller's tensors cannot reach the
    mask. Tensors with values 0/1 of any dtype are converted to bool; anything else is an error.
    Iteration follows insertion order (for ``Mask.ones``: the model's parameter order). The
    tensors returned by ``mask[name]`` are the mask's own: read them, don't modify them.
    """

    __slots__ = ("_tensors",)

    def __init__(self, tensors: Mapping[str, Tensor]) -> None:
        if not isinstance(tensors, Mapping):
            raise TypeError(
                f"Mask takes a mapping name → bool tensor, got {type(tensors).__name__}; "
                "e.g. Mask({'fc1.weight': weight != 0})"
            )
        owned: dict[str, Tensor] = {}
        for name, value in tensors.items():
            if not isinstance(name, str):
                raise TypeError(f"mask names must be parameter names (str), got {name!r}")
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"mask entry {name!r} must be a torch.Tensor, got {type(value).__name__}"
                )
            value = value.detach()
            if value.dtype != torch.bool:
                if not ((value == 0) | (value == 1)).all():
                    raise MaskError(
                        f"mask entry {name!r} has values other than 0 and 1; "
                        "pass a bool tensor (True = keep), e.g. weight != 0"
                    )
                value = value != 0
            owned[name] = value.clone()
        self._tensors = self._check_nonempty(owned)

    @staticmethod
    def _check_nonempty(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        if not tensors:
            raise MaskError("a mask needs at least one tensor; build one with Mask.ones(model)")
        for name, value in tensors.items():
            if value.numel() == 0:
                raise MaskError(f"mask entry {name!r} is empty (shape {tuple(value.shape)})")
        return tensors

    @classmethod
    def _wrap(cls, tensors: dict[str, Tensor]) -> Mask:
        """A mask around bool tensors no caller holds (fresh, or another mask's): no copy, no
        host-side checks."""
        mask = object.__new__(cls)
        mask._tensors = tensors
        return mask

    @classmethod
    def ones(cls, model: nn.Module, names: list[str] | None = None) -> Mask:
        """Keep everything: all-True tensors for ``names`` (default: ``prunable_names(model)``,
        the Linear and Conv weights), on each parameter's device."""
        params = dict(model.named_parameters())
        names = prunable_names(model) if names is None else list(names)
        unknown = [n for n in names if n not in params]
        if unknown:
            raise MaskError(
                f"the model has no parameter(s) {unknown}; valid names are {list(params)}"
            )
        ones = {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}
        return cls._wrap(cls._check_nonempty(ones))

    # -- the Mapping protocol -------------------------------------------------------------------

    def __getitem__(self, name: str) -> Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    # -- checking a mask against a model -------------------------------------------------------

    def validate(self, model: nn.Module) -> None:
        """Raise ``MaskError`` naming the parameter unless every entry fits ``model``: the name is
        one of its parameters, a floating-point one, with the same shape and device.

        A mask may cover only some parameters; the others are simply never pruned.
        """
        params = dict(model.named_parameters())
        for name, keep in self._tensors.items():
            if name not in params:
                raise MaskError(
                    f"the mask has an entry for {name!r} but the model has no such parameter; "
                    f"its parameters are {list(params)}. Build masks for this model with "
                    "Mask.ones(model)"
                )
            param = params[name]
            if keep.shape != param.shape:
                raise MaskError(
                    f"the mask for {name!r} has shape {tuple(keep.shape)} but the parameter has "
                    f"shape {tuple(param.shape)}; was the mask made for a different model?"
                )
            if keep.device != param.device:
                raise MaskError(
                    f"the mask for {name!r} is on {keep.device} but the parameter is on "
                    f"{param.device}; move the mask with mask.to({str(param.device)!r})"
                )
            if not param.is_floating_point():
                raise MaskError(
                    f"parameter {name!r} has dtype {param.dtype}; only floating-point "
                    "parameters can be pruned"
                )

    def apply(self, model: nn.Module) -> nn.Module:
        """Set the pruned weights of ``model`` to exactly 0.0, in place; return ``model``."""
        self.validate(model)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, keep in self._tensors.items():
                params[name].masked_fill_(~keep, 0.0)
        return model

    # -- counting --------------------------------------------------------------------------------

    def kept_per_layer(self) -> dict[str, Tensor]:
        """Kept weights per layer as 0-d int64 tensors on the mask's device (no host sync)."""
        return {name: keep.sum() for name, keep in self._tensors.items()}

    def _kept_counts(self) -> list[int]:
        """Kept weights per layer as ints, with a single device → host transfer."""
        counts = list(self.kept_per_layer().values())
        return torch.stack([c.to(counts[0].device) for c in counts]).tolist()

    @property
    def total(self) -> int:
        """Number of weights the mask covers (kept or pruned)."""
        return sum(keep.numel() for keep in self._tensors.values())

    @property
    def kept(self) -> int:
        """Number of weights kept."""
        return sum(self._kept_counts())

    @property
    def density(self) -> float:
        """Fraction of weights kept, kept / total, in [0, 1]."""
        return self.kept / self.total

    def densities(self) -> dict[str, float]:
        """Fraction of weights kept, per layer."""
        return {
            name: kept / keep.numel()
            for (name, keep), kept in zip(self._tensors.items(), self._kept_counts(), strict=True)
        }

    def report(self) -> pd.DataFrame:
        """One row per layer: layer (name), total, kept (ints) and density (kept / total)."""
        rows = [
            (name, keep.numel(), kept, kept / keep.numel())
            for (name, keep), kept in zip(self._tensors.items(), self._kept_counts(), strict=True)
        ]
        import pandas as pd

        return pd.DataFrame(rows, columns=["layer", "total", "kept", "density"])

    # -- conversions ----------------------------------------------------------------------------

    def to(self, device: str | torch.device) -> Mask:
        """The same mask on ``device``."""
        return Mask._wrap({name: keep.to(device) for name, keep in self._tensors.items()})

    def float(self) -> dict[str, Tensor]:
        """Float32 tensors, 1.0 = kept and 0.0 = pruned, for multiplying into weights."""
        return {name: keep.float() for name, keep in self._tensors.items()}

    # -- set algebra: which weights two masks share, or which were pruned ------------------------

    def _check_same_layout(self, other: Mask) -> None:
        if list(self) != list(other):
            raise MaskError(
                f"masks cover different layers: {list(self)} vs {list(other)}; "
                "combine masks made for the same model"
            )
        for name, keep in self._tensors.items():
            theirs = other[name]
            if keep.shape != theirs.shape or keep.device != theirs.device:
                raise MaskError(
                    f"masks disagree on {name!r}: shape {tuple(keep.shape)} on {keep.device} vs "
                    f"{tuple(theirs.shape)} on {theirs.device}"
                )

    def __and__(self, other: object) -> Mask:
        """Weights kept by both masks."""
        if not isinstance(other, Mask):
            return NotImplemented
        self._check_same_layout(other)
        return Mask._wrap({name: keep & other[name] for name, keep in self._tensors.items()})

    def __or__(self, other: object) -> Mask:
        """Weights kept by either mask."""
        if not isinstance(other, Mask):
            return NotImplemented
        self._check_same_layout(other)
        return Mask._wrap({name: keep | other[name] for name, keep in self._tensors.items()})

    def __invert__(self) -> Mask:
        """The pruned weights, as a mask (True = pruned by ``self``)."""
        return Mask._wrap({name: ~keep for name, keep in self._tensors.items()})

    # -- equality and display -------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        """Same names and same values (layer order and device don't matter)."""
        if not isinstance(other, Mask):
            return NotImplemented
        if self._tensors.keys() != other._tensors.keys():
            return False
        return all(
            keep.shape == other[name].shape and torch.equal(keep, other[name].to(keep.device))
            for name, keep in self._tensors.items()
        )

    __hash__ = None  # equal masks must hash equally, and tensors don't hash by value

    def __repr__(self) -> str:
        layers = ", ".join(f"{name} {_percent(d)}" for name, d in self.densities().items())
        return f"Mask(density={_percent(self.density)}, {layers})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(name)}</code></td><td>{tuple(self[name].shape)}</td>"
            f"<td>{kept:,}</td><td>{total:,}</td><td>{_percent(density)}</td></tr>"
            for name, total, kept, density in self.report().itertuples(index=False)
        )
        return (
            f"<table><caption>Mask: {self.kept:,} of {self.total:,} weights kept "
            f"({_percent(self.density)})</caption>"
            "<thead><tr><th>layer</th><th>shape</th><th>kept</th><th>total</th><th>density</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )

    # -- files ----------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the mask to ``path`` (bit-packed: 1 bit per weight) and return the path.

        The file appears complete or not at all: it is written to a temporary file in the same
        folder and moved into place. It holds only tensors, strings and ints, so ``Mask.load``
        can read it with ``torch.load(weights_only=True)``.
        """
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(
                f"cannot save the mask to {path}: folder {path.parent} does not exist; create it "
                "first"
            )
        names = list(self._tensors)
        shapes = [list(keep.shape) for keep in self._tensors.values()]
        bits = [_pack(keep).cpu() for keep in self._tensors.values()]
        payload = {
            "format": _FORMAT,
            "version": _VERSION,
            "names": names,
            "shapes": shapes,
            "bits": bits,
            "sha256": _digest(names, shapes, bits),
        }
        with atomic_file(path) as f:
            torch.save(payload, f)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> Mask:
        """Read a mask written by ``Mask.save`` onto ``device`` (default: cpu).

        Raises ``FileNotFoundError`` if there is no such file and ``MaskError`` if the file is not
        an intact ticketlab mask (truncated, corrupted, or some other kind of file).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no mask file at {path}; save one with mask.save(path)")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise MaskError(
                f"{path} is not a readable mask file ({type(err).__name__}: {err}); it may be "
                "truncated or corrupted: save the mask again with mask.save(path)"
            ) from err
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise MaskError(
                f"{path} holds no ticketlab mask (it was not written by Mask.save); "
                "load it with torch.load, or save masks with mask.save(path)"
            )
        if payload.get("version") != _VERSION:
            raise MaskError(
                f"{path} is a version {payload.get('version')!r} mask file; this ticketlab reads "
                f"version {_VERSION}: upgrade ticketlab or save the mask again"
            )
        if not _intact(payload):
            raise MaskError(f"{path} fails its integrity check (corrupted); save the mask again")
        names, shapes, bits = payload["names"], payload["shapes"], payload["bits"]
        device = torch.device("cpu") if device is None else torch.device(device)
        return cls._wrap(
            {
                name: _unpack(b.to(device), tuple(shape))
                for name, shape, b in zip(names, shapes, bits, strict=True)
            }
        )


def as_mask(mask: Mapping[str, Tensor], model: nn.Module, what: str = "mask") -> Mask:
    """``mask`` as a ``Mask`` on ``model``'s devices, checked against ``model`` (``Mask.validate``).

    The one check of a mask against a model, made where a mask enters the API (training,
    interpolation): any mapping name → 0/1 tensor is accepted, entries are moved to their
    parameter's device, and a mismatch raises ``MaskError`` (a ``ValueError``) naming ``what``.
    """
    if not isinstance(mask, Mask):
        try:
            mask = Mask(mask)
        except (TypeError, MaskError) as error:
            raise type(error)(f"{what}: {error}") from None
    params = dict(model.named_parameters())
    moved = {
        name: keep.to(params[name].device) if name in params else keep
        for name, keep in mask.items()
    }
    mask = Mask._wrap(moved)
    try:
        mask.validate(model)
    except MaskError as error:
        raise MaskError(f"{what}: {error}") from None
    return mask


def _pack(keep: Tensor) -> Tensor:
    """Bool tensor → uint8 tensor of ceil(numel / 8) bytes, on the same device."""
    flat = keep.flatten().to(torch.uint8)
    flat = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)])
    values = torch.tensor(_BIT_VALUES, dtype=torch.uint8, device=keep.device)
    return (flat.view(-1, 8) * values).sum(dim=1, dtype=torch.uint8)


def _unpack(bits: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Inverse of ``_pack``: uint8 bytes → bool tensor of ``shape``, on the bytes' device."""
    values = torch.tensor(_BIT_VALUES, dtype=torch.uint8, device=bits.device)
    flat = (bits.unsqueeze(1) & values).flatten() != 0
    return flat[: math.prod(shape)].view(shape)


def _intact(payload: dict) -> bool:
    """The payload matches its checksum and holds one packed tensor of the right size per name."""
    try:
        names, shapes, bits = payload["names"], payload["shapes"], payload["bits"]
        return (
            payload["sha256"] == _digest(names, shapes, bits)
            and len(names) == len(shapes) == len(bits)
            and all(
                b.dtype == torch.uint8 and b.shape == (math.ceil(math.prod(s) / 8),)
                for b, s in zip(bits, shapes, strict=True)
            )
        )
    except (KeyError, TypeError, AttributeError):
        return False


def _digest(names: list[str], shapes: list[list[int]], bits: list[Tensor]) -> str:
    """SHA-256 of a mask file's contents (``bits`` on cpu), to catch files corrupted on disk."""
    h = hashlib.sha256(repr((names, shapes)).encode())
    for b in bits:
        h.update(b.numpy().tobytes())
    return h.hexdigest()
