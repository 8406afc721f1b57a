"""The benchmark machinery: FLOP counts, sample summaries, targets, selection, reports.

No timing is asserted: benchmarks are replaced by stand-ins. The interleaved timing they use is
``ticketlab.timing``'s, tested on fake clocks in test_timing.py.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks import report as rep
from benchmarks.__main__ import main
from benchmarks.flops import LENET_300_100, mlp_step_flops, mlp_step_matmuls
from benchmarks.population import ATOL, RTOL, compare, spread
from benchmarks.results import Context, Group, Row, Target, number, summary
from benchmarks.suite import BENCHMARKS, QUICK_SKIPS, Benchmark, run, select
from benchmarks.trainer import naive_net
from ticketlab.models import lenet_300_100

# -- FLOPs ----------------------------------------------------------------------------------------


def test_lenet_step_flops_by_hand():
    # Σ in·out = 784·300 + 300·100 + 100·10 = 235,200 + 30,000 + 1,000 = 266,200.
    flops = mlp_step_flops(LENET_300_100, 60)
    assert flops["forward"] == 2 * 60 * 266_200 == 31_944_000
    assert flops["weight_grad"] == 31_944_000
    assert flops["input_grad"] == 2 * 60 * (30_000 + 1_000) == 3_720_000
    assert flops["total"] == 67_608_000


def test_step_matmul_shapes_of_a_tiny_mlp():
    # 2 → 3 → 1 at batch 4: x(4×2)·W1ᵀ(2×3), h(4×3)·W2ᵀ(3×1); dW2 = dyᵀ(1×4)·h(4×3),
    # dW1 = dhᵀ(3×4)·x(4×2); dh = dy(4×1)·W2(1×3); no input gradient for the data.
    assert mlp_step_matmuls((2, 3, 1), 4) == [
        ("forward", 4, 2, 3),
        ("forward", 4, 3, 1),
        ("weight_grad", 1, 4, 3),
        ("weight_grad", 3, 4, 2),
        ("input_grad", 4, 1, 3),
    ]
    assert mlp_step_flops((2, 3, 1), 4)["total"] == 2 * (24 + 12 + 12 + 24 + 12)


@pytest.mark.parametrize("sizes, batch", [((784,), 60), ((784, 0, 10), 60), ((2, 1), 0)])
def test_flops_reject_impossible_networks(sizes, batch):
    with pytest.raises(ValueError, match="layer widths"):
        mlp_step_matmuls(sizes, batch)


# -- timing summaries -----------------------------------------------------------------------------


def test_summary_reports_the_median():
    assert summary([5.0, 1.0, 3.0, 100.0]) == {
        "median": 4.0,
        "min": 1.0,
        "max": 100.0,
        "samples": [5.0, 1.0, 3.0, 100.0],
    }
    with pytest.raises(ValueError):
        summary([])


# -- targets and rows -----------------------------------------------------------------------------


def test_targets_judge_at_the_boundary():
    at_least = Target.minimum(1.3, "×")
    assert at_least.met(1.3) and not at_least.met(1.29)
    below = Target.below(1, "%")
    assert below.met(0.99) and not below.met(1.0)
    assert (str(at_least), str(below)) == ("≥ 1.3×", "< 1 %")


def test_rows():
    row = Row.judged("g", "speed-up", 1.25, "×", Target.minimum(1.3, "×"), "note")
    assert (row.measured, row.target, row.met) == ("1.25×", "≥ 1.3×", False)
    assert Row.info("g", "rate", 1234.5, "steps/s").measured == "1,234 steps/s"
    assert Row.unmeasured("g", "gpu", "no GPU: not measured").met is None
    with pytest.raises(ValueError, match="target"):
        Row.judged("g", "x", 1.0, "%", Target.minimum(1, "×"))


@pytest.mark.parametrize(
    "value, text",
    [(0.0, "0.00"), (0.0031, "0.0031"), (1.234, "1.23"), (12.34, "12.3"), (140.6, "141")],
)
def test_number(value, text):
    assert number(value) == text


# -- population helpers ---------------------------------------------------------------------------


def test_spread_picks_evenly_spaced_members():
    assert spread(1000, 4) == [0, 250, 500, 750]
    assert spread(3, 8) == [0, 1, 2]


def test_compare_measures_the_largest_difference_against_the_tolerance():
    a, b = (torch.nn.Linear(2, 1, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        b.weight.copy_(torch.tensor([[10.0, 0.0]], dtype=torch.float64))
        b.bias.zero_()
        a.weight.copy_(torch.tensor([[10.0 + 5 * RTOL, 3 * ATOL]], dtype=torch.float64))
        a.bias.zero_()
    out = compare(a, b)
    # Entry 0 is off by 5·rtol, within atol + rtol·10; entry 1 by 3·atol, over atol + rtol·0.
    assert out["max_abs"] == pytest.approx(max(5 * RTOL, 3 * ATOL), rel=1e-4)
    assert out["excess"] == pytest.approx(2 * ATOL, rel=1e-4)
    with torch.no_grad():
        a.weight[0, 1] = 0.0
    assert compare(a, b)["excess"] <= 0


def test_naive_net_computes_what_lenet_computes(device):
    lenet = lenet_300_100(seed=3).to(device)
    x = torch.randn(5, 1, 28, 28, device=device)
    torch.testing.assert_close(naive_net(lenet)(x), lenet(x))


# -- selection ------------------------------------------------------------------------------------


def test_select_expands_aliases_and_keeps_suite_order():
    chosen, skipped = select(["imp", "trainer"], ["imp_full"], quick=False)
    assert chosen == ["trainer", "imp_quick", "paper_figure"]
    assert skipped["imp_full"] == "--skip"
    assert skipped["notebooks"] == "not in --only"
    assert set(chosen) | set(skipped) == set(BENCHMARKS)


def test_quick_runs_leave_out_the_long_benchmarks_unless_named():
    chosen, skipped = select(None, [], quick=True)
    assert not set(QUICK_SKIPS) & set(chosen)
    assert all("--quick" in skipped[name] for name in QUICK_SKIPS)
    assert select(["imp_full"], [], quick=True)[0] == ["imp_full"]


def test_select_names_the_valid_choices_for_a_typo():
    with pytest.raises(ValueError, match=r"unknown benchmark 'trainr'.*trainer"):
        select(["trainr"], [], quick=False)


def test_cli_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--skip", "nope"])
    assert exc.value.code == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


# -- the report -----------------------------------------------------------------------------------


def fake_suite_report() -> dict:
    def ok(ctx: Context) -> Group:
        target = Target.minimum(2, "×")
        rows = [Row.judged("ok", "a | b", 3.0, "×", target), Row.info("ok", "x", math.nan, "s")]
        return Group(rows, {"samples": [1.0, math.inf]})

    def broken(ctx: Context) -> Group:
        raise RuntimeError("kaput")

    registry = {
        "ok": Benchmark("ok", "Fine", ok),
        "broken": Benchmark("broken", "Broken", broken),
        "skipped": Benchmark("skipped", "Left out", ok),
    }
    ctx = Context(quick=True, log=lambda message: None)
    return run(["ok", "broken"], {"skipped": "--skip"}, ctx, "python -m benchmarks", registry)


def test_report_collects_rows_failures_and_skips():
    report = fake_suite_report()
    rep.validate(report)
    assert [r["item"] for r in report["rows"]] == ["a | b", "x", "Broken", "Left out"]
    assert report["rows"][0]["met"] is True
    assert report["rows"][2]["measured"] == "FAILED (see JSON)"
    assert "RuntimeError: kaput" in report["errors"]["broken"]
    assert report["rows"][3]["measured"] == "not run: --skip"
    assert report["details"]["ok"]["samples"] == [1.0, math.inf]
    assert report["mode"] == "quick"


def test_json_round_trip_is_valid_and_strict():
    text = rep.to_json(fake_suite_report())
    back = json.loads(text)  # NaN/inf would make this non-standard JSON; they become null
    assert back["details"]["ok"]["samples"] == [1.0, None]
    assert back["rows"][1]["value"] is None
    rep.validate(back)


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda r: r.pop("machine"), "lacks 'machine'"),
        (lambda r: r.update(schema="other/9"), "schema"),
        (lambda r: r["rows"][0].update(met="yes"), "'met' has the wrong type"),
        (lambda r: r["rows"][0].pop("note"), "row 0 has keys"),
        (lambda r: r["machine"].pop("cpu"), "machine info lacks"),
    ],
)
def test_validate_names_what_is_wrong(breakage, message):
    report = fake_suite_report()
    breakage(report)
    with pytest.raises(ValueError, match=message):
        rep.validate(report)


def test_table_and_markdown(tmp_path):
    report = fake_suite_report()
    table = rep.format_table([Row(**r) for r in report["rows"]])
    lines = table.splitlines()
    assert lines[0].split("|")[1].strip() == "Item"
    assert len({len(line) for line in lines}) == 1  # padded into columns
    assert r"a \| b" in table  # a bare | would split the cell
    assert all(line.replace(r"\|", "").count("|") == 6 for line in lines)
    path = tmp_path / "out" / "RESULTS.md"
    rep.write_atomic(path, rep.markdown(report))
    text = path.read_text()
    assert report["date"] in text and table in text
    assert "Not run: skipped (--skip)" in text
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
