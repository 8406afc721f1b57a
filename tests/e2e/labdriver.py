"""Drive a real JupyterLab in headless Chromium, the way a learner uses the workbook.

The pieces, used by ``conftest.py``:

* :class:`LabServer` starts ``python -m jupyter lab`` on a free local port with a random token, an
  isolated Jupyter config/data/runtime/settings/workspaces folder and ``TICKETLAB_QUICK=1``, and
  stops it (kernels first, then the whole process group) even when a test failed.
* :func:`launch_chromium` opens Debian's ``/usr/bin/chromium`` through Playwright, or explains how
  to install what is missing.
* :func:`run_notebook` opens ``/lab/tree/<name>``, clears all outputs, clicks *Run → Run All
  Cells* and waits (event-driven, with a timeout) until the kernel is idle and nothing is queued;
  it returns a :class:`LabRun` describing what the learner now sees. :meth:`LabRun.problems`
  lists everything wrong with it; :func:`move_first_slider` nudges the first slider with the
  keyboard and waits for the output beside it to change.

JupyterLab renders an error output and a stream written to stderr (tqdm, warnings) with the same
MIME type, so errors are read from the notebook model through ``window.jupyterapp`` (the server
runs with ``expose_app_in_browser``, as JupyterLab's own Galata UI tests do). Errors raised inside
a widget callback live in the widget's Output model instead, so rendered tracebacks are also
looked for in the page.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path(os.environ.get("TICKETLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}
INSTALL_HINT = (
    "the JupyterLab end-to-end tests need Debian's Chromium and the Playwright Python package: "
    "`sudo apt-get install -y --no-install-recommends chromium` and "
    "`pip install playwright` (or `pip install -e .[dev]`); `playwright install` is not needed"
)

# The notification plugin would otherwise ask for consent to fetch news and poll for updates.
_SERVER_CONFIG = {
    "LabApp": {
        "news_url": None,
        "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
        "expose_app_in_browser": True,
    }
}
_PAGE_CONFIG = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    }
}


class NotebookUIError(AssertionError):
    """A notebook did not run cleanly in JupyterLab; ``problems`` lists what a learner would see."""

    def __init__(self, run: LabRun, problems: list[str]):
        self.run = run
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{run.name} failed in JupyterLab ({len(problems)} problem(s)):\n{lines}\n"
            f"screenshots: {', '.join(str(s) for s in run.screenshots) or 'none'}"
        )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabServer:
    """A JupyterLab server serving ``root`` from a throw-away Jupyter home under ``home``.

    Use as a context manager. ``log`` is the server's combined stdout/stderr.
    """

    def __init__(self, root: Path, home: Path, log: Path, env: dict[str, str]):
        self.root = Path(root)
        self.home = Path(home)
        self.log = Path(log)
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._env = self._isolated_env(env)
        self._proc: subprocess.Popen | None = None

    def _isolated_env(self, env: dict[str, str]) -> dict[str, str]:
        dirs = {
            name: self.home / sub
            for name, sub in [
                ("JUPYTER_CONFIG_DIR", "config"),
                ("JUPYTER_DATA_DIR", "data"),
                ("JUPYTER_RUNTIME_DIR", "runtime"),
                ("IPYTHONDIR", "ipython"),
                ("JUPYTERLAB_SETTINGS_DIR", "lab-settings"),
                ("JUPYTERLAB_WORKSPACES_DIR", "lab-workspaces"),
            ]
        }
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        config = dirs["JUPYTER_CONFIG_DIR"]
        (config / "jupyter_server_config.json").write_text(json.dumps(_SERVER_CONFIG))
        (config / "labconfig").mkdir(exist_ok=True)
        (config / "labconfig" / "page_config.json").write_text(json.dumps(_PAGE_CONFIG))
        for name, values in _USER_SETTINGS.items():
            target = dirs["JUPYTERLAB_SETTINGS_DIR"] / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        # "python3" resolves to this interpreter, whatever the user's own kernelspecs say.
        kernel = dirs["JUPYTER_DATA_DIR"] / "kernels" / "python3"
        kernel.mkdir(parents=True, exist_ok=True)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
        (kernel / "kernel.json").write_text(json.dumps(spec))

        out = dict(env)
        for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "JUPYTER_TOKEN", "MPLBACKEND"):
            out.pop(var, None)  # MPLBACKEND unset: the kernel falls back to inline figures
        out.update({name: str(path) for name, path in dirs.items()})
        out["TICKETLAB_QUICK"] = "1"
        out["PYTHONUNBUFFERED"] = "1"
        return out

    @property
    def runtime_dir(self) -> Path:
        return Path(self._env["JUPYTER_RUNTIME_DIR"])

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def api(self, method: str, path: str, timeout: float = 10.0):
        """Call the REST API with the token; returns the decoded JSON body (or None)."""
        request = urllib.request.Request(
            self.url(path), method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def start(self, timeout: float = 120.0) -> LabServer:
        cmd = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # CI containers run as root
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                env=self._env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so teardown can reach all of it
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with code {self._proc.returncode} while starting; "
                    f"log {self.log}:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                self.api("GET", "api/status", timeout=2.0)
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(
            f"JupyterLab did not answer /api/status within {timeout:.0f} s; log {self.log}:\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def shutdown_kernels(self) -> None:
        """Stop every kernel the server runs (sessions first, so the UI sees them go)."""
        with contextlib.suppress(OSError, ValueError):
            for session in self.api("GET", "api/sessions") or []:
                with contextlib.suppress(OSError):
                    self.api("DELETE", f"api/sessions/{session['id']}")
            for kernel in self.api("GET", "api/kernels") or []:
                with contextlib.suppress(OSError):
                    self.api("DELETE", f"api/kernels/{kernel['id']}")

    def stop(self) -> None:
        """Shut down kernels and the server; escalate to SIGTERM, then SIGKILL, if it lingers."""
        if self._proc is None:
            return
        proc, self._proc = self._proc, None
        if proc.poll() is None:
            self.shutdown_kernels()
            with contextlib.suppress(OSError):
                self.api("POST", "api/shutdown", timeout=5.0)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, sig)
                    try:
                        proc.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
        self._kill_orphan_kernels()

    def _kill_orphan_kernels(self) -> None:
        """Kernels run in their own sessions; any still alive is found by its connection file,
        which lives in this server's private runtime folder."""
        marker = str(self.runtime_dir)
        for proc_dir in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc_dir / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and int(proc_dir.name) != os.getpid():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(proc_dir.name), signal.SIGKILL)

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def browser_unavailable_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"Playwright is not installed; {INSTALL_HINT}"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM}; {INSTALL_HINT}"
    if importlib.util.find_spec("jupyterlab") is None:
        return "JupyterLab is not installed: `pip install -e .[lab]`"
    return None


def launch_chromium(playwright, profile_dir: Path):
    """A headless Chromium context (viewport 1280×800) with a fresh profile in ``profile_dir``."""
    return playwright.chromium.launch_persistent_context(
        user_data_dir=str(profile_dir),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=VIEWPORT,
    )


# --- what the page shows ---------------------------------------------------------------------

# Installed in every page: small read-only probes of the current notebook panel.
_PROBES_JS = r"""
window.__labcheck = {
  panel() {
    const app = window.jupyterapp;
    const w = app && app.shell && app.shell.currentWidget;
    return w && w.content && w.sessionContext ? w : null;
  },
  kernelStatus() {
    const p = this.panel();
    const k = p && p.sessionContext.session && p.sessionContext.session.kernel;
    return k ? k.status : null;
  },
  dialog() {
    const d = document.querySelector('.jp-Dialog');
    return d ? d.innerText : null;
  },
  running() {
    // Code cells queued or running, from the model: a cell whose input is collapsed (an
    // exercise's solution) shows no prompt in the page, so prompts() cannot see it waiting.
    const p = this.panel();
    if (!p) return null;
    return p.content.widgets.filter(
      c => c.model.type === 'code' && c.model.executionState === 'running').length;
  },
  settled(polls) {
    // True once the kernel has been idle with nothing queued for ``polls`` checks in a row: the
    // kernel reports idle for a moment between two queued cells of a Run All.
    const quiet = this.kernelStatus() === 'idle' && this.running() === 0
      && !this.prompts().includes('[*]:');
    this.quietPolls = quiet ? (this.quietPolls || 0) + 1 : 0;
    return this.quietPolls >= polls;
  },
  prompts() {
    const p = this.panel();
    if (!p) return null;
    return p.content.widgets
      .filter(c => c.model.type === 'code' && c.model.sharedModel.getSource().trim() !== '')
      .map(c => (c.node.querySelector('.jp-InputPrompt') || {textContent: ''}).textContent.trim());
  },
  report() {
    const p = this.panel();
    const tb = /Traceback \(most recent call last\)/;
    const cells = p.content.widgets.map((c, index) => {
      const isCode = c.model.type === 'code';
      const outputs = isCode ? c.model.outputs.toJSON() : [];
      const rendered = [...c.node.querySelectorAll('.jp-OutputArea-output')];
      const stderr = rendered.filter(
        e => e.dataset.mimeType === 'application/vnd.jupyter.stderr');
      return {
        index,
        type: c.model.type,
        source: c.model.sharedModel.getSource(),
        tags: c.model.getMetadata('tags') || [],
        prompt: isCode ? (c.node.querySelector('.jp-InputPrompt') || {textContent: ''})
          .textContent.trim() : '',
        errors: outputs.filter(o => o.output_type === 'error')
          .map(o => `${o.ename}: ${o.evalue}`),
        renderedTracebacks: stderr.filter(e => tb.test(e.textContent))
          .map(e => e.textContent.trim().split('\n').slice(-3).join(' | ')),
        text: rendered.map(e => e.textContent).join('\n'),
        images: c.node.querySelectorAll('.jp-OutputArea-output img').length,
      };
    });
    const headings = [...p.node.querySelectorAll('.jp-MarkdownOutput h1, .jp-MarkdownOutput h2')]
      .map(h => ({level: h.tagName.toLowerCase(),
                   text: h.textContent.replace(/\u00b6/g, '').trim()}));
    return {cells, headings, kernel: this.kernelStatus()};
  },
};
"""


@dataclass
class CellView:
    """One cell as JupyterLab shows it after the run."""

    index: int
    type: str
    source: str
    tags: list[str]
    prompt: str
    errors: list[str]
    rendered_tracebacks: list[str]
    text: str
    images: int

    def describe(self) -> str:
        first = next((ln for ln in self.source.splitlines() if ln.strip()), "").strip()
        return f"cell {self.index + 1} {self.prompt} `{first[:60]}`".replace("  ", " ")


@dataclass
class LabRun:
    """The state of one notebook in JupyterLab after *Run All Cells*."""

    name: str
    page: object  # playwright.sync_api.Page; kept open so the test can keep interacting
    cells: list[CellView]
    headings: list[dict]
    kernel_status: str | None
    seconds: float
    dialogs: list[str] = field(default_factory=list)  # texts of dialogs answered on opening
    timed_out: float | None = None  # the timeout in seconds, when the run had not finished
    screenshots: list[Path] = field(default_factory=list)

    @property
    def code_cells(self) -> list[CellView]:
        return [c for c in self.cells if c.type == "code" and c.source.strip()]

    @property
    def output_text(self) -> str:
        return "\n".join(c.text for c in self.cells)

    def errors(self) -> list[str]:
        """Error outputs and rendered tracebacks, except in cells tagged ``raises-exception``."""
        found = []
        for cell in self.cells:
            if "raises-exception" in cell.tags:
                continue
            found += [f"{cell.describe()} raised {e}" for e in cell.errors]
            if not cell.errors:
                found += [
                    f"{cell.describe()} shows a traceback: {t}" for t in cell.rendered_tracebacks
                ]
        return found

    def problems(self, expect: str | None = None) -> list[str]:
        """Everything a learner would find wrong: errors, dialogs other than kernel selection,
        unexecuted cells, no headings, no output line matching the regular expression ``expect``."""
        found = self.errors()
        if self.timed_out is not None:
            busy = [c.describe() for c in self.code_cells if c.prompt == "[*]:"]
            found.append(f"still running after {self.timed_out:.0f} s: {', '.join(busy[:3])}")
        found += [
            f"unexpected dialog on opening: {d.splitlines()[0]!r}"
            for d in self.dialogs
            if not d.startswith(_KERNEL_DIALOG)
        ]
        counts = []
        for cell in self.code_cells:
            if cell.prompt == "":  # a collapsed (hidden) solution cell shows no prompt at all
                continue
            match = re.fullmatch(r"\[(\d+)\]:", cell.prompt)
            if match is None:
                found.append(f"{cell.describe()} has no execution count (prompt {cell.prompt!r})")
            else:
                counts.append(int(match.group(1)))
        if counts != sorted(counts):
            found.append(f"execution counts are out of order: {counts}")
        if self.kernel_status != "idle":
            found.append(f"kernel status is {self.kernel_status!r}, not 'idle'")
        if not any(h["level"] in ("h1", "h2") for h in self.headings):
            found.append("no rendered markdown heading (h1/h2)")
        if expect is not None and re.search(expect, self.output_text, re.MULTILINE) is None:
            found.append(f"no output matches {expect!r}")
        return found


class Screenshots:
    """Numbered viewport screenshots (JPEG, 1280×800) of one test in ``folder``."""

    def __init__(self, folder: Path, prefix: str):
        self.folder = Path(folder)
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix)
        self.taken: list[Path] = []

    def __call__(self, page, label: str) -> Path | None:
        path = self.folder / f"{self.prefix}-{len(self.taken) + 1:02d}-{label}.jpg"
        try:
            page.screenshot(path=str(path), type="jpeg", quality=70, full_page=False)
        except Exception:  # a screenshot must never hide the real failure
            return None
        self.taken.append(path)
        return path


def _click_menu(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(menu)}$")).click()
    entry = page.locator(".lm-Menu-item:not(.lm-mod-disabled) .lm-Menu-itemLabel").filter(
        has_text=re.compile(f"^{re.escape(item)}$")
    )
    entry.click()


_KERNEL_DIALOG = "Select Kernel"


def _wait_kernel_idle(page, timeout_ms: float) -> list[str]:
    """Wait for the notebook's kernel to be idle, accepting a kernel-selection dialog (Python 3 is
    preselected) and dismissing any other dialog on the way; returns the dialogs' texts."""
    deadline = time.monotonic() + timeout_ms / 1000
    seen = []
    while True:
        remaining = max(1000.0, (deadline - time.monotonic()) * 1000)
        handle = page.wait_for_function(
            "() => window.__labcheck.dialog() !== null"
            " || window.__labcheck.kernelStatus() === 'idle'",
            timeout=remaining,
        )
        handle.dispose()
        dialog = page.evaluate("() => window.__labcheck.dialog()")
        if dialog is None:
            return seen
        seen.append(dialog)
        if dialog.startswith(_KERNEL_DIALOG):
            page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept").click()
        else:
            page.keyboard.press("Escape")
        page.wait_for_function("() => window.__labcheck.dialog() === null", timeout=10_000)
        if time.monotonic() > deadline:
            raise TimeoutError("the kernel did not become idle")


def run_notebook(
    context, server: LabServer, name: str, shoot: Screenshots, timeout: float = 240.0
) -> LabRun:
    """Open ``name`` (relative to the server root) in a new tab, clear outputs, run all cells
    through the menus and wait until everything ran or an error stopped the run.

    Never asserts: inspect :meth:`LabRun.problems`, which also reports a notebook still busy
    after ``timeout`` seconds (the run is then described as it stands).
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    start = time.monotonic()
    page = context.new_page()
    page.add_init_script(script=_PROBES_JS)
    workspace = "e2e-" + secrets.token_hex(4)  # a fresh layout: no tabs restored from earlier runs
    page.goto(server.url(f"lab/workspaces/{workspace}/tree/{name}?token={server.token}"))
    page.wait_for_function("() => window.__labcheck.panel() !== null", timeout=60_000)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=60_000)
    dialogs = _wait_kernel_idle(page, timeout_ms=120_000)
    shoot(page, "opened")

    # Outputs saved in the file would make "every cell has a count" true before anything ran.
    _click_menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(
        "() => window.__labcheck.prompts().every(p => p === '[ ]:' || p === '')", timeout=10_000
    )
    _click_menu(page, "Run", "Run All Cells")
    page.wait_for_function(
        "() => window.__labcheck.prompts().some(p => p !== '[ ]:' && p !== '')", timeout=30_000
    )
    # Done when nothing is queued or running and the kernel is idle, for four checks in a row
    # (a second): between two queued cells the kernel is idle for a moment. An error stops Run
    # All and un-queues the rest, so this also ends a failing run.
    timed_out = None
    try:
        page.wait_for_function(
            "() => window.__labcheck.settled(4)", timeout=timeout * 1000, polling=250
        )
    except PlaywrightTimeout:
        timed_out = timeout
    report = page.evaluate("() => window.__labcheck.report()")
    run = LabRun(
        name=name,
        page=page,
        cells=[
            CellView(
                index=c["index"],
                type=c["type"],
                source=c["source"],
                tags=list(c["tags"]),
                prompt=c["prompt"],
                errors=list(c["errors"]),
                rendered_tracebacks=list(c["renderedTracebacks"]),
                text=c["text"],
                images=c["images"],
            )
            for c in report["cells"]
        ],
        headings=report["headings"],
        kernel_status=report["kernel"],
        seconds=time.monotonic() - start,
        dialogs=dialogs,
        timed_out=timed_out,
    )
    focus = _first_problem_cell(run)
    _show_cell(page, focus if focus is not None else len(run.cells) - 1)
    shoot(page, "ran")
    run.screenshots = shoot.taken
    return run


def _first_problem_cell(run: LabRun) -> int | None:
    for cell in run.cells:
        failed = (cell.errors or cell.rendered_tracebacks) and "raises-exception" not in cell.tags
        if failed or cell.prompt == "[*]:":
            return cell.index
    return None


def _show_cell(page, index: int) -> None:
    page.evaluate(
        "(i) => { const p = window.__labcheck.panel();"
        " const c = p && p.content.widgets[i]; if (c) c.node.scrollIntoView({block: 'center'}); }",
        index,
    )


def check_notebook(
    context,
    server: LabServer,
    name: str,
    shoot: Screenshots,
    expect: str | None = None,
    timeout: float = 240.0,
) -> LabRun:
    """:func:`run_notebook`, then raise :class:`NotebookUIError` listing every problem found."""
    run = run_notebook(context, server, name, shoot, timeout=timeout)
    problems = run.problems(expect)
    if problems:
        raise NotebookUIError(run, problems)
    return run


# --- widgets ---------------------------------------------------------------------------------

_SLIDER = ".jp-OutputArea-output .widget-slider"

# What the learner sees next to a slider: the cell's rendered outputs except the controls
# themselves (their readout changes too), plus image sources, which change when a plot redraws.
_OUTPUT_SIGNATURE_JS = r"""
(slider) => {
  const cell = slider.closest('.jp-Cell');
  const controls = new Set(cell.querySelectorAll(
    '.widget-slider, .widget-dropdown, .widget-readout, .widget-label'));
  const parts = [];
  const walk = (node) => {
    if (controls.has(node)) return;
    if (node.nodeType === Node.TEXT_NODE) { parts.push(node.textContent); return; }
    if (node.tagName === 'IMG') parts.push('img:' + node.getAttribute('src'));
    for (const child of node.childNodes) walk(child);
  };
  walk(cell.querySelector('.jp-Cell-outputArea') || cell);  // widget outputs nest inside it
  return parts.join('');
}
"""


@dataclass
class SliderMove:
    """Result of :func:`move_first_slider`."""

    before: str
    after: str
    output_before: str
    output_after: str
    problems: list[str]


def move_first_slider(run: LabRun, shoot: Screenshots, presses: int = 1, timeout: float = 60.0):
    """Focus the first slider's handle, press an arrow key ``presses`` times (towards the side
    with room), and wait until the output next to it changed and then settled with the kernel idle.

    Returns a :class:`SliderMove`; its ``problems`` name anything a learner would notice: no
    slider, value unchanged, output unchanged, or a traceback after the move.
    """
    page = run.page
    slider = page.locator(_SLIDER).first
    if slider.count() == 0:
        return SliderMove("", "", "", "", [f"{run.name} shows no slider"])
    slider.scroll_into_view_if_needed()
    handle = slider.locator("[role=slider]").first
    handle.wait_for(state="visible", timeout=10_000)
    value = float(handle.get_attribute("aria-valuenow"))
    top = float(handle.get_attribute("aria-valuemax"))
    key = "ArrowLeft" if value >= top else "ArrowRight"
    readout = slider.locator(".widget-readout")
    before = readout.inner_text().strip()
    output_before = slider.evaluate(_OUTPUT_SIGNATURE_JS)
    shoot(page, "slider-before")

    page.evaluate("() => { window.__labcheck.lastSig = null; }")
    handle.focus()
    for _ in range(presses):
        page.keyboard.press(key)
    problems = []
    try:
        # Each key press is one callback in the kernel: wait for a changed output that then stays
        # the same for three polls in a row with the kernel idle, i.e. the last callback finished.
        page.wait_for_function(
            f"""([s, before]) => {{
              const sig = ({_OUTPUT_SIGNATURE_JS})(s), lab = window.__labcheck;
              if (sig === before || lab.kernelStatus() !== 'idle' || sig !== lab.lastSig) {{
                lab.lastSig = sig; lab.stable = 0; return false;
              }}
              return ++lab.stable >= 3;
            }}""",
            arg=[slider.element_handle(), output_before],
            timeout=timeout * 1000,
            polling=200,
        )
    except Exception as exc:  # playwright's TimeoutError; reported, not raised, like the rest
        problems.append(f"output next to the slider did not change within {timeout:.0f} s ({exc})")
    after = readout.inner_text().strip()
    output_after = slider.evaluate(_OUTPUT_SIGNATURE_JS)
    if after == before:
        problems.append(f"slider value stayed at {before!r} after {presses}× {key}")
    report = page.evaluate("() => window.__labcheck.report()")
    for cell in report["cells"]:
        if "raises-exception" not in cell["tags"]:
            problems += [
                f"cell {cell['index'] + 1} shows a traceback: {t}"
                for t in cell["renderedTracebacks"]
            ]
    shoot(page, "slider-after")
    run.screenshots = shoot.taken
    return SliderMove(before, after, output_before, output_after, problems)
