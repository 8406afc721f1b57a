"""An on-disk cache of experiment results that never serves a wrong answer.

Each entry is a pair of files in a folder: ``<name>.pt`` (the payload: nested dicts/lists of
tensors, numbers and strings, saved with ``torch.save``) and ``<name>.json`` (a manifest with the
payload's SHA-256, a format version, the canonical string of the recipe that produced it, the
version of the code that computed it (``ticketlab.versions.results_version``), the entry's own
coordinates (e.g. recipe key, mode, seed, round, kind), and the ticketlab and torch versions).

* **Atomic writes**: each file is written to a temporary name and moved into place with
  ``os.replace``; the manifest goes last, so an entry without a manifest is an interrupted write.
* **Verified reads**: a missing manifest, a checksum mismatch, an unreadable payload, another format
  version, another recipe string, other code, other coordinates (an entry copied or moved to
  another cell's place) or a payload without the keys the caller needs all mean the entry cannot
  be trusted. It is reported with a warning, deleted, and the caller recomputes it.
* **Safe loading**: ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_file, write_atomic

__all__ = ["CacheWarning", "ResultCache"]

FORMAT_VERSION = 2  # 2: manifests name the code version and the entry's coordinates


class CacheWarning(UserWarning):
    """A cache entry was unusable (corrupted or incompatible) and will be recomputed."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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

    def save(self, name: str, payload: dict[str, Any], coordinates: Mapping[str, Any]) -> None:
        """Store ``payload`` (tensors are moved to the CPU) atomically under ``name``, with the
        ``coordinates`` (JSON values) that say which entry it is."""
        data_path, manifest_path = self._paths(name)
        cpu = _to_cpu(payload)
        with atomic_file(data_path) as f:
            torch.save(cpu, f)
        manifest = {
            "format": FORMAT_VERSION,
            "sha256": _sha256(data_path),
            "recipe": self.recipe,
            "code": self.code,
            "coordinates": dict(coordinates),
            "versions": {"ticketlab": _ticketlab_version(), "torch": torch.__version__},
        }
        write_atomic(manifest_path, json.dumps(manifest, indent=1))

    def load(
        self,
        name: str,
        device: torch.device | str | None = None,
        *,
        coordinates: Mapping[str, Any],
        required: Iterable[str] = (),
    ) -> dict[str, Any] | None:
        """The payload under ``name`` (tensors on ``device``), or None if absent or unusable.

        Usable means: written by this recipe and code, at these ``coordinates``, intact, and
        holding every key in ``required``.
        """
        data_path, manifest_path = self._paths(name)
        if not data_path.exists() and not manifest_path.exists():
            return None
        problem = None
        try:
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
                    f"code's is {self.code}): ticketlab was changed or upgraded since"
                )
            elif stored != json.loads(json.dumps(dict(coordinates))):
                problem = f"it holds the entry {stored}, not {dict(coordinates)}: copied or moved"
            elif _sha256(data_path) != manifest.get("sha256"):
                problem = "its checksum does not match (the file was altered or truncated)"
            else:
                payload = torch.load(data_path, map_location=device or "cpu", weights_only=True)
                missing = sorted(set(required) - set(payload))
                if not missing:
                    return payload
                problem = f"its payload lacks {missing}"
        except FileNotFoundError:
            problem = "it is incomplete (an earlier run was interrupted while writing it)"
        except Exception as exc:  # any unreadable payload or manifest is equally untrustworthy
            problem = f"it cannot be read ({type(exc).__name__}: {exc})"
        warnings.warn(
            f"cache entry {data_path} is unusable: {problem}. Deleting it and recomputing.",
            CacheWarning,
            stacklevel=2,
        )
        data_path.unlink(missing_ok=True)
        manifest_path.unlink(missing_ok=True)
        return None


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
