"""Every number the notebooks' prose states comes from the run, or is marked as not about it.

The rule (details in ``tools/prose_numbers.py``): each number in a markdown cell must appear in
that notebook's committed outputs, where an output matches when rounding it to the prose's
decimals gives the prose's number (0.879 matches "0.9"; a fraction matches its percentage, 0.12
matches "12 %"); otherwise the cell must list it in a ``<!-- not-from-run: N (why) -->`` comment
(a paper's figure, a setting), and every listed number must occur in the cell. Inline code,
headings' and lists' numbering, references (Exercise 2, §2), arXiv ids, issue numbers, years and
names such as LeNet-300-100 are not checked. Numbers about our run are rendered by display cells
(``Markdown(f"...")``), never typed and never exempted.

The checker is tested here on small notebooks built for the purpose, then run on the real ones.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))

_spec = importlib.util.spec_from_file_location("prose_numbers", ROOT / "tools/prose_numbers.py")
prose = sys.modules.setdefault("prose_numbers", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(prose)


def notebook(*cells):
    """Markdown cells from strings; a code cell from a dict {"stream": text} or
    {"markdown": text} (a display cell's rendered output)."""
    nb = new_notebook()
    for count, cell in enumerate(cells, start=1):
        if isinstance(cell, str):
            nb.cells.append(new_markdown_cell(cell))
            continue
        code = new_code_cell("...", execution_count=count)
        if "stream" in cell:
            code.outputs = [new_output("stream", name="stdout", text=cell["stream"])]
        if "markdown" in cell:
            code.outputs = [
                new_output("display_data", data={"text/markdown": cell["markdown"]}, metadata={})
            ]
        if "plain" in cell:
            code.outputs = [
                new_output(
                    "execute_result", data={"text/plain": cell["plain"]}, execution_count=count
                )
            ]
        nb.cells.append(code)
    return nbformat.from_dict(nb)


def problems(*cells):
    return prose.check(notebook(*cells), "crafted")


# --- the checker, on crafted notebooks -------------------------------------------------------


def test_a_number_no_output_has_fails_and_says_how_to_fix_it():
    found = problems({"stream": "share: 1.3%\n"}, "About 2 % of the parameters.")
    assert [(p.cell, p.number, p.kind) for p in found] == [(1, "2", "not in outputs")]
    assert "render it" in found[0].detail and "not-from-run" in found[0].detail


def test_a_number_the_outputs_have_passes_within_its_printed_rounding():
    outputs = {"stream": "effect = 0.879 pp, share: 1.3%, steps 2320, acc 0.9482\n"}
    assert problems(outputs, "A gap of 0.9 pp, or 0.88 pp, or 0.879 pp.") == []
    assert problems(outputs, "About 1 % of them; 2,320 steps; 94.8 % accurate.") == []
    wrong = problems(outputs, "A gap of 0.87 pp and 95.0 % accuracy.")
    assert [p.number for p in wrong] == ["0.87", "95.0"]


def test_fractions_and_percentages_are_the_same_number():
    assert problems({"plain": "density 0.12\n"}, "It keeps 12 % of the weights.") == []
    assert problems({"stream": "kept 12%\n"}, "A density of 0.12.") == []
    assert [p.number for p in problems({"plain": "0.12\n"}, "It keeps 13 %.")] == ["13"]


def test_rendered_output_counts_as_an_output():
    rendered = {"markdown": "Tickets beat reinit by **0.88 pp** in this run."}
    assert problems(rendered, "As the rendered line says, 0.88 pp.") == []


def test_an_exempted_number_passes_and_a_stale_exemption_fails():
    paper = (
        "The paper's tickets beat the full network by more than 0.3 points at 13.5 %.\n"
        "<!-- not-from-run: 0.3, 13.5 (paper, Frankle & Carbin §2) -->"
    )
    assert problems({"stream": "94.82\n"}, paper) == []
    stale = paper.replace("13.5 %", "a low density")
    found = problems({"stream": "94.82\n"}, stale)
    assert [(p.number, p.kind) for p in found] == [("13.5", "stale exemption")]


def test_an_exempted_number_that_is_also_printed_is_fine():
    cell = "Both 40 % (our bar) and 40 % again.\n<!-- not-from-run: 40 (the claim's bar) -->"
    assert problems({"stream": "needed > 40%\n"}, cell) == []


def test_an_exemption_needs_a_reason_and_a_number():
    found = problems("It took 50,000 steps.\n<!-- not-from-run: 50,000 -->")
    kinds = sorted(p.kind for p in found)
    assert kinds == ["bad exemption", "not in outputs"]
    found = problems("It took 50,000 steps.\n<!-- not-from-run: many (paper) -->")
    assert sorted(p.kind for p in found) == ["bad exemption", "not in outputs"]


def test_exemption_lists_read_thousands_separators_and_several_numbers():
    cell = (
        "The paper: 55,000 / 5,000 / 10,000 images, 50,000 steps.\n"
        "<!-- not-from-run: 55,000, 5,000, 10,000 (paper's split); 50,000 (paper's budget) -->"
    )
    assert problems(cell) == []
    listed, errors = prose.exemptions(cell)
    assert errors == [] and set(listed) == {"55000", "5000", "10000", "50000"}


def test_what_is_not_checked():
    cell = (
        "## 4.1 Results\n\n"
        "1. train with `lr=1.2e-3` and `steps=580`;\n"
        "2. see Exercise 3, section 4.2, §2, Figure 3, claims 2 to 4 and lab 07;\n\n"
        "LeNet-300-100 on CIFAR-10 (ICLR 2019, arXiv 1803.03635v5), pytorch/tutorials#905, "
        "2:4 sparsity in fp16, L2 distance, v5 text, [a link](https://example.org/x/123).\n"
        "```python\nsteps = 9999\n```\n<!-- a note with 77 in it -->"
    )
    assert prose.prose_numbers(cell) == []
    assert problems(cell) == []


def test_inline_code_may_span_a_line_break():
    assert problems("Call `f(...,\nwidths=(1024, 1024))` here.") == []


def test_code_cells_and_their_comments_are_not_prose():
    nb = notebook("No numbers here.")
    nb.cells.append(new_code_cell("x = 3  # about 2.5 %", execution_count=9))
    assert prose.check(nb) == []


def test_numbers_are_read_as_written():
    read = [(n.text, n.value, n.decimals) for n in prose.prose_numbers("0.879, 2,320 and 7.")]
    assert read == [("0.879", 0.879, 3), ("2,320", 2320.0, 0), ("7", 7.0, 0)]
    assert prose.output_numbers(notebook({"stream": "5.49e-06 -0.25 1,000\n"})) == {
        5.49e-06,
        0.25,
        1000.0,
    }


# --- the real notebooks ----------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_number_in_the_prose_comes_from_the_run(path):
    found = prose.check_file(path)
    assert not found, "\n".join(map(str, found))


def test_all_eight_labs_are_checked():
    assert [p.stem[:2] for p in NOTEBOOKS] == [f"0{i}" for i in range(8)]
