"""The rule for notebooks: only robust outcomes are checked, and nothing is asserted."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

from .checks import _BY_ID, CHECKS, NOTEBOOK_CALLS
from .lookup import findings


def _normalized(code: str) -> str:
    return "".join(code.split())


def _code_of(source: str) -> str:
    """A cell's Python, with IPython magics and shell escapes blanked (they are not Python)."""
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


def _grading_cell(cell: Mapping[str, Any]) -> bool:
    """An nbgrader test cell: graded, not a solution (its asserts are the exercise's tests)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def notebook_problems(
    name: str, cells: Sequence[Mapping[str, Any]], table: Mapping[str, Any] | None = None
) -> list[str]:
    """What breaks the rule "only robust outcomes are checked, nothing is asserted" in a notebook.

    ``name`` is the notebook's stem (``"02_mnist_lottery_tickets"``), ``cells`` its JSON cells,
    ``table`` the audit's findings (default: the committed ``robustness.json``). Rules:

    1. No ``assert`` statement in any code cell: a learner who gets another outcome has a result,
       not an error. The one exception is an exercise's grading cell (nbgrader metadata
       ``grade: true, solution: false``): its asserts compare the learner's answer with the same
       quantity recomputed from the same run, so they fail for a wrong answer, never for an
       outcome of the experiment.
    2. A ``# NBVAL_CHECK_OUTPUT`` cell is either one call ``tl.audit.show_checked("<id>", …)`` of
       a check registered for this notebook, or declares itself ``# Deterministic`` (no training,
       no timing: the same output on every machine, e.g. a dataset's fixed split).
    3. Every outcome a check prints is **robust** in the audit's quick-mode findings (and in full
       mode, where audited), and a committed output prints the audited outcome.
    4. The notebook still makes the calls its checks' ``compute`` repeats (``NOTEBOOK_CALLS``) and
       names each of its registered checks.
    """

    table = findings() if table is None else table
    problems = []
    code = "\n".join(_code_of("".join(c["source"])) for c in cells if c["cell_type"] == "code")
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        where = f"{name} cell {index}"
        try:
            tree = ast.parse(_code_of(source))
        except SyntaxError as error:
            problems.append(f"{where}: does not parse ({error.msg})")
            continue
        if not _grading_cell(cell) and any(isinstance(n, ast.Assert) for n in ast.walk(tree)):
            problems.append(f"{where}: has an assert; print the outcome instead (rule 1)")
        if "NBVAL_CHECK_OUTPUT" not in source:
            continue
        if any(line.strip().startswith("# Deterministic") for line in source.splitlines()):
            continue
        calls = [node for node in tree.body if isinstance(node, ast.Expr)]
        call = calls[0].value if len(calls) == 1 and len(tree.body) == 1 else None
        if not (
            isinstance(call, ast.Call)
            and ast.unparse(call.func) == "tl.audit.show_checked"
            and call.args
            and isinstance(call.args[0], ast.Constant)
        ):
            problems.append(
                f'{where}: a checked cell must be one tl.audit.show_checked("<id>", '
                "...) call or be marked '# Deterministic' (rule 2)"
            )
            continue
        check_id = call.args[0].value
        entry = _BY_ID.get(check_id)
        if entry is None or entry.notebook != name:
            problems.append(f"{where}: {check_id!r} is not a check registered for {name} (rule 2)")
            continue
        found = table.get("checks", {}).get(check_id, {})
        expected = []
        for outcome_name in entry.checked:
            quick = found.get("quick", {}).get(outcome_name)
            if quick is None or quick["verdict"] != "robust":
                state = "not audited" if quick is None else quick["verdict"]
                problems.append(
                    f"{where}: checks {outcome_name!r} of {check_id}, which is "
                    f"{state} in quick mode (rule 3)"
                )
                continue
            full = found.get("full", {}).get(outcome_name)
            # A full-mode audit that has not run every core variant yet decides nothing.
            if full is not None and (
                full["verdict"] == "fragile"
                or (full["verdict"] == "robust" and full["outcome"] != quick["outcome"])
            ):
                problems.append(
                    f"{where}: {outcome_name!r} of {check_id} is {full['verdict']} in "
                    f"full mode, {full['outcome']!r} against {quick['outcome']!r} "
                    "quick (rule 3)"
                )
            expected.append(f"{outcome_name}: {quick['outcome']}")
        printed = "".join(
            "".join(o.get("text", ""))
            for o in cell.get("outputs", [])
            if o.get("output_type") == "stream"
        ).splitlines()
        if cell.get("outputs") and len(expected) == len(entry.checked) and printed != expected:
            problems.append(
                f"{where}: the committed output {printed} is not the audited {expected} (rule 3)"
            )
    flat = _normalized(code)
    for call_text in NOTEBOOK_CALLS.get(name, ()):
        if _normalized(call_text) not in flat:
            problems.append(
                f"{name}: no longer calls {call_text!r}, which its audit repeats "
                "(rule 4); change ticketlab/audit/checks.py with it"
            )
    for entry in CHECKS:
        if entry.notebook == name and f'"{entry.id}"' not in code:
            problems.append(f"{name}: never names its audited check {entry.id!r} (rule 4)")
    return problems
