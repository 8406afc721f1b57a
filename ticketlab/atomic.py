"""Atomic file writes: a file is either complete or untouched, never half-written.

Bytes go to a hidden temporary file next to the destination (same folder, so the same file
system), are flushed to disk, and only then replace the destination in one step (``os.replace``).
An error or interrupt in between deletes the temporary file and leaves the destination as it was.
Used for everything ticketlab writes: cached results, masks, datasets, benchmark reports and the
re-executed notebooks.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "write_atomic"]


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``dest`` (creating its folder) for writing bytes.

    When the ``with`` block finishes, the file replaces ``dest`` in one step; when it raises (or
    is interrupted), the temporary file is deleted and ``dest`` is untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(dest: str | os.PathLike, content: str | bytes) -> None:
    """Replace ``dest`` with ``content`` (text is written as UTF-8) in one step."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with atomic_file(dest) as out:
        out.write(data)
