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
from benchmarks.compiled import break_even
from benchmarks.flops import LENET_300_100, mlp_step_flops, mlp_step_matmuls
from benchmarks.population import ATOL, RTOL, compare, spread
from benchmarks.results import Context, Group, Row, Target, number, summary
from benchmarks.suite import BENCHMARKS, QUICK_SKIPS, Benchmark, run, select
from benchmarks.trainer import naive_net, per_step_and_fixed
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


def test_a_full_run_rewrites_the_table_and_keeps_the_partial_runs():
    table = rep.markdown(fake_suite_report())
    assert "\n## " not in table
    previous = (
        "# Benchmark results\n\nold table | 1.0 s\n\n"
        "## Start-up (a partial run)\n\nkept text\n\n## Trainer (a partial run)\n\nmore\n"
    )
    text = rep.keep_partial_runs(table, previous)
    assert text.startswith(table) and "old table" not in text
    assert text.endswith(
        "## Start-up (a partial run)\n\nkept text\n\n## Trainer (a partial run)\n\nmore\n"
    )
    assert rep.keep_partial_runs(table, None) == table
    assert rep.keep_partial_runs(table, "# Benchmark results\n\nold table\n") == table


# -- paper_scale: the projection of the paper-scale LeNet figure -----------------------------------


def test_paper_scale_is_registered():
    bench = BENCHMARKS["paper_scale"]
    assert bench.function == "paper_scale:run"
    assert bench.title == (
        "Paper-scale LeNet figure on this machine: measured per-cell costs, projected wall time"
    )
    assert "paper_scale" not in QUICK_SKIPS  # cheap in --quick runs


@pytest.mark.parametrize(
    "steps, every, expected",
    [(50_000, 100, 501), (1_000, 100, 11), (20, 10, 3), (25, 10, 4), (1, 100, 2)],
)
def test_paper_scale_counts_the_evaluations_train_makes(steps, every, expected):
    from benchmarks.paper_scale import evaluations

    assert evaluations(steps, every) == expected


def test_paper_scale_projection_by_hand():
    from benchmarks.paper_scale import project, project_run

    costs = {"step_dense": 0.002, "step_sparse": 0.001, "population_step": 0.003,
             "evaluation": 0.1, "population_evaluation": 0.3, "round_setup": 0.5}  # fmt: skip
    p = project(costs, steps=1_000, eval_every=100, population_first=True)
    # 11 evaluations; dense cell 2 + 1.1 = 3.1 s; pruned cell 1 + 1.1 = 2.1 s; population round
    # 3 + 3.3 = 6.3 s vs one by one 4 × 2.1 = 8.4 s; chain 3.1 + 15 × (6.3 + 0.5) = 105.1 s.
    assert p["evaluations_per_cell"] == 11
    assert p["dense_cell_s"] == pytest.approx(3.1)
    assert p["population_round_s"] == pytest.approx(6.3)
    assert p["one_by_one_round_s"] == pytest.approx(8.4)
    assert p["chain_s"] == pytest.approx(105.1) == p["critical_path_s"]
    assert p["serial_s"] == pytest.approx(5 * 105.1)
    assert p["workers_s"] == pytest.approx({"1": 525.5, "2": 315.3, "5": 105.1})
    assert p["other_choice_serial_s"] == pytest.approx(5 * (3.1 + 15 * 8.9))
    assert p["evaluation_share"] == pytest.approx(3.3 / 6.3)
    alone = project(costs, steps=1_000, eval_every=100, population_first=False)
    assert alone["chain_s"] == pytest.approx(3.1 + 15 * 8.9)
    assert alone["round_choice"] == "one by one"
    assert project_run(costs, 1_000, 100) == pytest.approx(6.3)


@pytest.mark.slow
def test_paper_scale_quick_run_rows_and_arithmetic():
    """The --quick benchmark end to end (seven one-thread subprocesses on full-size synthetic
    data, about a minute): the rows it makes, and its projection recomputed here from the costs
    it reports. No timing is asserted."""
    import statistics

    from benchmarks import paper_scale

    group = paper_scale.run(Context(quick=True, log=lambda message: None))
    rows, d = group.rows, group.details
    assert len(rows) == 11 + 3
    assert all(r.group == "paper_scale" and r.value is not None and r.value > 0 for r in rows)
    assert all(r.met is None and r.target == "" for r in rows)  # information, not judged
    measured = [r for r in rows if r.item.endswith("(measured)")]
    projected = [r for r in rows if "projected" in r.item]
    assert len(measured) == 7 and len(projected) == 3 + 3 + 1  # + the measured ÷ projected row
    workers = {
        n: next(r for r in rows if r.item == f"Paper-scale LeNet figure, this CPU, {n} "
                f"worker{'s' if n > 1 else ''}: projected wall time")
        for n in (1, 2, 5)
    }  # fmt: skip
    assert all(r.unit == "h" for r in workers.values())

    # The data and the recipe the projection is for.
    assert (d["data"]["train"], d["data"]["val"], d["data"]["test"]) == (55_000, 5_000, 10_000)
    assert (d["recipe"]["steps"], d["recipe"]["eval_every"]) == (50_000, 100)
    assert d["figure"]["seeds"] == 5 and d["figure"]["pruned_rounds"] == 15
    for what, m in d["measured"].items():
        assert m["threads"] == 1
        assert 0.03 < m["density"] < 0.04  # round 15's mask: 0.8 ** 15 of the hidden layers
        if what != "validation":
            assert d["costs_s"][what] == statistics.median(m["cpu"]["samples"])

    # The projection, recomputed from the unit costs.
    c = d["costs_s"]
    evals = 50_000 // 100 + 1  # at step 0 and after every 100 steps
    dense = 50_000 * c["step_dense"] + evals * c["evaluation"]
    pruned = 50_000 * c["step_sparse"] + evals * c["evaluation"]
    population = 50_000 * c["population_step"] + evals * c["population_evaluation"]
    trained = population if d["population_first"] else 4 * pruned
    assert d["population_first"] is True  # imp.run trains an MLP round as one population
    chain = dense + 15 * (trained + c["round_setup"])
    p = d["projection"]
    assert p["chain_s"] == pytest.approx(chain) == p["critical_path_s"]
    assert p["serial_s"] == pytest.approx(5 * chain)
    for n, seeds_per_worker in ((1, 5), (2, 3), (5, 1)):
        assert p["workers_s"][str(n)] == pytest.approx(seeds_per_worker * chain)
        assert workers[n].value == pytest.approx(seeds_per_worker * chain / 3600)
    chain_row = next(r for r in rows if "one seed's chain" in r.item)
    assert chain_row.value == pytest.approx(chain / 3600)

    # The validation round: measured against the same arithmetic.
    v = d["validation"]
    assert v["measured_s"] == d["measured"]["validation"]["cpu"]["median"]
    expected = (
        v["steps"] * c["population_step"]
        + (v["steps"] // v["eval_every"] + 1) * c["population_evaluation"]
    )
    assert v["projected_s"] == pytest.approx(expected)
    assert v["ratio"] == pytest.approx(v["measured_s"] / expected)


def test_paper_scale_synthetic_data_has_the_full_mnist_shape():
    from benchmarks.paper_scale import synthetic_full

    data = synthetic_full()
    assert {k: len(s) for k, s in data.splits.items()} == {
        "train": 55_000, "val": 5_000, "test": 10_000
    }  # fmt: skip
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert data.train.X.dtype == torch.float32 and data.train.y.dtype == torch.int64
    # Normalized like MNIST: (0 / 255 − 0.1307) / 0.3081 … (1 − 0.1307) / 0.3081.
    assert float(data.test.X.min()) > -0.43 and float(data.test.X.max()) < 2.83
    assert sorted(data.test.y.unique().tolist()) == list(range(10))


# -- population_vs_train and the GPU script (benchmarks/gpu.py) ------------------------------------


def test_population_vs_train_is_registered_in_the_population_alias():
    from benchmarks.suite import ALIASES

    bench = BENCHMARKS["population_vs_train"]
    assert bench.function == "population:versus_train"
    assert bench.title == "Population vs tl.train per step, LeNet-300-100, N = 1, 2, 4, 8, 32"
    assert "population_vs_train" in ALIASES["population"]


def test_gpu_projection_of_the_grouped_figure_by_hand():
    from benchmarks.gpu import project_grouped, validation_steps

    costs = {"dense_step": 0.001, "dense_evaluation": 0.01, "pruned_step": 0.002,
             "pruned_evaluation": 0.02, "round_setup": 0.1}  # fmt: skip
    p = project_grouped(costs, steps=1_000, eval_every=100)
    # 11 evaluations per run: round 0 = 1 + 0.11 s, a pruned round 2 + 0.22 s, set-up 5 × 0.1 s.
    assert p["evaluations_per_run"] == 11
    assert p["dense_round_s"] == pytest.approx(1.11)
    assert p["pruned_round_s"] == pytest.approx(2.22)
    assert p["total_s"] == pytest.approx(1.11 + 15 * (2.22 + 0.5))
    # 2 ms a step + 20 ms per 100 steps = 2.2 ms a step: (45 − 0.02) / 2.2 ms = 20,445 → 20,400.
    assert validation_steps(0.002, 0.02, 100, 50_000, 45) == 20_400
    assert validation_steps(0.002, 0.02, 100, 10_000, 45) == 10_000  # at most the given steps
    assert validation_steps(0.002, 0.02, 100, 50_000, 0.01) == 100  # at least one evaluation
    assert validation_steps(-1e-5, 0.0, 2, 4, 5) == 4  # noise of a tiny run: the most


def _gpu_script(tmp_path, *args: str):
    """``python -m benchmarks.gpu`` in a subprocess that sees no CUDA device, JSON in tmp_path."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "benchmarks.gpu", "--json", str(tmp_path / "gpu.json"), *args]
    repo = Path(__file__).resolve().parents[1]
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120)


def test_gpu_script_without_cuda_reports_every_gpu_row_as_not_measured(tmp_path):
    from benchmarks.gpu import NO_GPU

    proc = _gpu_script(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert NO_GPU in proc.stderr
    report = json.loads((tmp_path / "gpu.json").read_text())
    rep.validate(report)
    assert report["errors"] == {} and report["machine"]["gpu"]["name"] is None
    measured = [row["measured"] for row in report["rows"]]
    assert measured == ["no GPU: not run"] + ["no GPU: not measured"] * 4  # no tests ran
    assert all(row["value"] is None and row["met"] is None for row in report["rows"])
    header, _, *table = proc.stdout.splitlines()
    assert header.startswith("GPU checks: no CUDA device; torch ")
    assert sum("no GPU: not measured" in line for line in table) == 4

    proc = _gpu_script(tmp_path, "--require-gpu")
    assert proc.returncode == 2 and NO_GPU in proc.stderr


@pytest.mark.slow
def test_gpu_script_cpu_shape_runs_every_part_end_to_end(tmp_path):
    """--cpu-shape: the whole script on the CPU at tiny sizes (about 15 s): the rows it makes,
    the JSON's keys, and the projection recomputed from the unit costs it reports."""
    proc = _gpu_script(tmp_path, "--cpu-shape")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    rep.validate(report)
    assert report["mode"] == "quick" and report["errors"] == {} and report["skipped"] == {}
    assert set(report["details"]) == {"tests", "population_gpu", "paper_figure_gpu"}
    assert report["shape"]["name"] == "cpu-shape"
    assert set(report["machine"]["gpu"]) == {
        "name", "capability", "memory_gib", "torch", "cuda", "cudnn", "tf32_matmul",
        "tf32_cudnn", "float32_matmul_precision",
    }  # fmt: skip
    assert "CPU shape" in proc.stdout.splitlines()[0]

    rows = [Row(**r) for r in report["rows"]]
    tests, population, paper = rows[0], rows[1:4], rows[4:]
    assert (tests.measured, tests.met) == ("2 passed, 0 failed, 0 skipped", True)
    assert report["details"]["tests"]["counts"]["passed"] == 2
    assert [r.item for r in population] == [
        "LeNet-300-100, N = 4: speed-up over sequential",
        "LeNet-300-100, N = 4: members match sequential runs",
        "Population training (GPU): CUDA peak memory",
    ]
    assert population[0].value > 0 and population[1].value < 1e-9  # float64: members match
    assert len(paper) == 5 + 4 + 1 + 2 + 2 + 1  # steps, evaluations, set-up, round, figure, memory
    assert all(r.value is not None for r in paper[:-1])
    assert [r.measured for r in (population[2], paper[-1])] == ["no GPU: not measured"] * 2
    assert all(r.met is None for r in rows[1:])  # tiny CPU runs are not judged
    whole = next(r for r in paper if "imp.run's default grouping" in r.item)
    assert (whole.unit, whole.target) == ("min", "< 10 min")

    d = report["details"]["paper_figure_gpu"]
    assert d["data"] == {"synthetic": True, "train": 600, "val": 100, "test": 100,
                         "input_shape": [1, 28, 28]}  # fmt: skip
    assert (d["recipe"]["steps"], d["recipe"]["eval_every"]) == (50_000, 100)  # the paper's
    c = d["costs_s"]
    assert set(c) == {"step_dense", "step_sparse", "population_step", "dense_step", "pruned_step",
                      "evaluation", "population_evaluation", "dense_evaluation",
                      "pruned_evaluation", "round_setup"}  # fmt: skip
    run = 50_000 // 100 + 1  # evaluations of a 50,000-step run
    dense = 50_000 * c["dense_step"] + run * c["dense_evaluation"]
    pruned = 50_000 * c["pruned_step"] + run * c["pruned_evaluation"]
    assert d["grouped"]["total_s"] == pytest.approx(dense + 15 * (pruned + 5 * c["round_setup"]))
    assert whole.value == pytest.approx(d["grouped"]["total_s"] / 60)
    v = d["validation"]
    assert (v["steps"], v["eval_every"], v["members"]) == (4, 2, 20)
    assert v["projected_s"] == pytest.approx(4 * c["pruned_step"] + 3 * c["pruned_evaluation"])


def test_per_step_time_and_fixed_cost_by_hand():
    # 29 ms fixed + 1 ms per step: a 1-step call takes 30 ms, a 1,200-step call 1,229 ms.
    marginal, fixed = per_step_and_fixed(0.030, 1.229, 1200)
    assert marginal == pytest.approx(0.001) and fixed == pytest.approx(0.029)


def test_compiling_pays_only_when_a_compiled_step_is_faster():
    assert break_even(15.0, 0.0015, 0.0010) == pytest.approx(30_000)  # 15 s ÷ 0.5 ms
    assert break_even(15.0, 0.0013, 0.0023) is None
    assert break_even(15.0, 0.0013, 0.0013) is None
