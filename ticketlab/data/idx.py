"""The IDX file format in which MNIST is distributed.

An IDX file is a 4-byte magic number, then one big-endian uint32 size per dimension, then the
values in C order, big-endian. The magic number is two zero bytes, a type code (0x08 for
unsigned bytes, ...) and the number of dimensions: 0x00000803 is a uint8 array with 3 dimensions
(MNIST images), 0x00000801 a uint8 vector (MNIST labels). Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ticketlab.data.files import atomic_file

__all__ = ["IdxFormatError", "decode_idx", "read_idx", "write_idx"]

# type code -> (torch dtype, big-endian numpy dtype of the stored values)
TYPES = {
    0x08: (torch.uint8, ">u1"),
    0x09: (torch.int8, ">i1"),
    0x0B: (torch.int16, ">i2"),
    0x0C: (torch.int32, ">i4"),
    0x0D: (torch.float32, ">f4"),
    0x0E: (torch.float64, ">f8"),
}
_CODES = {dtype: code for code, (dtype, _) in TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """Bytes that are not a well-formed IDX file."""


def read_idx(path: str | os.PathLike) -> Tensor:
    """Read an IDX file, plain or gzip-compressed, into a CPU tensor of its stored dtype and shape.

    MNIST images come back as uint8 (N, 28, 28), labels as uint8 (N,). Raises ``IdxFormatError``
    naming the file and the problem (bad magic number, unknown type code, truncated data, extra
    bytes, broken gzip stream).
    """
    path = Path(path)
    return decode_idx(path.read_bytes(), source=str(path))


def decode_idx(data: bytes, source: str = "<bytes>") -> Tensor:
    """Decode the bytes of an IDX file (``read_idx`` without the reading); gzip is detected."""
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise IdxFormatError(
                f"{source}: the gzip stream is broken ({err}); the file is truncated or corrupt, "
                "delete it and fetch it again"
            ) from None
    if len(data) < 4:
        raise IdxFormatError(
            f"{source}: only {len(data)} bytes, too short for an IDX header; the file is truncated"
        )
    zeros, code, ndim = struct.unpack(">HBB", data[:4])
    if zeros != 0:
        raise IdxFormatError(
            f"{source}: bad magic number 0x{data[:4].hex().upper()}; an IDX file starts with two "
            "zero bytes, a type code and a dimension count (MNIST images: 0x00000803, labels: "
            "0x00000801). Is this an IDX file?"
        )
    if code not in TYPES:
        known = ", ".join(
            f"0x{c:02X} {str(t).removeprefix('torch.')}" for c, (t, _) in TYPES.items()
        )
        raise IdxFormatError(f"{source}: unknown IDX type code 0x{code:02X}; known codes: {known}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(
            f"{source}: the header announces {ndim} dimensions but the file ends after "
            f"{len(data)} bytes; the file is truncated"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype, stored = TYPES[code]
    expected = math.prod(shape) * np.dtype(stored).itemsize
    found = len(data) - header
    if found != expected:
        problem = "is truncated" if found < expected else "has unexpected trailing bytes"
        raise IdxFormatError(
            f"{source} {problem}: its header announces {str(dtype).removeprefix('torch.')} "
            f"values of shape {shape} ({expected:,} bytes) but {found:,} bytes follow; "
            "delete it and fetch it again"
        )
    values = np.frombuffer(data, dtype=stored, offset=header).reshape(shape)
    return torch.from_numpy(values.astype(values.dtype.newbyteorder("="), copy=True))


def write_idx(path: str | os.PathLike, tensor: Tensor) -> None:
    """Write ``tensor`` (any device; uint8, int8, int16, int32, float32 or float64) as an IDX file.

    A path ending in ``.gz`` is gzip-compressed (reproducibly: no timestamp). The write is atomic:
    an interrupted write leaves no file behind.
    """
    if not isinstance(tensor, Tensor) or tensor.dtype not in _CODES:
        names = ", ".join(str(t).removeprefix("torch.") for t in _CODES)
        what = tensor.dtype if isinstance(tensor, Tensor) else type(tensor).__name__
        raise TypeError(f"IDX stores tensors of dtype {names}; got {what}. Convert it first")
    if tensor.ndim > 255 or any(size >= 2**32 for size in tensor.shape):
        raise ValueError(
            f"IDX holds at most 255 dimensions of size < 2**32, got shape {tuple(tensor.shape)}"
        )
    path = Path(path)
    code = _CODES[tensor.dtype]
    header = struct.pack(f">HBB{tensor.ndim}I", 0, code, tensor.ndim, *tensor.shape)
    values = tensor.detach().cpu().contiguous().numpy().astype(TYPES[code][1], copy=False)
    data = header + values.tobytes()
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    with atomic_file(path) as out:
        out.write(data)
