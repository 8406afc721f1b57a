"""Containers for labelled data, and a seeded stratified split of example indices.

A ``Split`` holds examples ``X`` and labels ``y``; a ``Dataset`` holds the train, validation and
test splits of one task. Both are immutable and live on one device.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ticketlab import config

__all__ = ["Dataset", "Split", "stratified_split"]


@dataclass(frozen=True, eq=False)
class Split:
    """Examples and their labels: ``X`` float32 (N, *input_shape), ``y`` int64 (N,), one device.

    ``len(split)`` is N and ``X, y = split`` unpacks. Splits compare by identity: elementwise
    ``==`` on tensors has no single truth value.
    """

    X: Tensor
    y: Tensor

    def __post_init__(self):
        if not isinstance(self.X, Tensor) or not isinstance(self.y, Tensor):
            raise TypeError(
                f"Split needs tensors, got X: {type(self.X).__name__}, y: {type(self.y).__name__}; "
                "convert with torch.as_tensor"
            )
        if self.X.dtype != torch.float32:
            raise TypeError(f"Split.X must be float32, got {self.X.dtype}; convert with X.float()")
        if self.y.dtype != torch.int64:
            raise TypeError(
                f"Split.y must be int64 labels, got {self.y.dtype}; convert with y.long()"
            )
        if self.y.ndim != 1 or self.X.ndim < 1 or self.X.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"Split needs X of shape (N, ...) and y of shape (N,), got X {tuple(self.X.shape)} "
                f"and y {tuple(self.y.shape)}; give one label per example"
            )
        if self.X.device != self.y.device:
            raise ValueError(
                f"Split.X is on {self.X.device} but Split.y is on {self.y.device}; "
                "move both to one device"
            )

    def __len__(self) -> int:
        return self.y.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.X, self.y))

    @property
    def device(self) -> torch.device:
        return self.X.device

    def to(self, device: str | torch.device) -> Split:
        """The same examples on ``device`` (``self`` when they are already there)."""
        target = config.device(device)
        if self.device == target:
            return self
        return Split(self.X.to(target), self.y.to(target))

    def __repr__(self) -> str:
        return (
            f"Split(n={len(self):,}, X={_describe(self.X)}, y={_describe(self.y)}, "
            f"device={self.device})"
        )


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification task: ``train``, ``val`` and ``test`` splits, labels in [0, num_classes).

    All splits share one device and one input shape. ``val`` is for model selection (early
    stopping, hyperparameters); ``test`` is only for reporting.
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int

    def __post_init__(self):
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {self.num_classes!r}")
        for part, split in self.splits.items():
            if not isinstance(split, Split):
                raise TypeError(f"Dataset.{part} must be a Split, got {type(split).__name__}")
        devices = {split.device for split in self.splits.values()}
        if len(devices) > 1:
            raise ValueError(
                f"the splits of {self.name!r} sit on {devices}; move them to one device"
            )
        shapes = {tuple(split.X.shape[1:]) for split in self.splits.values()}
        if len(shapes) > 1:
            raise ValueError(f"the splits of {self.name!r} have different input shapes {shapes}")
        labels = torch.cat([split.y for split in self.splits.values()])
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes:
            raise ValueError(
                f"labels of {self.name!r} span [{int(labels.min())}, {int(labels.max())}], outside "
                f"[0, {self.num_classes}); fix the labels or num_classes"
            )

    @property
    def splits(self) -> dict[str, Split]:
        """``{"train": ..., "val": ..., "test": ...}``, for looping over the splits."""
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def device(self) -> torch.device:
        return self.train.device

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. (1, 28, 28) for MNIST."""
        return tuple(self.train.X.shape[1:])

    def to(self, device: str | torch.device) -> Dataset:
        """The same dataset on ``device``."""
        moved = {part: split.to(device) for part, split in self.splits.items()}
        return Dataset(self.name, num_classes=self.num_classes, **moved)

    def class_counts(self) -> dict[str, list[int]]:
        """Examples per class in each split: ``{"train": [n_0, n_1, ...], ...}``."""
        return {
            part: torch.bincount(split.y, minlength=self.num_classes).tolist()
            for part, split in self.splits.items()
        }

    def __repr__(self) -> str:
        counts = self.class_counts()
        width = max(len(f"{len(split):,}") for split in self.splits.values())
        lines = [
            f"Dataset {self.name!r}: {self.num_classes} classes, inputs float32 "
            f"{self.input_shape} on {self.device}"
        ]
        for part, split in self.splits.items():
            per_class = " ".join(str(n) for n in counts[part])
            lines.append(f"  {part:<5} {len(split):>{width},} examples, per class: {per_class}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        counts = self.class_counts()
        head = "".join(f"<th>{label}</th>" for label in range(self.num_classes))
        rows = "".join(
            f"<tr><th>{part}</th><td>{len(split):,}</td>"
            + "".join(f"<td>{n}</td>" for n in counts[part])
            + "</tr>"
            for part, split in self.splits.items()
        )
        return (
            f"<p><b>{html.escape(self.name)}</b>: {self.num_classes} classes, inputs float32 "
            f"{self.input_shape} on {self.device}</p>"
            f'<table><tr><th>split</th><th>examples</th><th colspan="{self.num_classes}">'
            f"examples per class</th></tr><tr><th></th><th></th>{head}</tr>{rows}</table>"
        )


def stratified_split(y: Tensor, sizes: Sequence[int], seed: int = 0) -> tuple[Tensor, ...]:
    """Split example indices into parts of exactly ``sizes``, each with the classes in proportion.

    Args:
        y: int64 labels, shape (N,), any device; labels must be non-negative.
        sizes: the number of examples in each part; they must sum to N.
        seed: the split depends only on it (and on ``y``), on every device.

    Returns:
        One int64 index tensor per part, on ``y``'s device, in random order. Together the parts
        hold every index exactly once.

    How the remainders are shared: each class's examples are shuffled and spread evenly over
    [0, 1), the i-th of the class's n at position (i + 1/2) / n. All N examples are ordered by
    position, ties by class label, and the order is cut into consecutive parts of the requested
    sizes. Every class thus fills every part in proportion to its size, up to rounding: exactly
    when the proportions are whole numbers (MNIST-5k: 350/50/100 of each 500), otherwise to within
    one example per class when the classes are equally large. (In general, after each cut at T
    examples, class c's count is within 1/2 + C·n_c / (2N) of n_c·T/N for C classes.)
    """
    if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.ndim != 1:
        raise TypeError(
            "y must be a 1-D int64 tensor of labels; convert with torch.as_tensor(y).long()"
        )
    sizes = tuple(sizes)
    if any(not isinstance(s, int) or s < 0 for s in sizes) or sum(sizes) != len(y):
        raise ValueError(
            f"sizes {sizes} must be non-negative ints summing to the {len(y)} examples; "
            "adjust one part so the total matches"
        )
    labels = y.cpu()
    if len(labels) and int(labels.min()) < 0:
        raise ValueError(f"labels must be non-negative, found {int(labels.min())}")
    gen = config.generator(seed)
    n = len(labels)
    shuffled = torch.randperm(n, generator=gen)
    by_class = shuffled[torch.sort(labels[shuffled], stable=True).indices]
    classes = labels[by_class]
    counts = torch.bincount(classes)
    rank = torch.arange(n) - (torch.cumsum(counts, 0) - counts)[classes]
    position = (rank.double() + 0.5) / counts[classes]
    # Stable sort: examples at equal positions keep their class order.
    order = by_class[torch.sort(position, stable=True).indices]
    parts = torch.split(order, sizes)
    # Within a part, positions interleave the classes 0, 1, 2, ...; shuffle so slices are random.
    return tuple(part[torch.randperm(len(part), generator=gen)].to(y.device) for part in parts)


def _describe(t: Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')}{list(t.shape)}"
