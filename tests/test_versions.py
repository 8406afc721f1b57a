"""ticketlab.versions: the results version changes with the code that computes results, only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ticketlab
from ticketlab import versions

PACKAGE = Path(ticketlab.__file__).resolve().parent


def test_imp_depends_on_the_training_and_pruning_code_not_on_figures_or_experiments():
    deps = set(versions.dependencies("ticketlab.imp"))
    expected = {"imp", "training", "population", "prune", "masks", "rewinding", "recipes",
                "models", "optim", "cache", "config", "data.sources", "stats"}  # fmt: skip
    assert {f"ticketlab.{name}" for name in expected} <= deps
    for absent in ("plots", "widgets", "experiments", "experiments.hardware", "audit", "verdict"):
        assert f"ticketlab.{absent}" not in deps, absent


@pytest.fixture
def package_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the package that ``results_version`` reads instead of the real one."""
    root = tmp_path / "ticketlab"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(versions, "_ROOT", root)
    return root


def version() -> str:
    return versions.results_version.__wrapped__("ticketlab.imp")  # uncached: reads the files now


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_a_docstring_comment_or_formatting_edit_keeps_the_version(package_copy):
    before = version()
    edit(package_copy / "training.py", '"""Mean loss and accuracy', '"""The mean loss and accuracy')
    edit(package_copy / "prune.py", "import math\n", "import math  # a comment\n\n")
    assert version() == before


@pytest.mark.parametrize(
    ("module", "old", "new", "changes"),
    [
        ("training.py", "chunk = max(cfg.batch_size, 1000)", "chunk = max(cfg.batch_size, 999)",
         True),
        ("prune.py", "torch.floor(kept.to(exact) * rate + 0.5)",
         "torch.round(kept.to(exact) * rate)", True),
        ("plots.py", "def ", "def _unused():\n    return 1\n\n\ndef ", False),
        ("experiments/hardware.py", "def ", "def _unused():\n    return 1\n\n\ndef ", False),
    ],
)  # fmt: skip
def test_code_that_computes_results_changes_the_version_and_other_code_does_not(
    package_copy, module, old, new, changes
):
    before = version()
    edit(package_copy / module, old, new)
    assert (version() != before) is changes
