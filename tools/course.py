"""The course kit: student editions of the labs, and grading them with nbgrader.

    python tools/course.py release [--out build/course]     # nbgrader course folder + release
    python tools/course.py autograde [--out build/course]   # grade submitted/<student>/<lab>/
    python tools/course.py student-edition NOTEBOOK... --out DIR   # for reading (the site)

The notebooks in ``notebooks/`` are the instructor versions. Each exercise is marked up the way
nbgrader expects (``metadata.nbgrader``): a *solution cell* whose code between ``### BEGIN
SOLUTION`` and ``### END SOLUTION`` becomes ``raise NotImplementedError()`` in the student copy; a
*test cell* with points, whose asserts between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN
TESTS`` the student never sees; and, for questions that ask for an interpretation, a *manually
graded answer cell* (markdown) holding a model answer and its rubric, which becomes "YOUR ANSWER
HERE". nbgrader itself does the work: ``release`` copies the labs into an nbgrader course folder
(``source/<lab>/<lab>.ipynb``) and runs ``nbgrader generate_assignment``, which strips
solutions, hidden tests and every output and records checksums; ``autograde`` runs ``nbgrader
autograde``, which executes each submission in a fresh kernel, restores the locked test cells
from the instructor version (so a student cannot edit a test into passing) and scores it in the
gradebook (``gradebook.db``). Manual points are then given in nbgrader's formgrader (``nbgrader
formgrader``, or the Formgrader tab of JupyterLab with nbgrader's extension), and ``nbgrader
generate_feedback`` writes the students' feedback.

``student_edition`` makes the reading copy the website's student build uses: solutions, hidden
tests and the model answers go, and so do the *outputs* of solution and test cells; every other
cell keeps the committed outputs, so the lab still reads with its figures and verdicts. In both
student copies the exercise cells are shown expanded (the instructor's copy folds them).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import nbformat
from nbformat import NotebookNode

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
DEFAULT_OUT = REPO / "build" / "course"
LABS = sorted(p.stem for p in NOTEBOOKS.glob("[0-9]*.ipynb"))


def nbgrader_meta(cell: NotebookNode) -> dict:
    """The cell's nbgrader metadata ({} for a cell nbgrader does not manage)."""
    return cell.get("metadata", {}).get("nbgrader", {})


def is_exercise_cell(cell: NotebookNode) -> bool:
    """A solution cell, an autograded test cell or a manually graded answer cell."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("solution") or meta.get("grade"))


def student_edition(nb: NotebookNode) -> NotebookNode:
    """A copy of an instructor notebook that a student may read: no solutions, no hidden tests,
    no model answers, and no outputs of exercise cells; every other output is kept.

    Uses nbgrader's own preprocessors (the ones ``generate_assignment`` runs), so the reading
    copy and the release strip exactly the same regions.
    """
    from nbgrader.preprocessors import ClearHiddenTests, ClearMarkScheme, ClearSolutions

    nb = copy.deepcopy(nb)
    resources: dict = {}
    for preprocessor in (ClearSolutions(), ClearHiddenTests(), ClearMarkScheme()):
        nb, resources = preprocessor.preprocess(nb, resources)
    for cell in nb.cells:
        if is_exercise_cell(cell) and cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return show_exercises(nb)


def write_student_editions(notebooks: Iterable[Path], out: Path) -> list[Path]:
    """Writes ``student_edition`` of each notebook into ``out`` (same file names)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        target = out / Path(path).name
        nbformat.write(student_edition(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


NBGRADER_CONFIG = """\
# Written by tools/course.py: an nbgrader course folder for the ticketlab labs.
c = get_config()  # noqa: F821 (nbgrader's config loader defines it)
c.CourseDirectory.course_id = "ticketlab"
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = "sqlite:///" + {db!r}
# A lab's cells train networks for minutes in full mode; nbgrader's default is 30 s per cell.
c.ExecutePreprocessor.timeout = 3600
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
"""


class CourseError(RuntimeError):
    """A problem with the course folder or the arguments, with what to do about it."""


def exercises(nb: NotebookNode) -> list[dict]:
    """The graded cells of one notebook: grade_id, kind ("autograded" or "manual"), points."""
    rows = []
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("grade"):
            kind = "manual" if meta.get("solution") else "autograded"
            rows.append({"grade_id": meta["grade_id"], "kind": kind, "points": meta["points"]})
    return rows


def exercise_table(labs: Iterable[str] = LABS) -> str:
    """A markdown table of every lab's exercises and points (for the instructor guide)."""
    lines = [
        "| lab | exercise | autograded points | manually graded points |",
        "| --- | --- | --- | --- |",
    ]
    for lab in labs:
        points: dict[str, dict[str, float]] = {}  # "ex1" -> {"autograded": 2, "manual": 1}
        for row in exercises(nbformat.read(NOTEBOOKS / f"{lab}.ipynb", as_version=4)):
            exercise = points.setdefault(
                row["grade_id"].split("_")[0], {"autograded": 0, "manual": 0}
            )
            exercise[row["kind"]] += row["points"]
        for number, kinds in sorted(points.items()):
            auto, manual = kinds["autograded"], kinds["manual"]
            lines.append(f"| {lab} | {number.removeprefix('ex')} | {auto:g} | {manual:g} |")
    return "\n".join(lines)


def _labs(names: Iterable[str] | None) -> list[str]:
    names = list(names or LABS)
    unknown = [n for n in names if n not in LABS]
    if unknown:
        raise CourseError(f"unknown lab(s) {unknown}; the labs are: {', '.join(LABS)}")
    return names


def _api(root: Path):
    """nbgrader's Python API on the course folder ``root`` (its nbgrader_config.py)."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    # nbgrader migrates its database by running `alembic` as a program: it must be on PATH.
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    config = Config()
    exec((root / "nbgrader_config.py").read_text(), {"get_config": lambda: config})
    return NbGraderAPI(config=config)


def _check(result: dict, what: str) -> None:
    """Raises CourseError with nbgrader's log when an API call failed."""
    if not result.get("success"):
        log = (result.get("error") or "") + "\n" + (result.get("log") or "")
        raise CourseError(f"{what} failed:\n{log.strip()[-3000:]}")


def show_exercises(nb: NotebookNode) -> NotebookNode:
    """In a student copy the exercise cells are the ones to work in: shown expanded, in place."""
    for cell in nb.cells:
        if is_exercise_cell(cell):
            cell.metadata.pop("jupyter", None)
            tags = [t for t in cell.metadata.get("tags", []) if t != "hide-cell"]
            if tags:
                cell.metadata["tags"] = tags
            else:
                cell.metadata.pop("tags", None)
    return nb


def _show_exercises_in(path: Path) -> None:
    nbformat.write(show_exercises(nbformat.read(path, as_version=4)), path)


def course_folder(out: Path) -> Path:
    """Creates (or refreshes) the nbgrader course folder ``out``: its config and ``source/``."""
    out = out.resolve()
    if out.exists() and not out.is_dir():
        raise CourseError(f"{out} is a file; pass --out a folder for the course")
    out.mkdir(parents=True, exist_ok=True)
    config = NBGRADER_CONFIG.format(root=str(out), db=str(out / "gradebook.db"))
    (out / "nbgrader_config.py").write_text(config)
    return out


def release(labs: Iterable[str] | None = None, out: Path = DEFAULT_OUT) -> list[Path]:
    """Student editions of ``labs`` (default all) in ``out/release/<lab>/<lab>.ipynb``.

    Copies the instructor notebooks into ``out/source/`` and runs ``nbgrader
    generate_assignment`` on each, which strips solutions, hidden tests and outputs and records
    the grading cells in ``out/gradebook.db``. Returns the released notebooks.
    """
    labs = _labs(labs)
    root = course_folder(out)
    api = _api(root)
    released = []
    for lab in labs:
        source = root / "source" / lab
        source.mkdir(parents=True, exist_ok=True)
        shutil.copy2(NOTEBOOKS / f"{lab}.ipynb", source / f"{lab}.ipynb")
        _check(api.generate_assignment(lab, force=True, create=True), f"releasing {lab}")
        target = root / "release" / lab / f"{lab}.ipynb"
        _show_exercises_in(target)
        released.append(target)
    return released


def submissions(out: Path, lab: str) -> list[str]:
    """Students with a submission of ``lab`` under ``out/submitted/<student>/<lab>/``."""
    folder = out / "submitted"
    if not folder.is_dir():
        return []
    return sorted(p.parent.parent.name for p in folder.glob(f"*/{lab}/{lab}.ipynb"))


def autograde(
    labs: Iterable[str] | None = None, out: Path = DEFAULT_OUT, students: Iterable[str] = ()
) -> list[dict]:
    """Grades every submission of ``labs`` with ``nbgrader autograde``; returns the scores.

    A submission is ``out/submitted/<student>/<lab>/<lab>.ipynb``. nbgrader runs each in a
    fresh kernel (errors are recorded, not raised), restores the test cells from the instructor
    version and writes the scores into ``out/gradebook.db``. Students that have not submitted
    a lab are skipped; a lab that nobody submitted is an error.
    """
    labs = _labs(labs)
    root = out.resolve()
    if not (root / "gradebook.db").is_file():
        raise CourseError(f"{root} has no gradebook; run `./workbook course release` first")
    students = list(students)
    api = _api(root)
    for lab in labs:
        present = submissions(root, lab)
        chosen = [s for s in present if not students or s in students]
        if not chosen:
            raise CourseError(
                f"no submissions of {lab} to grade: put each student's notebook at "
                f"{root}/submitted/<student>/{lab}/{lab}.ipynb"
            )
        for student in chosen:
            _check(api.autograde(lab, student, force=True, create=True), f"grading {student}/{lab}")
    return scores(root, labs)


def scores(out: Path, labs: Iterable[str] | None = None) -> list[dict]:
    """One row per graded (lab, student): autograded score and maximum, manual points pending."""
    from nbgrader.api import Gradebook, MissingEntry

    rows = []
    with Gradebook("sqlite:///" + str(Path(out).resolve() / "gradebook.db")) as gradebook:
        for lab in _labs(labs):
            for student in submissions(Path(out), lab):
                try:
                    notebook = gradebook.find_submission_notebook(lab, lab, student)
                except MissingEntry:  # submitted but not autograded yet
                    continue
                auto = [g for g in notebook.grades if g.cell.cell_type == "code"]
                manual = [g for g in notebook.grades if g.cell.cell_type == "markdown"]
                rows.append(
                    {
                        "lab": lab,
                        "student": student,
                        "autograded": sum(g.score for g in auto),
                        "autograded_max": sum(g.max_score for g in auto),
                        "manual_max": sum(g.max_score for g in manual),
                        "needs_manual_grading": notebook.needs_manual_grade,
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/course.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    out_help = f"the nbgrader course folder (default {DEFAULT_OUT.relative_to(REPO)})"
    for name, text in [
        ("release", "write the student editions (nbgrader generate_assignment)"),
        ("autograde", "grade out/submitted/<student>/<lab>/<lab>.ipynb (nbgrader autograde)"),
        ("scores", "print the gradebook's scores"),
    ]:
        command = commands.add_parser(name, help=text)
        command.add_argument("labs", nargs="*", help=f"labs (default all): {', '.join(LABS)}")
        command.add_argument("--out", type=Path, default=DEFAULT_OUT, help=out_help)
        if name == "autograde":
            command.add_argument("--student", action="append", default=[], help="only these")
    edition = commands.add_parser("student-edition", help="reading copies without solutions")
    edition.add_argument("notebooks", nargs="+", type=Path)
    edition.add_argument("--out", type=Path, required=True)
    commands.add_parser("exercises", help="print the exercises and their points (markdown)")
    args = parser.parse_args(argv)
    try:
        if args.command == "release":
            for path in release(args.labs, args.out):
                print(path)
            print(f"student editions are in {args.out / 'release'}; hand out one folder per lab")
        elif args.command in ("autograde", "scores"):
            rows = (
                autograde(args.labs, args.out, args.student)
                if args.command == "autograde"
                else scores(args.out, args.labs)
            )
            for row in rows:
                print(
                    f"{row['lab']:<28} {row['student']:<16} autograded "
                    f"{row['autograded']:g}/{row['autograded_max']:g}, manual "
                    f"{row['manual_max']:g} point(s) to grade in nbgrader formgrader"
                )
        elif args.command == "student-edition":
            missing = [str(p) for p in args.notebooks if not p.is_file()]
            if missing:
                parser.error(f"no such notebook: {', '.join(missing)}")
            for path in write_student_editions(args.notebooks, args.out):
                print(path)
        elif args.command == "exercises":
            print(exercise_table())
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
