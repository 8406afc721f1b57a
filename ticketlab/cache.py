"""An on-disk cache of experiment results that never serves a wrong answer.

Each entry is a pair of files in a folder: ``<name>.pt`` (the payload: nested dicts/lists of
tensors, numbers and strings, saved with ``torch.save``) and ``<name>.json`` (a manifest with the
payload's SHA-256, a format version, the canonical string of the recipe that produced it, the
version of the code that computed it (``ticketlab.versions.results_version``), the entry's own
coordinates (e.g. recipe key, mode, seed, round, kind, and the population it was trained in), and
the ticketlab and torch versions).

* **Atomic writes**: each file is written to a temporary name and moved into place with
  ``os.replace``; the manifest goes last, so an entry without a manifest is an interrupted write.
* **Verified reads**: a missing manifest, a checksum mismatch, an unreadable payload, another format
  version, another recipe string, other code, other coordinates (an entry copied or moved to
  another cell's place), a payload without the keys or structure the caller needs, or a folder
  where a file should be all mean the entry cannot be trusted. It is reported with a warning,
  deleted, and the caller recomputes it. Nothing in a damaged cache makes a load crash.
* **Safe loading**: ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
* **Locks**: ``lock(names)`` holds one ``filelock.FileLock`` per entry (an OS lock on
  ``<name>.lock``, released by the OS if its process dies), so processes sharing a cache never
  read an entry another one is writing, and compute each entry once. Callers load, compute and
  save an entry while holding its lock; orphaned temporary files of an entry (a process killed
  mid-write) are removed when its lock is taken (``sweep``).
* **Fails early**: ``prepare(bytes_needed)`` checks, before any work, that the folder can be
  created and written and has room; a disk that fills up later raises ``CacheError`` naming the
  folder, the bytes needed and the fix, and loses only the entry being written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_file, write_atomic

__all__ = ["CacheError", "CacheWarning", "ResultCache"]

FORMAT_VERSION = 3  # 3: cells name the population they were trained in; locks; size checks

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_FIX = "free space there, or point TICKETLAB_CACHE (or cache_dir=) at a folder with room"


class CacheWarning(UserWarning):
    """A cache entry was unusable (corrupted or incompatible) and will be recomputed."""


class CacheError(OSError):
    """The cache folder cannot be used: not creatable, not writable, or out of space."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _remove(path: Path) -> None:
    """Delete whatever lies at ``path``: a file, a link or a folder (damage in a cell's place)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class ResultCache:
    """Entries under ``root``, all produced by the recipe whose canonical string is ``recipe`` and
    by the code whose results version is ``code``."""

    def __init__(self, root: str | os.PathLike, recipe: str, code: str) -> None:
        self.root = Path(root)
        self.recipe = recipe
        self.code = code

    def __repr__(self) -> str:
        return f"ResultCache({str(self.root)!r})"

    def _paths(self, name: str) -> tuple[Path, Path]:
        return self.root / f"{name}.pt", self.root / f"{name}.json"

    # -- before any work --------------------------------------------------------------------

    def prepare(self, bytes_needed: int) -> None:
        """Create ``root`` and check that it is writable with ``bytes_needed`` free, or raise
        ``CacheError`` saying what is wrong and how to fix it. Writes nothing that stays."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            blocker = next((p for p in [self.root, *self.root.parents] if p.is_file()), self.root)
            raise CacheError(
                f"cannot use {self.root} as the result cache: {blocker} is a file, not a folder. "
                "Move the file away, or point TICKETLAB_CACHE (or cache_dir=) at a folder"
            ) from None
        except OSError as exc:
            raise CacheError(
                f"cannot create the result cache folder {self.root} ({exc.strerror}). Point "
                "TICKETLAB_CACHE (or cache_dir=) at a folder you can write"
            ) from None
        probe = self.root / f".write-check-{uuid.uuid4().hex}.tmp"
        try:
            probe.write_bytes(b"ticketlab")
        except OSError as exc:
            if exc.errno in _FULL:
                raise CacheError(f"the result cache {self.root} is full: {_FIX}") from None
            raise CacheError(
                f"the result cache folder {self.root} is not writable ({exc.strerror}). Point "
                "TICKETLAB_CACHE (or cache_dir=) at a folder you can write, or fix its permissions"
            ) from None
        finally:
            with contextlib.suppress(OSError):  # a read-only disk refuses even the unlink
                probe.unlink(missing_ok=True)
        free = shutil.disk_usage(self.root).free
        if free < bytes_needed:
            raise CacheError(
                f"the result cache {self.root} has {_size(free)} free, but one round of this "
                f"experiment needs about {_size(bytes_needed)}: {_FIX}"
            )

    # -- locking ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, names: Iterable[str]) -> Iterator[None]:
        """Hold the locks of the entries ``names`` (taken in sorted order, so two processes that
        lock overlapping sets cannot deadlock), then remove their orphaned temporary files."""
        from filelock import FileLock

        with contextlib.ExitStack() as stack:
            for name in sorted(set(names)):
                path = self.root / f"{name}.lock"
                self._make_folder(path.parent)
                stack.enter_context(FileLock(path))
                self.sweep(name)
            yield

    def sweep(self, name: str) -> None:
        """Remove the temporary files an interrupted write of ``name`` left (call with its lock
        held: then no write of it is in progress)."""
        data_path, manifest_path = self._paths(name)
        for path in (data_path, manifest_path):
            for tmp in path.parent.glob(f".{path.name}.*.tmp"):
                tmp.unlink(missing_ok=True)

    # -- writing ----------------------------------------------------------------------------

    def save(self, name: str, payload: dict[str, Any], coordinates: Mapping[str, Any]) -> None:
        """Store ``payload`` (tensors are moved to the CPU) atomically under ``name``, with the
        ``coordinates`` (JSON values) that say which entry it is.

        Raises ``CacheError`` if the disk is full; the entry is then absent, never half-written.
        """
        data_path, manifest_path = self._paths(name)
        buffer = io.BytesIO()
        torch.save(_to_cpu(payload), buffer)
        data = buffer.getvalue()
        manifest = {
            "format": FORMAT_VERSION,
            "sha256": hashlib.sha256(data).hexdigest(),
            "recipe": self.recipe,
            "code": self.code,
            "coordinates": dict(coordinates),
            "versions": {"ticketlab": _ticketlab_version(), "torch": torch.__version__},
        }
        self._make_folder(data_path.parent)
        for path in (data_path, manifest_path):
            if path.is_dir():
                warnings.warn(f"{path} is a folder in a cache entry's place; removing it",
                              CacheWarning, stacklevel=2)  # fmt: skip
                _remove(path)
        try:
            with atomic_file(data_path) as f:
                f.write(data)
            write_atomic(manifest_path, json.dumps(manifest, indent=1))
        except OSError as exc:
            data_path.unlink(missing_ok=True)  # without its manifest it would be ignored anyway
            if exc.errno in _FULL:
                raise CacheError(
                    f"the result cache {self.root} ran out of space writing {data_path.name} "
                    f"({_size(len(data))} needed; nothing else was lost): {_FIX}, then rerun to "
                    "resume"
                ) from None
            raise

    def _make_folder(self, folder: Path) -> None:
        """Create ``folder`` inside ``root``, removing files that stand where folders must be."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return
        except (FileExistsError, NotADirectoryError):
            pass
        for parent in reversed([folder, *folder.parents]):
            if parent != self.root and self.root in parent.parents and parent.is_file():
                warnings.warn(f"{parent} is a file where the cache needs a folder; removing it",
                              CacheWarning, stacklevel=3)  # fmt: skip
                parent.unlink()
        folder.mkdir(parents=True, exist_ok=True)

    # -- reading ----------------------------------------------------------------------------

    def load(
        self,
        name: str,
        device: torch.device | str | None = None,
        *,
        coordinates: Mapping[str, Any],
        required: Iterable[str] = (),
        check: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> dict[str, Any] | None:
        """The payload under ``name`` (tensors on ``device``), or None if absent or unusable.

        Usable means: written by this recipe and code, at these ``coordinates``, intact, holding
        every key in ``required``, and passing ``check`` (a function of the payload returning
        None, or what is wrong with it). Call with the entry's lock held when other processes may
        be writing to the cache.
        """
        data_path, manifest_path = self._paths(name)
        if not _lexists(data_path) and not _lexists(manifest_path):
            return None
        problem = None
        try:
            if data_path.is_dir() or manifest_path.is_dir():
                raise IsADirectoryError("a folder stands where the entry's file should be")
            manifest = json.loads(manifest_path.read_text())
            stored = manifest.get("coordinates")
            if manifest.get("format") != FORMAT_VERSION:
                problem = (
                    f"written by cache format {manifest.get('format')}, expected {FORMAT_VERSION}"
                )
            elif manifest.get("recipe") != self.recipe:
                problem = "written by a different recipe than the one in use"
            elif manifest.get("code") != self.code:
                problem = (
                    f"computed by other code (results version {manifest.get('code')}, this "
                    f"code's is {self.code}): ticketlab or PyTorch was changed or upgraded since"
                )
            elif stored != json.loads(json.dumps(dict(coordinates))):
                problem = f"it holds the entry {stored}, not {dict(coordinates)}: copied or moved"
            elif _sha256(data_path) != manifest.get("sha256"):
                problem = "its checksum does not match (the file was altered or truncated)"
            else:
                payload = torch.load(data_path, map_location=device or "cpu", weights_only=True)
                if not isinstance(payload, dict):
                    raise TypeError(f"the payload is a {type(payload).__name__}, not a dict")
                missing = sorted(set(required) - set(payload))
                problem = f"its payload lacks {missing}" if missing else None
                if problem is None and check is not None:
                    problem = check(payload)
                if problem is None:
                    return payload
        except FileNotFoundError:
            problem = "it is incomplete (an earlier run was interrupted while writing it)"
        except Exception as exc:  # any unreadable payload or manifest is equally untrustworthy
            problem = f"it cannot be read ({type(exc).__name__}: {exc})"
        self.discard(name, problem)
        return None

    def discard(self, name: str, problem: str) -> None:
        """Warn that entry ``name`` is unusable because of ``problem`` and delete it."""
        data_path, manifest_path = self._paths(name)
        warnings.warn(
            f"cache entry {data_path} is unusable: {problem}. Deleting it and recomputing.",
            CacheWarning,
            stacklevel=3,
        )
        _remove(data_path)
        _remove(manifest_path)


def _lexists(path: Path) -> bool:
    try:
        return os.path.lexists(path)
    except OSError:
        return False


def _size(n: float) -> str:
    """A byte count for people: "812 bytes", "64.0 kB", "1.2 GB"."""
    units = ["bytes", "kB", "MB", "GB"]
    while n >= 1000 and len(units) > 1:
        n, units = n / 1000, units[1:]
    return f"{n:.0f} bytes" if units[0] == "bytes" else f"{n:.1f} {units[0]}"


def _ticketlab_version() -> str:
    from . import __version__

    return __version__


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
