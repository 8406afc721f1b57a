"""The course kit: exercises marked up for nbgrader, student editions that leak nothing, grading.

The release is made by nbgrader itself (``tools/course.py``); these tests check what it produced
by reading it, independently of the tool: the solution lines, hidden tests, model answers and
solution outputs of the instructor notebooks must not occur anywhere in a student file. Grading
is tested for real on lab 01 (the quickest lab): nbgrader executes an instructor copy, an
unanswered student copy and a copy with one wrong answer, in quick mode.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {p.stem: p for p in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))}
WITH_EXERCISES = [name for name in NOTEBOOKS if not name.startswith("00_")]

_spec = importlib.util.spec_from_file_location("course", ROOT / "tools/course.py")
course = sys.modules.setdefault("course", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(course)

REGION = {
    "solution": re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.DOTALL),
    "hidden tests": re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.DOTALL),
}


def nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS[name], as_version=4)


def secret_lines(nb) -> set[str]:
    """Lines a student must never see: solution and hidden-test code, model answers, and the
    text outputs of exercise cells; only lines long enough to be telling, and not shown anywhere
    else in the notebook (a solution may repeat a line of the lab's own code, or an exercise's
    statement quote the code to use)."""
    secret, public = set(), []
    for cell in nb.cells:
        meta = nbgrader(cell)
        source = cell.source
        if cell.cell_type == "markdown" and meta.get("solution"):
            secret |= {line.strip() for line in source.splitlines()}
            continue
        for pattern in REGION.values():
            for region in pattern.findall(source):
                secret |= {line.strip() for line in region.splitlines()}
            source = pattern.sub("", source)
        public.append(source)
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            lines = {line.strip() for line in "".join(text).splitlines()}
            if meta.get("solution") or meta.get("grade"):
                secret |= lines
            else:
                public.append("".join(text))
    shown = "\n".join(public)
    return {line for line in secret if len(line) >= 25 and line not in shown}


# --- the markup, read from the notebooks -------------------------------------------------------


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_each_exercise_has_a_solution_then_its_tests(name):
    cells = read(name).cells
    graded = [c for c in cells if nbgrader(c)]
    ids = [nbgrader(c)["grade_id"] for c in graded]
    assert len(ids) == len(set(ids)), f"{name}: grade ids repeat"
    solutions = [c for c in graded if c.cell_type == "code" and nbgrader(c)["solution"]]
    assert len(solutions) >= 3, f"{name}: fewer than three autograded exercises"
    for cell in solutions:
        assert REGION["solution"].search(cell.source), f"{name}: solution without its region"
        after = cells[cells.index(cell) + 1]
        meta = nbgrader(after)
        assert meta.get("grade") and not meta.get("solution"), f"{name}: no tests under {cell}"
        assert meta["points"] > 0 and REGION["hidden tests"].search(after.source)
    for cell in graded:
        if cell.cell_type == "markdown":
            assert nbgrader(cell)["grade"] and nbgrader(cell)["points"] > 0
            assert "Rubric" in cell.source, f"{name}: a manually graded answer without a rubric"
    assert not [c for c in cells if "solution" in c.metadata.get("tags", []) and not nbgrader(c)]


def assigned(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
    return names


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_an_unanswered_exercise_cannot_pass_its_tests(name):
    """Each test cell reads a name that only its solution region defines: a student copy, where
    that region is `raise NotImplementedError()`, fails the tests with a NameError."""
    cells = read(name).cells
    elsewhere = set()  # names defined by code a student copy keeps
    answers = {}
    for cell in cells:
        if cell.cell_type != "code":
            continue
        source = cell.source
        if nbgrader(cell).get("solution"):
            region = REGION["solution"].search(source).group(1)
            answers[nbgrader(cell)["grade_id"]] = assigned(ast.parse(region))
            source = REGION["solution"].sub("raise NotImplementedError()\n", source)
        if nbgrader(cell).get("grade"):
            continue  # test cells only read
        clean = "\n".join(line for line in source.splitlines() if not line.startswith(("%", "!")))
        elsewhere |= assigned(ast.parse(clean))
    for cell in cells:
        meta = nbgrader(cell)
        if cell.cell_type == "code" and meta.get("grade"):
            visible = REGION["hidden tests"].sub("", cell.source)
            read_names = {
                n.id for n in ast.walk(ast.parse(visible)) if isinstance(n, ast.Name)
            }  # the visible part runs first, so its names decide
            solution_id = meta["grade_id"].replace("_tests", "_code")
            answer_names = answers[solution_id] - elsewhere
            assert read_names & answer_names, (
                f"{name} {meta['grade_id']}: reads none of {sorted(answers[solution_id])} "
                f"that only the solution defines (also defined elsewhere: "
                f"{sorted(answers[solution_id] & elsewhere)})"
            )


def test_the_exercise_table_counts_every_graded_cell():
    table = course.exercise_table(WITH_EXERCISES)
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    total = sum(float(auto) + float(manual) for *_, auto, manual in rows)
    expected = sum(
        nbgrader(c)["points"] for name in WITH_EXERCISES for c in read(name).cells
        if nbgrader(c).get("grade")
    )  # fmt: skip
    assert total == expected and len(rows) == 3 * len(WITH_EXERCISES)


# --- the release -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("course")
    course.release(list(NOTEBOOKS), out)
    return out


def test_the_release_has_every_lab_and_nothing_secret(released):
    for name in NOTEBOOKS:
        student = released / "release" / name / f"{name}.ipynb"
        text = student.read_text()
        nb = nbformat.read(student, as_version=4)
        leaked = [line for line in secret_lines(read(name)) if line in text]
        assert leaked == [], f"{name}: the release shows {leaked[:3]}"
        assert all(not c.get("outputs") for c in nb.cells), f"{name}: outputs in the release"
        stubs = [c for c in nb.cells if nbgrader(c).get("solution") and c.cell_type == "code"]
        assert all("raise NotImplementedError()" in c.source for c in stubs)
        assert all("jupyter" not in c.metadata for c in stubs), "exercises shown expanded"
        for pattern in REGION.values():
            assert not pattern.search(text)


def test_the_secret_scan_finds_what_the_instructor_copy_has():
    """The scan can fail: the instructor notebook contains the lines it looks for."""
    nb = read("01_xor_lottery")
    secrets = secret_lines(nb)
    assert any("one_shot_rate = float(" in line for line in secrets)
    assert any("Rubric" in line for line in secrets)
    text = NOTEBOOKS["01_xor_lottery"].read_text()
    assert all(json.dumps(line)[1:-1] in text or line in text for line in secrets)


@pytest.mark.parametrize("name", WITH_EXERCISES)
def test_the_reading_edition_keeps_the_lab_but_not_the_answers(name):
    instructor = read(name)
    student = course.student_edition(instructor)
    text = nbformat.writes(student)
    leaked = [line for line in secret_lines(instructor) if line in text]
    assert leaked == [], f"{name}: the reading edition shows {leaked[:3]}"
    kept = [
        (a.get("outputs"), b.get("outputs"))
        for a, b in zip(instructor.cells, student.cells, strict=True)
        if not course.is_exercise_cell(a)
    ]
    assert all(x == y for x, y in kept), "outputs of the lab itself are kept"


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, capsys):
    assert course.main(["release", "99_nonsense", "--out", str(tmp_path / "c")]) == 2
    assert "unknown lab" in capsys.readouterr().err and not (tmp_path / "c").exists()
    assert course.main(["autograde", "01_xor_lottery", "--out", str(tmp_path)]) == 2
    assert "release` first" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert course.main(["release", "01_xor_lottery", "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


# --- grading, for real -------------------------------------------------------------------------


def wrong_answer(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Lab 01 with exercise 3's one-shot rate halved: that exercise's tests must fail."""
    for cell in nb.cells:
        if nbgrader(cell).get("grade_id") == "ex3_code":
            assert "one_shot_rate = float(" in cell.source
            cell.source = cell.source.replace("one_shot_rate = float(", "one_shot_rate = 0.5 * (")
    return nb


@pytest.mark.slow
def test_autograding_gives_full_marks_zero_and_loses_a_wrong_answers_points(
    released, tmp_path, monkeypatch
):
    lab = "01_xor_lottery"
    monkeypatch.setenv("TICKETLAB_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    monkeypatch.setenv("PATH", os.environ["PATH"])  # restored after _api adds the scripts
    submitted = released / "submitted"
    copies = {
        "instructor": read(lab),
        "unanswered": nbformat.read(released / "release" / lab / f"{lab}.ipynb", as_version=4),
        "wrong": wrong_answer(read(lab)),
    }
    for student, nb in copies.items():
        (submitted / student / lab).mkdir(parents=True)
        nbformat.write(nb, submitted / student / lab / f"{lab}.ipynb")
    rows = {row["student"]: row for row in course.autograde([lab], released)}
    points = {c.metadata.nbgrader["grade_id"]: c.metadata.nbgrader["points"]
              for c in read(lab).cells if nbgrader(c).get("grade")}  # fmt: skip
    auto_max = sum(p for gid, p in points.items() if gid.endswith("_tests"))
    assert {row["autograded_max"] for row in rows.values()} == {auto_max}
    assert rows["instructor"]["autograded"] == auto_max
    assert rows["unanswered"]["autograded"] == 0
    assert rows["wrong"]["autograded"] == auto_max - points["ex3_tests"]
    assert rows["instructor"]["manual_max"] == sum(
        p for gid, p in points.items() if gid.endswith("_answer")
    )
    # nbgrader graded the executed copies: the unanswered one ran to the end with errors
    graded = released / "autograded" / "unanswered" / lab / f"{lab}.ipynb"
    errors = [
        o for c in nbformat.read(graded, as_version=4).cells for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]  # fmt: skip
    assert {e["ename"] for e in errors} <= {"NotImplementedError", "NameError"} and errors
    shutil.rmtree(submitted)


def test_the_instructor_guide_lists_the_exercises_as_they_are():
    guide = (ROOT / "docs" / "instructor-guide.md").read_text()
    start = guide.index("<!-- exercise table: python tools/course.py exercises -->\n")
    end = guide.index("<!-- end of exercise table -->")
    listed = guide[start:end].split("\n", 1)[1].strip()
    assert listed == course.exercise_table(), "rerun tools/course.py exercises into the guide"
    assert "docs/instructor-guide.md" in (ROOT / "README.md").read_text()
