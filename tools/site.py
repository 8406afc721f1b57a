"""The workbook as a static website, in an instructor and a student edition.

    python tools/site.py                                  # both editions into build/site/
    python tools/site.py --edition student --out DIR      # DIR/student/index.html

Both editions are rendered by Sphinx + myst-nb (configuration: ``docs/site/conf.py``) from the
committed outputs; nothing is executed. Each build works on copies of the notebooks in a temporary
source folder, so ``notebooks/`` is never changed:

* the *instructor* edition shows every lab as committed, with each exercise cell folded away
  behind a toggle: the cells ``course.is_exercise_cell`` names (nbgrader solution, test and
  model-answer cells) and the cells tagged ``hide-cell``. It also has the instructor guide,
  ``docs/instructor-guide.md``, when there is one;
* the *student* edition is ``course.student_edition`` of each lab: nbgrader's own preprocessors
  strip the solutions, hidden tests and model answers, and exercise cells lose their outputs.

Widgets need a kernel, so the site shows the static fallback (text or image) saved beside each
widget view; views without one are dropped. Relative links in the pages are rewritten for the
site's flat layout: a link to another page of the site stays a link, a link to any other file of
the repository becomes its path in code type (the site does not ship it).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

import nbformat
from nbformat import NotebookNode

if str(Path(__file__).parent) not in sys.path:  # imported from elsewhere than `python tools/..`
    sys.path.insert(0, str(Path(__file__).parent))
from course import is_exercise_cell, nbgrader_meta, student_edition

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
CONF_DIR = REPO / "docs" / "site"
GUIDE = REPO / "docs" / "instructor-guide.md"
DEFAULT_OUT = REPO / "build" / "site"
EDITIONS = ("instructor", "student")
REFERENCE_PAGES = ("ROBUSTNESS.md",)  # markdown pages kept beside the labs in notebooks/
GUIDE_PAGE = "instructor-guide.md"
ASSETS = "_assets"  # images the markdown pages show, copied from the repository
TITLES = {
    "instructor": "ticketlab · instructor edition",
    "student": "ticketlab · student edition",
}
# module -> the package that provides it
REQUIRED = {
    "sphinx": "Sphinx",
    "myst_nb": "myst-nb",
    "sphinx_book_theme": "sphinx-book-theme",
    "nbgrader": "nbgrader",
}
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

# The toggle myst-nb draws around a hidden code cell (its CSS wants the div.cell around it),
# reused for hidden markdown cells.
_DETAILS_OPEN = (
    '<div class="cell docutils container">\n'
    '<details class="admonition hide above-input">\n'
    '<summary aria-label="Toggle hidden content">\n'
    '<p class="collapsed admonition-title">Show {kind}</p>\n'
    '<p class="expanded admonition-title">Hide {kind}</p>\n'
    "</summary>\n"
)
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(\s+#+)?\s*$")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)\s*$")
_LINK = re.compile(  # an inline link or image, or a code span (matched to be left alone)
    r"(?P<bang>!?)\[(?P<text>[^\]]*)\]\(\s*<?(?P<target>[^)\s>]+)>?(?P<title>\s+\"[^\"]*\")?\s*\)"
    r"|`+[^`]*`+"
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class SiteError(Exception):
    """A problem with the inputs of a build, explained so that the reader can fix it."""


# --- what each edition shows --------------------------------------------------------------------


def hidden_kind(cell: NotebookNode) -> str | None:
    """What the instructor edition folds away in this cell, as its toggle names it ("solution",
    "tests", "model answer", "cell"), or None for a cell shown as it is."""
    tags = cell.get("metadata", {}).get("tags", [])
    meta = nbgrader_meta(cell)
    if cell.cell_type == "markdown" and is_exercise_cell(cell):
        return "model answer"
    if meta.get("solution") or "solution" in tags:
        return "solution"
    if meta.get("grade"):
        return "tests"
    return "cell" if "hide-cell" in tags else None


def demote_headings(markdown: str) -> str:
    """Turns headings into bold lines, outside code fences. Inside a toggle a heading would open
    a new section of the page and leave the toggle's closing tag in another one."""
    lines: list[str] = []
    fenced = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _ATX_HEADING.match(line)
        if heading:
            line = f"**{heading.group(1)}**"
        elif not fenced and lines and lines[-1].strip() and _SETEXT_UNDERLINE.match(line):
            lines.append("")  # a rule or plain text, not the underline of a heading
        lines.append(line)
    return "\n".join(lines)


def folded_markdown(source: str, kind: str) -> str:
    """The markdown wrapped in the same <details> toggle myst-nb draws around hidden code."""
    return f"{_DETAILS_OPEN.format(kind=kind)}\n{demote_headings(source)}\n\n</details>\n</div>\n"


def hide_exercises(nb: NotebookNode) -> NotebookNode:
    """Instructor edition, in place: each exercise cell collapsed behind a labelled toggle
    (code cells by myst-nb's ``hide-cell`` tag, markdown cells by a <details> block)."""
    for cell in nb.cells:
        kind = hidden_kind(cell)
        if kind is None:
            continue
        if cell.cell_type == "markdown":
            cell.source = folded_markdown(cell.source, kind)
            continue
        tags = cell.metadata.setdefault("tags", [])
        if "hide-cell" not in tags:
            tags.append("hide-cell")
        if kind != "cell":  # otherwise myst-nb's own "Show code cell content"
            prompts = {"code_prompt_show": f"Show {kind}", "code_prompt_hide": f"Hide {kind}"}
            cell.metadata.setdefault("mystnb", {}).update(prompts)
    return nb


def static_widgets(nb: NotebookNode) -> NotebookNode:
    """In place: drops the saved widget state and every output that is nothing but a widget
    view. The site renders the fallback beside a view instead (docs/site/conf.py), so neither
    would show anything but could pull in the widget JavaScript."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if set(o.get("data", ())) != {WIDGET_VIEW}]
    return nb


def edition_notebook(nb: NotebookNode, edition: str) -> NotebookNode:
    """The copy of an instructor notebook that ``edition`` renders."""
    nb = student_edition(nb) if edition == "student" else hide_exercises(nb)
    return static_widgets(nb)


# --- links ------------------------------------------------------------------------------------


class LinkRewriter:
    """Rewrites the relative links of markdown written for the repository's layout (``base``:
    the folder the markdown lives in) into links that work in the site's flat source folder."""

    def __init__(self, pages: dict[Path, str], src: Path):
        self.pages = pages  # resolved repository path -> name of the page in the site
        self.src = src

    def markdown(self, text: str, base: Path, where: str) -> str:
        """``text`` with every link outside code rewritten; ``where`` names it in errors."""
        lines, fenced = [], False
        for line in text.split("\n"):
            if _FENCE.match(line):
                fenced = not fenced
            if not fenced:
                line = _LINK.sub(lambda match: self.link(match, base, where), line)
            lines.append(line)
        return "\n".join(lines)

    def link(self, match: re.Match, base: Path, where: str) -> str:
        """One link, rewritten: to a page of the site, to a copied image, or to plain text."""
        bang, text, target, title = match.group("bang", "text", "target", "title")
        if target is None or _SCHEME.match(target) or target.startswith(("#", "/")):
            return match.group(0)  # a code span, a URL, an anchor in the page, an absolute path
        path, _, anchor = target.partition("#")
        resolved = (base / unquote(path)).resolve()
        if not resolved.exists():
            raise SiteError(
                f"{where}: the link {target!r} points to {resolved}, which does not exist"
            )
        if resolved in self.pages:
            new = self.pages[resolved] + (f"#{anchor}" if anchor else "")
            return f"{bang}[{text}]({new}{title or ''})"
        if not resolved.is_relative_to(REPO):
            raise SiteError(
                f"{where}: the link {target!r} points outside the repository; "
                "link to a page of the site or to a file in the repository instead"
            )
        shown = resolved.relative_to(REPO).as_posix()
        if bang and resolved.is_file():
            copy = self.src / ASSETS / shown
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(resolved, copy)
            return f"![{text}]({ASSETS}/{shown}{title or ''})"
        code = f"`{shown}`"
        return code if text.strip("` ") in ("", shown) else f"{text} ({code})"


# --- sources and build ------------------------------------------------------------------------


def labs_in(folder: Path) -> list[Path]:
    """The labs (``NN_*.ipynb``) in ``folder``, in order."""
    labs = sorted(folder.glob("[0-9]*.ipynb"))
    if not labs:
        raise SiteError(f"no labs (files named like 00_name.ipynb) in {folder}")
    return labs


def index_page(edition: str, labs: list[str], reference: list[str], guide: bool) -> str:
    """The home page: what the workbook is, what this edition holds, and the table of contents."""
    about = {
        "instructor": (
            "This is the **instructor edition**: every lab as committed, with each exercise's "
            "solution, tests and model answer folded away behind a *Show* toggle below it."
        ),
        "student": (
            "This is the **student edition**: the exercises are yours to solve, so their "
            "solutions and outputs are not here. Everything else shows the outputs of a full run; "
            "to run and change a lab, open it in JupyterLab with `./workbook lab`."
        ),
    }[edition]
    sections = [("Labs", labs), ("Reference", reference)]
    if guide:
        sections.append(("For instructors", [Path(GUIDE_PAGE).stem]))
    toctrees = "\n".join(
        f"```{{toctree}}\n:caption: {caption}\n:maxdepth: 1\n\n" + "\n".join(pages) + "\n```\n"
        for caption, pages in sections
        if pages
    )
    return (
        "# ticketlab\n\n"
        "A Jupyter-native workbook for the science of sparse neural networks: the lottery ticket "
        "hypothesis, pruning, rewinding and their controls, run as small, honest experiments "
        "that repeat on a laptop. Each lab asks one question, states its prediction before "
        "running, and decides it with a stated rule.\n\n"
        f"{about}\n\n{toctrees}"
    )


def write_sources(edition: str, notebooks: Path, guide: Path | None, src: Path) -> None:
    """Writes the pages of ``edition`` (labs, reference pages, index, and the instructor guide
    ``guide`` unless it is None or this is the student edition) into ``src``."""
    labs = labs_in(notebooks)
    reference = [notebooks / name for name in REFERENCE_PAGES if (notebooks / name).is_file()]
    guide = guide if edition == "instructor" else None
    pages = {p.resolve(): p.name for p in [*labs, *reference]}
    if guide is not None:
        pages[guide.resolve()] = GUIDE_PAGE
    links = LinkRewriter(pages, src)
    src.mkdir(parents=True)
    for lab in labs:
        nb = edition_notebook(nbformat.read(lab, as_version=4), edition)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown":
                cell.source = links.markdown(cell.source, notebooks, f"{lab.name} cell {index + 1}")
        nbformat.write(nb, src / lab.name)
    for page in reference:
        (src / page.name).write_text(links.markdown(page.read_text(), notebooks, page.name))
    if guide is not None:
        text = links.markdown(guide.read_text(), guide.parent, str(guide))
        (src / GUIDE_PAGE).write_text(text)
    stems = [p.stem for p in labs], [p.stem for p in reference]
    (src / "index.md").write_text(index_page(edition, *stems, guide=guide is not None))


def sphinx_build(src: Path, out: Path, doctrees: Path, edition: str) -> None:
    """Runs ``sphinx-build`` in this process (a new one would spend seconds re-importing what
    this one has, nbformat above all); any warning fails the build, after all are shown."""
    from sphinx.cmd.build import build_main

    # --keep-going: every warning is shown before the build fails (the default from Sphinx 8.1).
    arguments = ["-b", "html", "-q", "-W", "--keep-going", "-c", str(CONF_DIR), "-d", str(doctrees)]
    arguments += ["-D", f"html_title={TITLES[edition]}", str(src), str(out)]
    if build_main(arguments) != 0:
        raise SiteError(
            f"sphinx-build failed for the {edition} edition: its warnings and errors are above "
            "(each names the page and cell to fix)"
        )


def replace_folder(built: Path, target: Path) -> None:
    """Moves the new site into ``target``, replacing an earlier site but nothing else."""
    if target.exists():
        if not (target / ".buildinfo").is_file():
            raise SiteError(
                f"{target} exists and is not a site built by this tool; "
                "choose another --out or remove it"
            )
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(built, target)


def build(edition: str, notebooks: Path, guide: Path | None, out: Path) -> Path:
    """Builds ``edition`` into ``out/<edition>/`` and returns its index.html."""
    with tempfile.TemporaryDirectory(prefix=f"ticketlab-site-{edition}-") as tmp:
        work = Path(tmp)
        write_sources(edition, notebooks, guide, work / "src")
        # myst-nb writes its own files beside the output folder, so that folder lives in `work`.
        sphinx_build(work / "src", work / "html", work / "doctrees", edition)
        if edition == "instructor":  # the download button then offers each lab as committed
            for lab in labs_in(notebooks):
                shutil.copyfile(lab, work / "html" / "_sources" / lab.name)
        replace_folder(work / "html", out / edition)
    return out / edition / "index.html"


def check_installed() -> None:
    """Raises SiteError naming what to install when a package the build needs is missing."""
    missing = [
        name for module, name in REQUIRED.items() if importlib.util.find_spec(module) is None
    ]
    if missing:
        raise SiteError(
            f"{', '.join(missing)} not installed: pip install -e '.[course]' (or ./workbook setup)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/site.py",
        description=__doc__.split("\n")[0],
        epilog="Each edition goes into its own folder under --out: instructor/ and student/.",
    )
    parser.add_argument(
        "--edition", choices=(*EDITIONS, "both"), default="both", help="what to build (both)"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for the editions (build/site)"
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=NOTEBOOKS,
        help="folder of the labs (NN_*.ipynb) and ROBUSTNESS.md (default: notebooks/)",
    )
    parser.add_argument(
        "--guide",
        type=Path,
        help="the instructor guide (default: docs/instructor-guide.md, left out if missing)",
    )
    args = parser.parse_args(argv)
    if not args.notebooks.is_dir():
        parser.error(f"--notebooks {args.notebooks}: no such folder")
    if args.guide is not None and not args.guide.is_file():
        parser.error(f"--guide {args.guide}: no such file")
    if args.guide is None and GUIDE.is_file():  # the default, once the guide has been written
        args.guide = GUIDE
    guide = args.guide and args.guide.resolve()
    notebooks, out = args.notebooks.resolve(), args.out.resolve()
    editions = EDITIONS if args.edition == "both" else (args.edition,)
    try:
        check_installed()
        for edition in editions:
            start = time.perf_counter()
            index = build(edition, notebooks, guide, out)
            print(f"{edition} edition ({time.perf_counter() - start:.1f} s): {index}")
    except SiteError as error:
        print(f"tools/site.py: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
