"""Fixtures for the end-to-end tests: one JupyterLab server and one headless Chromium per session.

The server serves a temporary copy of ``notebooks/`` in quick mode; screenshots and the server log
go to ``$TICKETLAB_ARTIFACTS/e2e`` (default ``artifacts/e2e`` in the repository), and the folder is
named in pytest's terminal summary. Without Chromium or Playwright the browser tests skip, naming
the install commands (under ``CI=true`` they fail instead).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:  # pytest's importlib mode adds no test folders
    sys.path.insert(0, str(Path(__file__).parent))
import labdriver

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
# Captured before tests/conftest.py's autouse fixture rewrites the environment of each test.
_ENV_AT_IMPORT = dict(os.environ)
_ARTIFACTS = pytest.StashKey[Path]()
TIMEOUT = float(os.environ.get("TICKETLAB_E2E_TIMEOUT", "300"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    folder = config.stash.get(_ARTIFACTS, None)
    if folder is None:
        return
    shots = sorted(folder.glob("*.jpg"))
    terminalreporter.write_sep("-", "JupyterLab end-to-end artifacts")
    terminalreporter.write_line(f"{len(shots)} screenshot(s) and the server log in {folder}")


def artifacts_folder() -> Path:
    base = _ENV_AT_IMPORT.get("TICKETLAB_ARTIFACTS")
    return (Path(base) if base else REPO / "artifacts") / "e2e"


@pytest.fixture(scope="session")
def e2e_artifacts(request) -> Path:
    folder = artifacts_folder()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.jpg"):  # only what earlier runs of these tests wrote
        stale.unlink()
    request.config.stash[_ARTIFACTS] = folder
    return folder


@pytest.fixture(scope="session")
def e2e_requirements() -> None:
    """Skips, naming the install commands, when Chromium, Playwright or JupyterLab is missing;
    fails instead under CI=true, where a silent skip would hide a broken setup."""
    reason = labdriver.browser_unavailable_reason()
    if reason is not None and _ENV_AT_IMPORT.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the browser tests, but {reason}")
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_server(e2e_requirements, tmp_path_factory, e2e_artifacts):
    root = tmp_path_factory.mktemp("lab") / "notebooks"
    shutil.copytree(
        NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    )
    env = dict(_ENV_AT_IMPORT)
    env["TICKETLAB_CACHE"] = str(tmp_path_factory.mktemp("ticketlab-cache"))
    # The kernel tests this checkout's ticketlab, whether or not it is pip-installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    server = labdriver.LabServer(
        root=root,
        home=tmp_path_factory.mktemp("jupyter-home"),
        log=e2e_artifacts / "jupyterlab-server.log",
        env=env,
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def playwright_driver(e2e_requirements):
    """Playwright, started once per session: its sync API allows one running instance."""
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        yield playwright
    finally:
        playwright.stop()


@pytest.fixture(scope="session")
def chromium(lab_server, playwright_driver, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    context = labdriver.launch_chromium(playwright_driver, profile)
    try:
        yield context
    finally:
        context.close()


class Lab:
    """What a test needs: run a notebook by name, check it, move its first slider."""

    NotebookUIError = labdriver.NotebookUIError

    def __init__(self, server: labdriver.LabServer, context, shoot: labdriver.Screenshots):
        self.server = server
        self.context = context
        self.shoot = shoot
        self.runs: list[labdriver.LabRun] = []

    @property
    def root(self) -> Path:
        """The folder JupyterLab serves (a temporary copy of ``notebooks/``)."""
        return self.server.root

    def run(self, name: str, timeout: float = TIMEOUT) -> labdriver.LabRun:
        """Run All Cells in ``name``; no checks (see ``LabRun.problems``)."""
        run = labdriver.run_notebook(self.context, self.server, name, self.shoot, timeout)
        self.runs.append(run)
        return run

    def check(
        self, name: str, expect: str | None = None, timeout: float = TIMEOUT
    ) -> labdriver.LabRun:
        """Run All Cells in ``name`` and raise ``NotebookUIError`` on any error output, cell left
        unexecuted, missing heading, or missing line matching the regex ``expect``."""
        run = self.run(name, timeout)
        problems = run.problems(expect)
        if problems:
            raise labdriver.NotebookUIError(run, problems)
        return run

    def move_first_slider(self, run: labdriver.LabRun, presses: int = 1) -> labdriver.SliderMove:
        """Move the first slider in ``run`` and assert that its output changed, error-free."""
        move = labdriver.move_first_slider(run, self.shoot, presses=presses)
        assert not move.problems, f"{run.name}: " + "; ".join(move.problems)
        return move


@pytest.fixture
def lab(request, lab_server, chromium, e2e_artifacts, record_property):
    shoot = labdriver.Screenshots(e2e_artifacts, request.node.name)
    helper = Lab(lab_server, chromium, shoot)
    record_property("e2e_artifacts", str(e2e_artifacts))
    try:
        yield helper
    finally:
        from playwright.sync_api import Error as PlaywrightError

        for run in helper.runs:
            with contextlib.suppress(PlaywrightError):  # e.g. the browser already crashed
                run.page.close()
        lab_server.shutdown_kernels()
