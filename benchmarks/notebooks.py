"""Notebook execution: quick-mode wall time of each workbook notebook, run on a copy.

``notebooks/`` is copied to a temporary folder and each notebook there is executed by
``tools/execute_notebooks.py --quick`` in its own process (a fresh kernel, as ``./workbook
test`` runs them), so the committed notebooks are never rewritten. The notebooks run in file
order with one shared, initially empty result cache, like a fresh clone. Times are the whole
process (tool start-up and kernel start included). A --quick run of the suite executes only the
first notebook, so its total is not judged against the target.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .results import Context, Group, Row, Target

__all__ = ["run"]

GROUP = "notebooks"
REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "execute_notebooks.py"
TOTAL = Target.below(2.5, "min")


def run(ctx: Context) -> Group:
    found = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
    if not found:
        return Group([Row.unmeasured(GROUP, "Notebooks, quick mode: total", "no notebooks", TOTAL)])
    chosen = found[:1] if ctx.quick else found
    rows, details = [], {}
    with tempfile.TemporaryDirectory(prefix="ticketlab-bench-nb-") as tmp:
        folder = Path(
            shutil.copytree(
                REPO / "notebooks",
                Path(tmp) / "notebooks",
                ignore=shutil.ignore_patterns(".ipynb_checkpoints"),
            )
        )
        env = dict(os.environ, TICKETLAB_CACHE=str(Path(tmp) / "cache"))
        for path in chosen:
            ctx.log(f"notebook {path.name}: executing a copy in quick mode")
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, str(TOOL), str(folder / path.name), "--quick"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - started
            details[path.stem] = {"seconds": seconds, "returncode": proc.returncode}
            if proc.returncode == 0:
                rows.append(Row.info(GROUP, f"Notebook {path.stem}, quick mode", seconds, "s"))
            else:
                details[path.stem]["stderr"] = proc.stderr[-4000:]
                rows.append(
                    Row.unmeasured(
                        GROUP,
                        f"Notebook {path.stem}, quick mode",
                        f"FAILED after {seconds:.0f} s (see JSON)",
                    )
                )
    total = sum(d["seconds"] for d in details.values())
    failed = [name for name, d in details.items() if d["returncode"] != 0]
    item = "Notebooks, quick mode: total"
    if failed:
        rows.append(
            Row(
                GROUP,
                item,
                f"{total / 60:.1f} min, {len(failed)} failed",
                total / 60,
                "min",
                str(TOTAL),
                False,
                f"failed: {', '.join(failed)}",
            )
        )
    elif len(chosen) < len(found):
        rows.append(
            Row(
                GROUP,
                item,
                f"{total / 60:.2f} min for {len(chosen)} of {len(found)}",
                total / 60,
                "min",
                str(TOTAL),
                None,
                "--quick runs only the first notebook",
            )
        )
    else:
        rows.append(Row.judged(GROUP, item, total / 60, "min", TOTAL, f"{len(found)} notebooks"))
    return Group(rows, {"notebooks": details, "total_seconds": total, "of": len(found)})
