"""Re-execute the workbook's notebooks and save them with their outputs.

    python tools/execute_notebooks.py                      # all notebooks/[0-9]*.ipynb, full mode
    python tools/execute_notebooks.py notebooks/00_setup_check.ipynb --quick
    python tools/execute_notebooks.py --check-size         # only check file sizes

Each notebook runs top to bottom in a fresh kernel of *this* Python (not whatever a kernelspec
named "python3" points to), with the notebook's folder as working directory, inline matplotlib
figures and ``TICKETLAB_QUICK`` set (``--quick``) or removed (full mode, the default for the
committed notebooks). A notebook is written back, atomically, only when every cell ran; otherwise
the failing cell is named, the file is left untouched and the exit status is 1. Timing metadata
is not recorded, widget state is dropped when it would bloat the file, and widgets that ended
hidden (finished progress bars) leave no output behind.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from traitlets import default

import ticketlab.atomic

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
MAX_MB = 1.5
# Bytes of JSON. Larger widget state (e.g. many images inside Output widgets) is dropped: readers
# then see each widget's text fallback, and a learner's kernel recreates the widgets anyway.
WIDGET_STATE_LIMIT = 200_000
WIDGET_STATE_KEY = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ThisPythonKernelSpecs(KernelSpecManager):
    """Resolves every kernel name to an ipykernel running ``sys.executable``."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name=KERNELSPEC["display_name"],
            language="python",
            resource_dir="",
        )


class ThisPythonKernelManager(AsyncKernelManager):
    @default("kernel_spec_manager")
    def _default_specs(self) -> KernelSpecManager:
        return ThisPythonKernelSpecs(parent=self)


class NotebookFailed(RuntimeError):
    """A cell raised or timed out; the message names the notebook and the cell."""


def kernel_env(quick: bool) -> dict[str, str]:
    """The kernel's environment: ours, with mode, figure backend and package made explicit."""
    env = dict(os.environ)
    if quick:
        env["TICKETLAB_QUICK"] = "1"
    else:
        env.pop("TICKETLAB_QUICK", None)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    # The outputs must come from this checkout's ticketlab, whether or not it is pip-installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def execute(path: Path, *, quick: bool, timeout: int) -> nbformat.NotebookNode:
    """Run every cell of the notebook at ``path`` in a fresh kernel; return the executed notebook.

    Raises:
        NotebookFailed: a cell raised (cells tagged ``raises-exception`` may), timed out, or the
            kernel died. The file on disk is never touched here.
    """
    nb = nbformat.read(path, as_version=4)
    current: dict[str, object] = {}

    def on_cell_start(cell, cell_index):
        current.update(index=cell_index, cell=cell)

    client = NotebookClient(
        nb,
        kernel_name="python3",
        kernel_manager_class=ThisPythonKernelManager,
        timeout=timeout,
        record_timing=False,
        store_widget_state=True,
        on_cell_start=on_cell_start,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute(env=kernel_env(quick))
    except Exception as exc:
        cell = current.get("cell")
        first = ""
        if cell is not None:
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "").strip()
        index = current.get("index")
        where = f"cell {index + 1}/{len(nb.cells)}" if isinstance(index, int) else "kernel start"
        where += f" (`{first[:70]}`)" if first else ""
        reason = _ANSI.sub("", str(exc)).strip()
        raise NotebookFailed(f"{path}: {where} failed: {type(exc).__name__}\n{reason}") from exc
    return nb


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop volatile metadata (per-cell execution timings, oversized widget state) and the views
    of widgets that ended hidden, such as finished progress bars."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE_KEY, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _hidden_widget_view(o, state)]
    widgets = nb.metadata.get("widgets")
    if widgets is not None and len(json.dumps(widgets)) > WIDGET_STATE_LIMIT:
        del nb.metadata["widgets"]
    nb.metadata.setdefault("kernelspec", dict(KERNELSPEC))
    return nb


def _hidden_widget_view(output: dict, state: dict) -> bool:
    """True for a widget view whose widget was hidden by the time the notebook finished.

    tqdm hides its bar when done (``leave=False``); a reader of the saved notebook without a
    kernel would otherwise see the bar's text fallback, frozen at "0%".
    """
    view = output.get("data", {}).get(WIDGET_VIEW_MIME)
    model = state.get(view["model_id"]) if view else None
    if model is None:
        return False
    layout = state.get(str(model["state"].get("layout", "")).removeprefix("IPY_MODEL_"), {})
    style = layout.get("state", {})
    return style.get("visibility") == "hidden" or style.get("display") == "none"


def write_atomic(nb: nbformat.NotebookNode, path: Path) -> None:
    """Validate, then replace ``path`` in one step; a crash never leaves half a notebook."""
    nbformat.validate(nb)
    text = nbformat.writes(nb)
    if not text.endswith("\n"):
        text += "\n"
    ticketlab.atomic.write_atomic(path, text)


def size_warning(path: Path, max_mb: float) -> str | None:
    size = path.stat().st_size / 1e6
    if size > max_mb:
        return (
            f"WARNING {path}: {size:.2f} MB exceeds {max_mb} MB; shrink figures "
            "(dpi ~80, fewer images) or clear large outputs"
        )
    return None


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def default_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/[0-9]*.ipynb")
    parser.add_argument(
        "--quick", action="store_true", help="set TICKETLAB_QUICK=1 (default: full mode)"
    )
    parser.add_argument(
        "--timeout", type=int, default=1800, help="seconds allowed per cell (default 1800)"
    )
    parser.add_argument(
        "--check-size",
        action="store_true",
        help="only check file sizes (limit --max-mb); exit 1 if one is too large",
    )
    parser.add_argument("--max-mb", type=float, default=MAX_MB, help=f"default {MAX_MB}")
    args = parser.parse_args(argv)

    paths = args.notebooks or default_notebooks()
    missing = [p for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(map(str, missing))}")
    if not paths:
        parser.error(f"no notebooks matching [0-9]*.ipynb in {NOTEBOOKS}")

    if args.check_size:
        warnings = [w for p in paths if (w := size_warning(p, args.max_mb))]
        for warning in warnings:
            print(warning, file=sys.stderr)
        print(f"checked {len(paths)} notebook(s): {len(warnings)} too large")
        return 1 if warnings else 0

    mode = "quick" if args.quick else "full"
    failed = []
    for path in paths:
        start = time.perf_counter()
        try:
            nb = clean(execute(path, quick=args.quick, timeout=args.timeout))
        except NotebookFailed as exc:
            failed.append(path)
            print(f"FAILED {exc}\n(not written)", file=sys.stderr, flush=True)
            continue
        write_atomic(nb, path)
        seconds = time.perf_counter() - start
        size = path.stat().st_size / 1e3
        print(f"{_shown(path)}  {mode}  {seconds:7.1f} s  {size:8.0f} kB", flush=True)
        if warning := size_warning(path, args.max_mb):
            print(warning, file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(paths)} notebook(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
