"""The workbook as a learner uses it: JupyterLab in a browser, Run All Cells, read the result.

Each notebook test is one call to ``lab.check(name, expect=...)``, plus ``lab.move_first_slider``
for labs with a slider, e.g.::

    def test_mnist_lottery_tickets_lab(lab):
        run = lab.check("02_mnist_lottery_tickets.ipynb", expect=r"Verdict:")
        lab.move_first_slider(run)

The last two tests feed the same helpers notebooks that are broken on purpose, so a harness that
silently passed everything would fail here.
"""

from __future__ import annotations

import nbformat
import pytest

pytestmark = pytest.mark.e2e


def test_setup_check_runs_cleanly_in_jupyterlab(lab):
    run = lab.check("00_setup_check.ipynb", expect=r"^Setup check: all good")
    levels = [h["level"] for h in run.headings]
    assert levels[0] == "h1" and levels.count("h2") >= 5, run.headings  # title + numbered parts
    assert sum(cell.images for cell in run.cells) >= 3, "digits, training curve, one test digit"
    move = lab.move_first_slider(run)
    assert move.output_after != move.output_before


def test_xor_lab_explorer_slider_in_jupyterlab(lab):
    run = lab.check("01_xor_lottery.ipynb", expect=r"^Verdict: supported")
    assert run.headings[0]["level"] == "h1", run.headings
    move = lab.move_first_slider(run)  # the XOR explorer: one run's decision boundary
    assert move.output_after != move.output_before


def _write_notebook(path, *cells: tuple[str, str], kernelspec: bool = True) -> None:
    nb = nbformat.v4.new_notebook()
    if kernelspec:  # without one, JupyterLab asks which kernel to start
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
    make = {"md": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    nb.cells = [make[kind](source) for kind, source in cells]
    nbformat.write(nb, path)


def test_harness_detects_a_raising_cell(lab):
    _write_notebook(
        lab.root / "broken_on_purpose.ipynb",
        ("md", "# Broken on purpose\n\n## A cell raises"),
        ("code", "import sys\nprint('warming up', file=sys.stderr)\nprint('step 1 ok')"),
        ("code", "raise RuntimeError('deliberately broken')"),
        ("code", "print('Verdict: unreachable')"),
    )
    with pytest.raises(lab.NotebookUIError) as failure:
        lab.check("broken_on_purpose.ipynb", expect=r"^Verdict:")

    run = failure.value.run
    code = run.code_cells
    assert [c.prompt for c in code] == ["[1]:", "[2]:", "[ ]:"]
    assert code[0].errors == [] and "warming up" in code[0].text  # stderr alone is no error
    assert code[1].errors == ["RuntimeError: deliberately broken"]
    assert "deliberately broken" in code[1].text  # the traceback is on screen
    problems = "\n".join(failure.value.problems)
    assert "raised RuntimeError: deliberately broken" in problems
    assert "has no execution count" in problems  # Run All stopped before the last cell
    assert "no output matches '^Verdict:'" in problems
    assert "heading" not in problems


def test_harness_detects_an_error_behind_a_slider(lab):
    _write_notebook(
        lab.root / "broken_slider.ipynb",
        ("md", "# A slider that breaks when moved"),
        (
            "code",
            "import ipywidgets as widgets\n"
            "def show(n=3):\n"
            "    if n != 3:\n"
            "        raise ValueError(f'n={n} is not supported')\n"
            "    print('n is', n)\n"
            "_ = widgets.interact(show, n=widgets.IntSlider(3, 0, 9, continuous_update=False))",
        ),
        kernelspec=False,  # also exercises the kernel-selection dialog
    )
    run = lab.check("broken_slider.ipynb")  # fine until the learner touches the slider
    assert [d.splitlines()[0] for d in run.dialogs] == ["Select Kernel"]
    with pytest.raises(AssertionError, match=r"shows a traceback: .*ValueError: n=4"):
        lab.move_first_slider(run, presses=1)
