"""Datasets for ticketlab: XOR and MNIST as ``Dataset``s of train/val/test ``Split``s.

* ``dataset``: the ``Split`` and ``Dataset`` containers, and ``stratified_split``.
* ``sources``: ``xor()`` and ``mnist()``.
* ``idx``: reading and writing the IDX files MNIST comes in.
* ``files``: atomic writes, checksums and downloads from mirrors.
"""

from __future__ import annotations

from ticketlab.data.dataset import Dataset, Split, stratified_split
from ticketlab.data.files import ChecksumError, DownloadError
from ticketlab.data.idx import IdxFormatError, read_idx, write_idx
from ticketlab.data.sources import (
    MIRRORS,
    MNIST_CHECKSUMS,
    MNIST_MEAN,
    MNIST_STD,
    SUBSETS,
    MnistFiles,
    mnist,
    xor,
)

__all__ = [
    "MIRRORS",
    "MNIST_CHECKSUMS",
    "MNIST_MEAN",
    "MNIST_STD",
    "SUBSETS",
    "ChecksumError",
    "Dataset",
    "DownloadError",
    "IdxFormatError",
    "MnistFiles",
    "Split",
    "mnist",
    "read_idx",
    "stratified_split",
    "write_idx",
    "xor",
]
