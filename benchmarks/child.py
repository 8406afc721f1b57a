"""One measurement in a fresh Python process: a benchmark module run as ``python -m`` with a JSON
spec, answering with one JSON line (its last line of output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["run_module"]

REPO = Path(__file__).resolve().parents[1]


def run_module(module: str, spec: dict, env: dict[str, str], timeout: float) -> dict:
    """Run ``python -m module '<spec as JSON>'`` in the repository with ``env`` (this repository
    first on PYTHONPATH); return the JSON object the child printed last. A failed child raises
    RuntimeError with the end of its stderr."""
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", module, json.dumps(spec)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{module} subprocess {spec} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
