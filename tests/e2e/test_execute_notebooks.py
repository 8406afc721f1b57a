"""tools/execute_notebooks.py as maintainers run it: a subprocess on throw-away notebooks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "execute_notebooks.py"


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_markdown_cell("# Title")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=300
    )


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.fixture
def good(tmp_path):
    return _notebook(
        tmp_path / "01_good.ipynb",
        "import os\nprint(os.environ.get('TICKETLAB_QUICK'), os.getcwd())",
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), leave=False):\n    pass",
        "import matplotlib\nprint(matplotlib.get_backend())",
    )


@pytest.mark.parametrize(("flags", "quick_value"), [(["--quick"], "1"), ([], "None")])
def test_writes_outputs_and_counts_in_the_requested_mode(good, flags, quick_value):
    result = _tool(str(good), *flags)
    assert result.returncode == 0, result.stderr
    assert "01_good.ipynb" in result.stdout and " s " in result.stdout  # wall time reported

    nb = nbformat.read(good, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3]
    assert _stdout(code[0]) == f"{quick_value} {good.parent}\n"
    assert code[1].outputs == []  # the finished, hidden progress bar leaves nothing behind
    assert "inline" in _stdout(code[2])
    assert all("execution" not in c.metadata for c in nb.cells)


def test_a_failing_cell_is_named_and_nothing_is_written(tmp_path):
    broken = _notebook(
        tmp_path / "02_broken.ipynb", "x = 1", "raise ValueError('broken on purpose')", "x"
    )
    before = broken.read_bytes()
    result = _tool(str(broken), "--quick")
    assert result.returncode == 1
    assert "02_broken.ipynb: cell 3/4" in result.stderr
    assert "ValueError: broken on purpose" in result.stderr
    assert "(not written)" in result.stderr
    assert broken.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_check_size_flags_large_notebooks_without_running_them(good):
    assert _tool(str(good), "--check-size").returncode == 0
    result = _tool(str(good), "--check-size", "--max-mb", "0.0001")
    assert result.returncode == 1
    assert "01_good.ipynb" in result.stderr and "exceeds 0.0001 MB" in result.stderr
    assert nbformat.read(good, as_version=4).cells[1].execution_count is None  # not executed
