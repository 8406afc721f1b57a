"""Safe file handling: checksums, and downloads that try one mirror after another.

A file is either complete and verified or absent: it is written through ``atomic_file``
(``ticketlab.atomic``), which replaces the destination in one step only once all bytes are
written and, for downloads, checked.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Sequence
from http.client import HTTPException
from pathlib import Path

from ..atomic import atomic_file

__all__ = [
    "ChecksumError",
    "DownloadError",
    "atomic_file",
    "download_file",
    "parse_checksum",
    "verify",
]

HASHES = {"md5": 32, "sha256": 64}  # algorithm -> length of its hex digest


class ChecksumError(ValueError):
    """A file's bytes do not match their known checksum."""


class DownloadError(OSError):
    """No mirror delivered a file with the right checksum."""


def parse_checksum(checksum: str) -> tuple[str, str]:
    """Split ``"sha256:<hex>"`` or ``"md5:<hex>"`` into (algorithm, lower-case hex digest)."""
    algorithm, _, digest = str(checksum).partition(":")
    digest = digest.lower()
    if HASHES.get(algorithm) != len(digest) or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(
            f"checksum {checksum!r} is not understood; write it as 'sha256:<64 hex digits>' "
            "or 'md5:<32 hex digits>'"
        )
    return algorithm, digest


def verify(data: bytes, checksum: str, source: str) -> None:
    """Raise ``ChecksumError`` unless ``data`` (read from ``source``) has ``checksum``."""
    algorithm, expected = parse_checksum(checksum)
    actual = _hasher(algorithm, data).hexdigest()
    if actual != expected:
        raise ChecksumError(
            f"{source} has {algorithm} {actual}, expected {expected}: the file is corrupt, "
            "truncated or a different file of the same name"
        )


def download_file(
    urls: Sequence[str], dest: str | os.PathLike, checksum: str, timeout: float, advice: str = ""
) -> None:
    """Fetch ``dest`` from the first of ``urls`` that delivers bytes with ``checksum``.

    Each URL gets ``timeout`` seconds to connect and between reads. Bytes that fail the check are
    discarded and the next URL is tried. If none succeeds, ``DownloadError`` lists every attempt
    and its failure, followed by ``advice``; ``dest`` is then untouched.
    """
    algorithm, expected = parse_checksum(checksum)
    failures = []
    for url in urls:
        try:
            with atomic_file(dest) as out:
                digest = _hasher(algorithm)
                request = urllib.request.Request(url, headers={"User-Agent": "ticketlab"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                if digest.hexdigest() != expected:
                    raise ChecksumError(
                        f"checksum mismatch ({algorithm} {digest.hexdigest()}, expected "
                        f"{expected}); the corrupt download was deleted"
                    )
            return
        # OSError covers refused connections, timeouts and HTTP errors; ValueError malformed URLs.
        except (OSError, HTTPException, ValueError) as err:
            failures.append(f"  {url}: {err}")
    tried = "\n".join(failures) or "  (no mirrors given)"
    raise DownloadError(f"could not download {Path(dest).name}; tried:\n{tried}\n{advice}".rstrip())


def _hasher(algorithm: str, data: bytes = b""):
    return hashlib.new(algorithm, data, usedforsecurity=False)
