"""The workbook as a website (``tools/site.py``), opened in headless Chromium.

Both editions are built once, for the workbook's own notebooks and for a tiny synthetic nbgrader
lab written here, and served over a local HTTP server. Every HTML page must load without a console
error, page error, failed request or request leaving the machine; every image must have loaded,
every internal link must resolve to a file of the same edition (and its ``#anchor`` to an element
of the target page), and widgets must show the static fallback saved beside their view.

The student edition must leak nothing nbgrader strips. What may not appear is derived from the
instructor notebooks, independently of ``course.student_edition``: the code between ``### BEGIN
SOLUTION`` and ``### END SOLUTION`` (the whole cell when a solution cell has no such region), the
hidden tests, the model answers and mark schemes, and the text outputs and images of exercise
cells, keeping strings of at least ``MIN_CHARS`` characters that no other cell shows. Each such
string must appear in the instructor edition, folded away behind a toggle that opens on a click,
so the scan cannot pass by looking for nothing; the synthetic lab plants one of each kind.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import threading
import zlib
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

if str(Path(__file__).parent) not in sys.path:  # pytest's importlib mode adds no test folders
    sys.path.insert(0, str(Path(__file__).parent))
import labdriver

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tools") not in sys.path:
    sys.path.insert(0, str(REPO / "tools"))
from course import is_exercise_cell, nbgrader_meta  # noqa: E402

pytestmark = pytest.mark.e2e

SITE_TOOL = REPO / "tools" / "site.py"
GUIDE = REPO / "docs" / "instructor-guide.md"
EDITIONS = ("instructor", "student")
MIN_CHARS = 20  # shorter lines ("import torch") say too little to call a leak
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
COURSE_MODULES = ("sphinx", "myst_nb", "sphinx_book_theme", "nbgrader")
_TAG = re.compile(r"<[^>]*>")
# Sphinx typesets prose ("smart quotes"); code and outputs are left as they are.
_TYPOGRAPHY = str.maketrans(
    {"“": '"', "”": '"', "‘": "'", "’": "'", "–": "--", "—": "---", "…": "..."}
)


def normalize(text: str) -> str:
    """Text as compared: typographic quotes and dashes as typed, whitespace runs as one space."""
    return " ".join(text.translate(_TYPOGRAPHY).split())


# --- what the student edition may not show --------------------------------------------------------


def is_solution(cell) -> bool:
    """A solution cell: by its nbgrader metadata, or by the older ``solution`` tag."""
    return bool(nbgrader_meta(cell).get("solution")) or "solution" in cell.metadata.get("tags", [])


def is_exercise(cell) -> bool:
    """A cell whose outputs only the instructor sees: ``course.is_exercise_cell``, or a solution
    cell marked by its tag alone."""
    return is_exercise_cell(cell) or is_solution(cell)


def region(source: str, begin: str, end: str) -> tuple[list[str], list[str]]:
    """The lines strictly between lines containing ``begin`` and ``end``, and all other lines
    except the delimiters."""
    inside, outside, within = [], [], False
    for line in source.splitlines():
        if begin in line:
            within = True
        elif end in line:
            within = False
        else:
            (inside if within else outside).append(line)
    return inside, outside


def markdown_fragments(lines: list[str]) -> list[str]:
    """The runs of plain prose in markdown lines, as the rendered page shows them: no emphasis or
    code marks, link text without the target, no HTML, no list markers."""
    fragments = []
    for line in lines:
        line = re.sub(r"<!--.*?-->|<[^>]+>", " ", line)
        line = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", line)
        line = re.sub(r"^\s*(?:[-+*]|\d+[.)]|#+|>)\s+", "", line)
        fragments += re.split(r"[*_`\\|]+", line)
    return fragments


def text_outputs(cell) -> list[str]:
    """The lines of a code cell's stream outputs and text-only results, as shown verbatim."""
    lines = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            lines += output.text.splitlines()
        elif set(output.get("data", {})) == {"text/plain"}:
            lines += output.data["text/plain"].splitlines()
    return [line for line in lines if "\r" not in line and "\x1b" not in line]


def output_texts(cell) -> list[str]:
    """Every text a code cell's outputs hold (any text MIME type), for the allowed haystack."""
    texts = []
    for output in cell.get("outputs", []):
        texts.append(output.get("text", ""))
        texts += [v for v in output.get("data", {}).values() if isinstance(v, str)]
    return texts


def png_hashes(cell) -> list[str]:
    """sha256 of every PNG a code cell's outputs hold (as the site writes it to _images/)."""
    return [
        hashlib.sha256(base64.b64decode(o.data["image/png"])).hexdigest()
        for o in cell.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]


@dataclass
class Forbidden:
    """What the student edition of one set of labs may not show."""

    strings: dict[str, str] = field(default_factory=dict)  # normalized text -> "lab cell N"
    images: dict[str, str] = field(default_factory=dict)  # sha256 of a PNG -> "lab cell N"

    def for_lab(self, lab: str) -> list[str]:
        """The forbidden strings that come from ``lab`` (a notebook's stem)."""
        return [s for s, where in self.strings.items() if where.split()[0] == lab]

    def describe(self, key: str) -> str:
        """A forbidden string or image hash, and the cell it comes from."""
        if key in self.images:
            return f"the image output of {self.images[key]}"
        return f"{key[:90]!r} (from {self.strings[key]})"


def cell_candidates(cell) -> tuple[list[str], list[str]]:
    """(strings only the instructor may see, strings everyone sees) of one cell."""
    source = cell.source
    secret, public = [], []
    if cell.cell_type == "markdown":
        scheme, rest = region(source, "BEGIN MARK SCHEME", "END MARK SCHEME")
        secret += markdown_fragments(scheme)
        if is_solution(cell):
            answer, outside = region("\n".join(rest), "BEGIN SOLUTION", "END SOLUTION")
            secret += markdown_fragments(answer or outside)
            public += outside if answer else []
        else:
            public += rest
        return secret, public
    solution, outside = region(source, "BEGIN SOLUTION", "END SOLUTION")
    if is_solution(cell):  # without a region, nbgrader replaces the whole cell
        secret += solution or outside
        public += outside if solution else []
    hidden, visible = region(source, "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
    if nbgrader_meta(cell).get("grade"):
        secret += hidden
        public += visible
    if is_exercise(cell):
        secret += text_outputs(cell)
    else:
        public += [source, *output_texts(cell)]
    return secret, public


def forbidden_content(notebooks: list[Path], other_pages: list[Path]) -> Forbidden:
    """The strings and images of ``notebooks`` that only the instructor edition may show: those
    of at least MIN_CHARS characters that no other cell (nor ``other_pages``) also shows."""
    import nbformat

    secret: dict[str, str] = {}
    public = [page.read_text() for page in other_pages]
    forbidden = Forbidden()
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for index, cell in enumerate(nb.cells):
            where = f"{path.stem} cell {index + 1}"
            hidden, shown = cell_candidates(cell)
            public += shown
            for text in map(normalize, hidden):
                secret.setdefault(text, where)
            if is_exercise(cell):
                forbidden.images |= dict.fromkeys(png_hashes(cell), where)
    haystack = normalize("\n".join(public))
    forbidden.strings = {
        text: where
        for text, where in secret.items()
        if len(text) >= MIN_CHARS and text not in haystack
    }
    return forbidden


def joined(value) -> str:
    """A notebook field as text (nbformat stores multi-line text as a list of lines)."""
    return "".join(value) if isinstance(value, list) else str(value)


def file_text(path: Path) -> str | None:
    """All the text of a file of the site, normalized; None for a binary file. HTML: everything
    but the tags (scripts included); a notebook: its sources and the text of its outputs."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        texts = [joined(cell["source"]) for cell in cells]
        texts += [
            joined(value)
            for cell in cells
            for output in cell.get("outputs", [])
            for value in [output.get("text", ""), *output.get("data", {}).values()]
        ]
        return normalize("\n".join(texts))
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return None
    return normalize(html.unescape(_TAG.sub("", text)) if path.suffix == ".html" else text)


def scan(root: Path, forbidden: Forbidden) -> list[tuple[str, str]]:
    """(file, forbidden string or image hash) for each forbidden thing in a file under ``root``."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in forbidden.images:
            found.append((name, digest))
            continue
        text = file_text(path)
        if text is not None:
            found += [(name, s) for s in forbidden.strings if s in text]
    return found


# --- the synthetic lab ----------------------------------------------------------------------------

PLANTED = {
    "solution code": "total = planted_helper(40) + 2  # planted solution line",
    "hidden test": "assert planted_hidden_check(total), 'a planted hidden test'",
    "solution output": "planted solution output: the answer is 42",
    "model answer": "A planted model answer: the helper adds forty, and two more make the total.",
    "mark scheme": "Planted rubric: one point for naming the helper.",
}
WIDGET_FALLBACK = "SyntheticSlider(value=3, description='planted knob')"


def tiny_png(rgb: bytes = b"\xff\x00\x00") -> bytes:
    """A valid 2×2 PNG of one colour (red by default), built by hand: no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + rgb * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))


def synthetic_lab():
    """One lab with one of everything the site must handle: an ordinary cell, widgets with a
    text, an image and no fallback, saved widget state, and an nbgrader exercise (solution with
    output and image, test cell with hidden tests, manually graded answer with a mark scheme)."""
    from nbformat import v4

    def graded(cell, grade_id, solution, grade, points=0):
        cell.metadata["nbgrader"] = {
            "grade_id": grade_id,
            "solution": solution,
            "grade": grade,
            "locked": not solution,
            "schema_version": 3,
            "task": False,
        } | ({"points": points} if grade else {})
        return cell

    stream = v4.new_output("stream", name="stdout", text=f"{PLANTED['solution output']}\n")
    red, green = (base64.b64encode(tiny_png(rgb)).decode() for rgb in (b"\xff\0\0", b"\0\xff\0"))
    image = v4.new_output("display_data", data={"image/png": red})
    view = {"version_major": 2, "version_minor": 0, "model_id": "planted-model"}
    widget = v4.new_output("display_data", data={WIDGET_VIEW: view, "text/plain": WIDGET_FALLBACK})
    plot = {WIDGET_VIEW: dict(view, model_id="plot"), "image/png": green, "text/plain": "Plot()"}
    bare_widget = v4.new_output("display_data", data={WIDGET_VIEW: dict(view, model_id="bare")})
    shown = v4.new_output("stream", name="stdout", text="an ordinary output every edition shows\n")
    cells = [
        v4.new_markdown_cell("# 01 · A synthetic lab\n\nSee [the robustness page](ROBUSTNESS.md)."),
        v4.new_code_cell("print('an ordinary output every edition shows')", outputs=[shown]),
        v4.new_code_cell(
            "planted_widgets()",
            outputs=[widget, v4.new_output("display_data", data=plot), bare_widget],
        ),
        v4.new_markdown_cell("## Exercises\n\nStore the answer in `total`."),
        graded(
            v4.new_code_cell(
                f"### BEGIN SOLUTION\n{PLANTED['solution code']}\n### END SOLUTION\n"
                "print(f'planted solution output: the answer is {total}')",
                outputs=[stream, image],
            ),
            "ex1_code",
            solution=True,
            grade=False,
        ),
        graded(
            v4.new_code_cell(
                "assert total == 42, 'the visible sample test'\n### BEGIN HIDDEN TESTS\n"
                f"{PLANTED['hidden test']}\n### END HIDDEN TESTS"
            ),
            "ex1_tests",
            solution=False,
            grade=True,
            points=1,
        ),
        graded(
            v4.new_markdown_cell(
                f"{PLANTED['model answer']}\n\n=== BEGIN MARK SCHEME ===\n"
                f"**{PLANTED['mark scheme']}**\n=== END MARK SCHEME ==="
            ),
            "ex1_answer",
            solution=True,
            grade=True,
            points=1,
        ),
    ]
    state = {"planted-model": {"model_name": "IntSliderModel", "state": {"value": 3}}}
    metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
        "widgets": {"application/vnd.jupyter.widget-state+json": {"state": state}},
    }
    return v4.new_notebook(cells=cells, metadata=metadata)


def write_synthetic(folder: Path) -> tuple[Path, Path]:
    """The synthetic lab, a ROBUSTNESS.md and an instructor guide whose links need rewriting;
    returns (notebooks folder, guide)."""
    import nbformat

    notebooks, docs = folder / "notebooks", folder / "docs"
    notebooks.mkdir(parents=True)
    docs.mkdir()
    nbformat.write(synthetic_lab(), notebooks / "01_synthetic.ipynb")
    (notebooks / "ROBUSTNESS.md").write_text(
        "# Robustness (synthetic)\n\nBack to [the lab](01_synthetic.ipynb#exercises).\n"
    )
    course = os.path.relpath(REPO / "tools" / "course.py", docs)
    guide = docs / "instructor-guide.md"
    guide.write_text(
        "# Instructor guide (synthetic)\n\n"
        "Start with [the exercises](../notebooks/01_synthetic.ipynb#exercises), read "
        f"[the robustness page](../notebooks/ROBUSTNESS.md) and grade with [the kit]({course}).\n"
    )
    return notebooks, guide


# --- building, serving, visiting ------------------------------------------------------------------


@dataclass
class Site:
    """Both editions of one set of labs, built by tools/site.py."""

    name: str
    root: Path  # holds instructor/ and student/
    notebooks: Path
    guide: Path | None
    forbidden: Forbidden
    build_output: str

    def labs(self) -> list[Path]:
        return sorted(self.notebooks.glob("[0-9]*.ipynb"))

    def pages(self, edition: str) -> list[Path]:
        folder = self.root / edition
        return sorted(
            p for p in folder.rglob("*.html") if p.relative_to(folder).parts[0] != "_static"
        )


def build_site(name: str, out: Path, notebooks: Path, guide: Path | None = None) -> Site:
    """Runs ``tools/site.py`` for both editions; forbidden content is read from the same labs."""
    labs = sorted(notebooks.glob("[0-9]*.ipynb"))
    forbidden = forbidden_content(labs, sorted(notebooks.glob("*.md")))
    command = [sys.executable, str(SITE_TOOL), "--out", str(out), "--notebooks", str(notebooks)]
    command += ["--guide", str(guide)] if guide else []
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"tools/site.py failed:\n{result.stdout}\n{result.stderr}"
    return Site(name, out, notebooks, guide, forbidden, result.stdout)


@pytest.fixture(scope="module")
def site_requirements(e2e_requirements) -> None:
    """Skips (fails under CI=true, like the browser requirements) without the course extra."""
    missing = [m for m in COURSE_MODULES if importlib.util.find_spec(m) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} missing: the site tests need `pip install -e .[course]`"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the site tests, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def sites(site_requirements, tmp_path_factory) -> dict[str, Site]:
    """The workbook (notebooks/, docs/instructor-guide.md if written) and the synthetic lab."""
    root = tmp_path_factory.mktemp("sites")
    notebooks, guide = write_synthetic(tmp_path_factory.mktemp("synthetic"))
    built = [
        build_site(
            "workbook", root / "workbook", REPO / "notebooks", GUIDE if GUIDE.is_file() else None
        ),
        build_site("synthetic", root / "synthetic", notebooks, guide),
    ]
    for site in built:
        print(f"{site.name}:\n{site.build_output}")  # the build times, shown with -s
    return {site.name: site for site in built}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # the tests report what matters
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """Chromium drops some connections early (its own /favicon.ico request, outside the
        site, which page events never see): that is not an error of the site."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server(sites):
    """A local HTTP server over the folder of all sites; yields its base URL."""
    root = next(iter(sites.values())).root.parent
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/", root
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class Visit:
    """One page of a site as Chromium showed it."""

    site: str
    edition: str
    path: str  # relative to the edition's folder
    problems: list[str]  # console errors, page errors, failed requests, unloaded images
    links: list[str]  # every <a href>, resolved by the browser, after the page's scripts ran
    widget_markup: list[str]  # widget views, widget state or "Loading widget" placeholders
    text: str  # textContent, normalized
    folded: str  # innerText as loaded (toggles closed), normalized
    unfolded: str  # innerText after clicking every toggle open, normalized
    ids: frozenset[str]  # what a #fragment can point to: ids and <a name>s

    @property
    def where(self) -> str:
        return f"{self.site}/{self.edition}/{self.path}"


_PAGE_STATE_JS = r"""() => ({
  brokenImages: [...document.images].filter(i => !i.complete || i.naturalWidth === 0)
    .map(i => i.currentSrc || i.src),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  widgetMarkup: [...document.querySelectorAll(
      'script[type^="application/vnd.jupyter.widget"], .jupyter-widgets, [class*="widget-"]')]
    .map(e => e.outerHTML.slice(0, 120))
    .concat(/Loading widget/i.test(document.body.textContent) ? ['"Loading widget" text'] : []),
  text: document.body.textContent,
  visible: document.body.innerText,
  ids: [...document.querySelectorAll('[id]')].map(e => e.id)
    .concat([...document.querySelectorAll('a[name]')].map(a => a.name)),
})"""
# A click on a toggle's summary, as a reader's (a DOM click: it runs the <details> toggle).
_OPEN_TOGGLES_JS = r"""() => {
  document.querySelectorAll('details.hide > summary').forEach(s => s.click());
  return document.body.innerText;
}"""


def visit(context, base: str, site: Site, edition: str, page_file: Path) -> Visit:
    """Opens one page and records what went wrong and what it shows, before and after a click
    on every toggle."""
    relative = page_file.relative_to(site.root / edition).as_posix()
    url = f"{base}{site.root.name}/{edition}/{relative}"
    problems: list[str] = []
    page = context.new_page()

    def local_only(route):
        """The site must work offline: a request leaving the machine is refused and reported."""
        if route.request.url.startswith(base):
            route.continue_()
        else:
            problems.append(f"request outside the machine: {route.request.url}")
            route.abort()

    page.route("**/*", local_only)
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    try:
        page.goto(url, wait_until="load")
        state = page.evaluate(_PAGE_STATE_JS)
        unfolded = page.evaluate(_OPEN_TOGGLES_JS)
    finally:
        page.close()
    problems += [f"image not loaded: {src}" for src in state["brokenImages"]]
    return Visit(
        site=site.name,
        edition=edition,
        path=relative,
        problems=problems,
        links=state["links"],
        widget_markup=state["widgetMarkup"],
        text=normalize(state["text"]),
        folded=normalize(state["visible"]),
        unfolded=normalize(unfolded),
        ids=frozenset(state["ids"]),
    )


@pytest.fixture(scope="module")
def visits(sites, server, playwright_driver, tmp_path_factory) -> dict[tuple[str, str, str], Visit]:
    """Every page of every edition of both sites, visited once in one browser (its own profile,
    on the session's Playwright, which the JupyterLab tests share)."""
    base, _ = server
    found = {}
    profile = tmp_path_factory.mktemp("site-profile")
    context = labdriver.launch_chromium(playwright_driver, profile)
    try:
        for site in sites.values():
            for edition in EDITIONS:
                for page_file in site.pages(edition):
                    seen = visit(context, base, site, edition, page_file)
                    found[seen.site, seen.edition, seen.path] = seen
    finally:
        context.close()
    return found


def link_problem(href: str, seen: Visit, base: str, served: Path, ids: dict) -> str | None:
    """What is wrong with a link of a page, or None; ``ids`` maps each visited page's file to its
    ids. Links off the local server (the web, mailto:) are not followed: the tests have no
    network, and the site needs none."""
    if not href.startswith(base):
        return None
    url = urlsplit(href)
    target = served / unquote(url.path).lstrip("/")
    if url.path.endswith("/"):
        target = target / "index.html"
    if not target.is_relative_to(served / seen.site / seen.edition):
        return f"{href} leaves the {seen.edition} edition"
    if not target.is_file():
        return f"{href}: no such file"
    fragment = unquote(url.fragment)
    if fragment and target.suffix == ".html" and fragment not in ids.get(target, ()):
        return f"{href}: {target.name} has no element with id {fragment!r}"
    return None


def expected_fallback(output) -> tuple[str, str] | None:
    """What the site must show for a widget view: ("text", its text/plain) or ("image", the
    sha256 of its PNG), the first of these in myst-nb's order once widget views are excluded;
    None when it is HTML or another kind this test does not compare."""
    data = output.get("data", {})
    if WIDGET_VIEW not in data or data.keys() & {"application/javascript", "text/html"}:
        return None
    if "image/png" in data:
        return "image", hashlib.sha256(base64.b64decode(data["image/png"])).hexdigest()
    if data.keys() - {WIDGET_VIEW} == {"text/plain"}:
        return "text", normalize(data["text/plain"])
    return None


def widget_fallbacks(lab: Path, edition: str) -> list[tuple[str, str]]:
    """The fallbacks a lab's page must show in ``edition``; the student edition has no outputs
    of exercise cells, so their widgets are not expected there."""
    import nbformat

    nb = nbformat.read(lab, as_version=4)
    return [
        fallback
        for cell in nb.cells
        if cell.cell_type == "code" and (edition == "instructor" or not is_exercise(cell))
        for fallback in map(expected_fallback, cell.outputs)
        if fallback is not None
    ]


def image_hashes(folder: Path) -> set[str]:
    """sha256 of every file in ``folder`` (an edition's _images/)."""
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*") if p.is_file()}


# --- the tests ------------------------------------------------------------------------------------


def test_every_page_loads_cleanly(visits):
    problems = [f"{seen.where}: {problem}" for seen in visits.values() for problem in seen.problems]
    assert not problems, "\n".join(problems)


def test_index_lists_every_page_in_order(sites, visits):
    for site in sites.values():
        for edition in EDITIONS:
            index = visits[site.name, edition, "index.html"]
            names = [urlsplit(href).path.rsplit("/", 1)[-1] for href in index.links]
            labs = [f"{lab.stem}.html" for lab in site.labs()]
            missing = [lab for lab in [*labs, "ROBUSTNESS.html"] if lab not in names]
            assert not missing, f"{index.where} does not link to {missing}"
            assert [names.index(lab) for lab in labs] == sorted(names.index(lab) for lab in labs)
            has_guide = edition == "instructor" and site.guide is not None
            assert ("instructor-guide.html" in names) == has_guide, f"{index.where}: the guide"


def test_internal_links_resolve(visits, server):
    base, served = server
    ids = {served / seen.site / seen.edition / seen.path: seen.ids for seen in visits.values()}
    problems = [
        f"{seen.where}: {problem}"
        for seen in visits.values()
        for problem in {link_problem(href, seen, base, served, ids) for href in seen.links}
        if problem
    ]
    assert not problems, "\n".join(sorted(problems))


def test_widgets_show_their_static_fallback(sites, visits):
    problems = [
        f"{seen.where}: {markup}" for seen in visits.values() for markup in seen.widget_markup
    ]
    checked = 0
    for site in sites.values():
        for edition in EDITIONS:
            images = image_hashes(site.root / edition / "_images")
            for lab in site.labs():
                seen = visits[site.name, edition, f"{lab.stem}.html"]
                for kind, expected in widget_fallbacks(lab, edition):
                    checked += 1
                    if expected not in (seen.text if kind == "text" else images):
                        problems.append(f"{seen.where}: widget fallback {expected[:80]!r} missing")
    assert not problems, "\n".join(problems)
    assert checked > 2, "no widget fallback was checked: the labs' widget outputs are gone?"
    synthetic = visits["synthetic", "student", "01_synthetic.html"]
    assert normalize(WIDGET_FALLBACK) in synthetic.folded, "a widget's fallback must be visible"


def test_instructor_edition_folds_exercises_behind_a_toggle(sites, visits):
    problems, checked = [], 0
    for site in sites.values():
        for lab in site.labs():
            seen = visits[site.name, "instructor", f"{lab.stem}.html"]
            for text in site.forbidden.for_lab(lab.stem):
                checked += 1
                if text not in seen.text:
                    problems.append(f"{seen.where}: {text[:80]!r} missing")
                elif text in seen.folded:
                    problems.append(f"{seen.where}: {text[:80]!r} shown before a toggle is opened")
                elif text not in seen.unfolded:
                    problems.append(
                        f"{seen.where}: {text[:80]!r} hidden after opening every toggle"
                    )
        images = image_hashes(site.root / "instructor" / "_images")
        problems += [
            f"{site.name}: the image output of {where} is missing from the instructor edition"
            for digest, where in site.forbidden.images.items()
            if digest not in images
        ]
    assert not problems, "\n".join(problems)
    assert checked, "no solution, hidden test or model answer found in the instructor notebooks"


@pytest.mark.parametrize("name", ["workbook", "synthetic"])
def test_student_edition_leaks_no_solution(sites, name):
    site = sites[name]
    assert site.forbidden.strings, f"{name}: nothing to look for (no exercise cells found)"
    found = scan(site.root / "student", site.forbidden)
    leaks = [f"{path}: {site.forbidden.describe(key)}" for path, key in found]
    assert not leaks, f"{len(leaks)} leak(s) in the student edition:\n" + "\n".join(leaks[:30])


def test_the_leak_scan_catches_each_planted_kind(sites):
    site = sites["synthetic"]
    missed = [
        kind for kind, text in PLANTED.items() if normalize(text) not in site.forbidden.strings
    ]
    assert not missed, f"forbidden_content() missed the planted {missed}"
    assert hashlib.sha256(tiny_png()).hexdigest() in site.forbidden.images
    # Scanned like a student edition, the instructor edition leaks everything: the scan works.
    caught = {key for _, key in scan(site.root / "instructor", site.forbidden)}
    assert caught == set(site.forbidden.strings) | set(site.forbidden.images)


def test_student_edition_keeps_the_exercise_itself(sites, visits):
    seen = visits["synthetic", "student", "01_synthetic.html"]
    for shown in ("raise NotImplementedError()", "YOUR ANSWER HERE", "the visible sample test"):
        assert shown in seen.unfolded, f"{seen.where} does not show {shown!r}"
    assert "an ordinary output every edition shows" in seen.folded
    assert not (sites["synthetic"].root / "student" / "instructor-guide.html").exists()


def test_instructor_guide_links_are_rewritten(visits, server):
    base, _ = server
    guide = visits["synthetic", "instructor", "instructor-guide.html"]
    edition = f"{base}synthetic/instructor/"
    for target in ("01_synthetic.html#exercises", "ROBUSTNESS.html"):
        assert edition + target in guide.links, f"the guide's link to {target} was not rewritten"
    assert "the kit (tools/course.py)" in guide.folded, "a repository file is named, not linked"
    assert not [href for href in guide.links if "course.py" in href]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--edition", "teacher"], "invalid choice: 'teacher'"),
        (["--notebooks", "no/such/folder"], "no such folder"),
        (["--guide", "no/such/guide.md"], "no such file"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(capsys, arguments, message):
    # In this process: a fresh Python would spend seconds importing nbformat first.
    spec = importlib.util.spec_from_file_location("ticketlab_site_tool", SITE_TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit) as exit:
        tool.main(arguments)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err
