"""Only robust outcomes are checked, and no notebook asserts an outcome (``ticketlab.audit``).

The rule itself is ``audit.notebook_problems``; these tests apply it to the eight notebooks with
the committed audit table, and show on crafted notebooks that each part of it can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ticketlab import audit

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def cells_of(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_robustness_rule(path):
    assert audit.notebook_problems(path.stem, cells_of(path)) == []


def test_every_check_belongs_to_a_notebook_and_is_audited_in_quick_mode():
    stems = {p.stem for p in NOTEBOOKS}
    table = audit.findings()
    for entry in audit.CHECKS:
        assert entry.notebook in stems, entry.id
        assert "quick" in table["checks"].get(entry.id, {}), f"{entry.id} was never audited"
        assert set(entry.checked) <= set(table["checks"][entry.id]["quick"]), entry.id


def test_the_table_has_every_variant_for_every_quick_outcome():
    # "robust" needs every core variant; an incomplete audit must not count as robust.
    core = {v.name for v in audit.required_variants()}
    for check_id, by_mode in audit.findings()["checks"].items():
        for mode, rows in by_mode.items():
            for name, row in rows.items():
                if row["verdict"] == "robust":
                    assert core <= set(row["per_variant"]), (check_id, mode, name)


def test_the_markdown_table_is_the_rendering_of_the_json():
    from ticketlab.audit.runner import render_markdown

    rendered = render_markdown(audit.findings())
    assert (ROOT / "notebooks" / "ROBUSTNESS.md").read_text() == rendered


def test_experiment_defaults_the_audit_repeats_are_still_there():
    for module, line in audit.checks.DEFAULT_SEEDS.items():
        assert line in (ROOT / "ticketlab" / module).read_text(), (module, line)


def test_variants_cover_threads_seed_sets_and_rounding():
    threads = {v.threads for v in audit.VARIANTS}
    offsets = {v.offset for v in audit.VARIANTS}
    assert threads == {1, 2}
    assert len(offsets) >= 3
    # Each seed set is audited at both thread counts.
    for offset in offsets - {0}:
        assert {v.threads for v in audit.VARIANTS if v.offset == offset} == {1, 2}
    assert any(v.perturbation > 0 for v in audit.VARIANTS)


# --- crafted notebooks: each rule can fail -------------------------------------------------

CHECK = audit.check("01.xor")


def fake_table(verdict: str = "robust", outcome: str = "supported", full=None) -> dict:
    row = {"outcome": outcome, "verdict": verdict, "seen": {outcome: 7}, "per_variant": {}}
    by_mode = {"quick": {name: dict(row) for name in CHECK.checked}}
    if full is not None:
        by_mode["full"] = {name: dict(row, **full) for name in CHECK.checked}
    return {"checks": {CHECK.id: by_mode}}


def crafted(*cells, calls=True) -> list[dict]:
    head = [new_code_cell('result = xor_tickets()\ntl.audit.report("01.xor", result)')]
    if not calls:
        head = [new_code_cell('tl.audit.report("01.xor", result)')]
    return nbformat.from_dict(new_notebook(cells=[*head, *cells]))["cells"]


def check_cell(outputs=()) -> nbformat.NotebookNode:
    cell = new_code_cell('# NBVAL_CHECK_OUTPUT\ntl.audit.show_checked("01.xor", result)')
    if outputs:
        cell.execution_count = 1
        cell.outputs = [new_output("stream", name="stdout", text="".join(outputs))]
    return cell


GOOD_OUTPUT = [f"{name}: supported\n" for name in CHECK.checked]


def test_a_good_crafted_notebook_passes():
    cells = crafted(check_cell(GOOD_OUTPUT), new_markdown_cell("Verdicts above."))
    assert audit.notebook_problems("01_xor_lottery", cells, fake_table()) == []


def test_checking_a_fragile_outcome_fails():
    problems = audit.notebook_problems(
        "01_xor_lottery", crafted(check_cell()), fake_table("fragile")
    )
    assert len(problems) == len(CHECK.checked)
    assert all("fragile in quick mode" in p for p in problems)


def test_checking_an_outcome_that_was_never_audited_fails():
    problems = audit.notebook_problems("01_xor_lottery", crafted(check_cell()), {"checks": {}})
    assert problems and all("not audited" in p for p in problems)


def test_an_outcome_fragile_in_full_mode_fails():
    table = fake_table(full={"verdict": "fragile"})
    problems = audit.notebook_problems("01_xor_lottery", crafted(check_cell()), table)
    assert problems and all("full mode" in p for p in problems)


def test_a_full_mode_outcome_other_than_quick_fails_but_an_incomplete_audit_does_not():
    other = fake_table(full={"outcome": "inconclusive"})
    problems = audit.notebook_problems("01_xor_lottery", crafted(check_cell()), other)
    assert problems and all("'inconclusive' against 'supported'" in p for p in problems)
    partial = fake_table(full={"verdict": "incomplete", "outcome": "inconclusive"})
    assert audit.notebook_problems("01_xor_lottery", crafted(check_cell()), partial) == []


def test_a_committed_output_other_than_the_audited_outcome_fails():
    wrong = [f"{name}: inconclusive\n" for name in CHECK.checked]
    problems = audit.notebook_problems("01_xor_lottery", crafted(check_cell(wrong)), fake_table())
    assert len(problems) == 1 and "not the audited" in problems[0]


def test_an_assert_on_a_verdict_fails_anywhere():
    cell = new_code_cell('assert result.verdict("ticket beats reinit").outcome == "supported"')
    problems = audit.notebook_problems("01_xor_lottery", crafted(cell), fake_table())
    assert len(problems) == 1 and "assert" in problems[0]


def test_only_an_exercises_grading_cell_may_assert():
    source = "assert abs(one_shot_rate - recomputed) < 1e-12"
    grading = new_code_cell(source, metadata={"nbgrader": {"grade": True, "solution": False}})
    solution = new_code_cell(source, metadata={"nbgrader": {"grade": False, "solution": True}})
    assert audit.notebook_problems("01_xor_lottery", crafted(grading), fake_table()) == []
    problems = audit.notebook_problems("01_xor_lottery", crafted(solution), fake_table())
    assert len(problems) == 1 and "assert" in problems[0]


def test_a_checked_cell_that_prints_by_hand_fails():
    cell = new_code_cell(
        "# NBVAL_CHECK_OUTPUT\nfor v in result.verdicts:\n    print(v.claim.name, v.outcome)"
    )
    problems = audit.notebook_problems("01_xor_lottery", crafted(cell), fake_table())
    assert len(problems) == 1 and "show_checked" in problems[0]


def test_a_deterministic_checked_cell_passes_and_magics_are_ignored():
    cell = new_code_cell("# NBVAL_CHECK_OUTPUT\n# Deterministic: a constant.\n%time print(1)")
    assert audit.notebook_problems("01_xor_lottery", crafted(cell), fake_table()) == []


def test_a_check_of_another_notebook_fails():
    cell = new_code_cell('# NBVAL_CHECK_OUTPUT\ntl.audit.show_checked("02.lottery", verdicts)')
    problems = audit.notebook_problems("01_xor_lottery", crafted(cell), fake_table())
    assert any("not a check registered for 01_xor_lottery" in p for p in problems)


def test_a_notebook_that_stopped_making_the_audited_call_fails():
    problems = audit.notebook_problems("01_xor_lottery", crafted(check_cell(), calls=False),
                                       fake_table())  # fmt: skip
    assert len(problems) == 1 and "no longer calls 'result = xor_tickets()'" in problems[0]


# --- what learners see ----------------------------------------------------------------------


def test_show_checked_prints_only_the_registered_outcomes(capsys):
    outcomes = {"training finished without diverging": True, "test accuracy above 80 %": False}

    class Run:  # the two fields setup_outcomes reads
        diverged = False
        test_acc = 0.5

    audit.show_checked("00.train", Run())
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"{name}: {value}" for name, value in outcomes.items()]


def test_explanation_for_a_fragile_outcome_names_what_was_seen(monkeypatch):
    table = {"checks": {"02.lottery": {"quick": {"iterative beats one-shot": {
        "outcome": "supported", "verdict": "fragile", "seen": {"supported": 4, "inconclusive": 3},
    }}}}}  # fmt: skip
    monkeypatch.setattr(audit.lookup, "findings", lambda: table)
    monkeypatch.setenv("TICKETLAB_QUICK", "1")
    note = audit.explanation("02.lottery", "iterative beats one-shot", "inconclusive")
    assert "Fragile" in note and "inconclusive in 3" in note and "supported in 4" in note


def test_explanation_for_a_robust_outcome_speaks_only_when_the_run_differs(monkeypatch):
    table = {"checks": {"02.lottery": {"quick": {"tickets beat reinit": {
        "outcome": "supported", "verdict": "robust", "seen": {"supported": 7},
    }}}}}  # fmt: skip
    monkeypatch.setattr(audit.lookup, "findings", lambda: table)
    monkeypatch.setenv("TICKETLAB_QUICK", "1")
    assert audit.explanation("02.lottery", "tickets beat reinit", "supported") is None
    note = audit.explanation("02.lottery", "tickets beat reinit", "inconclusive")
    assert "this is your result" in note and "'supported' in all 7 runs" in note
    monkeypatch.setenv("TICKETLAB_QUICK", "0")  # full mode, audited only in quick mode
    note = audit.explanation("02.lottery", "tickets beat reinit", "inconclusive")
    assert "in quick mode the audit found 'supported'" in note


def test_perturbed_init_changes_weights_by_about_the_stated_size_and_only_inside():
    import torch

    from ticketlab.models import lenet_300_100, perturbed_init

    plain = lenet_300_100(seed=5)
    with perturbed_init(1e-6):
        nudged = lenet_300_100(seed=5)
    again = lenet_300_100(seed=5)
    for (name, a), b, c in zip(plain.named_parameters(), nudged.parameters(),
                               again.parameters(), strict=True):  # fmt: skip
        assert torch.equal(a, c), name
        if name.endswith("weight"):
            relative = ((b - a) / a).abs()
            assert 1e-8 < relative.median() < 1e-6 < relative.max() < 1e-5, name
    with pytest.raises(ValueError, match="finite float"), perturbed_init(float("nan")):
        pass


def test_weak_effect_simulation_is_a_pure_function_of_its_seed_and_mixes_verdicts():
    from ticketlab import seeds

    a = seeds.weak_effect_simulation(seed=3)
    b = seeds.weak_effect_simulation(seed=3)
    assert a.equals(b)
    # At 0.5 σ with 3 seeds, a one-sided t-test at 2.5 % has power well above 1 % and below 99 %.
    supported = a.query("outcome == 'supported'").set_index("size")["fraction"]
    assert ((supported > 0.01) & (supported < 0.99)).all()
    assert supported.is_monotonic_increasing  # more seeds, more power


def test_fingerprint_ignores_formatting_and_docstrings_but_not_code():
    from ticketlab.versions import code_shape

    plain = "def f(x):\n    return x + 1\n"
    dressed = 'def f(x):\n    """Add one."""\n\n    return (x + 1)  # why\n'
    assert code_shape(plain) == code_shape(dressed)
    assert code_shape(plain) != code_shape("def f(x):\n    return x + 2\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--check", "02.nope"], "unknown check(s) ['02.nope']; choose from ['00.train'"),
        (["--lab", "99"], "--lab ['99'] matches no notebook"),
        (["--variant", "3 threads"], "unknown variant(s) ['3 threads']"),
        (["--cores", "0"], "--cores must be >= 1"),
    ],
)
def test_the_audit_command_rejects_bad_arguments_before_running_anything(args, message, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "audit"
    run = subprocess.run(
        [sys.executable, "-m", "ticketlab.audit", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert not out.exists()
