"""Tests for ticketlab.timing, the harness of the hardware lab and the benchmarks.

Every clock here is fake and every workload's cost is known, so the tests check the order of the
calls, which of them were timed and what was reported; no wall-clock time is ever asserted.
"""

from __future__ import annotations

import statistics
import time

import pandas as pd
import pytest
import torch

from ticketlab import timing


class FakeClock:
    """A clock that moves only when a fake workload says so; records which workload ran."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def work(self, name: str, seconds: float, drift: float = 0.0):
        """A workload taking ``seconds`` × (1 + drift × calls so far): a machine that slows."""

        def run() -> None:
            self.now += seconds * (1.0 + drift * len(self.calls))
            self.calls.append(name)

        return run

    def costs(self, name: str, seconds: list[float]):
        """A workload whose k-th call takes ``seconds[k]``."""
        remaining = list(seconds)

        def run() -> None:
            self.now += remaining.pop(0)
            self.calls.append(name)

        return run


# -- one function ----------------------------------------------------------------------------------


def test_time_call_divides_by_number_and_warms_up():
    clock = FakeClock()
    seconds = timing.time_call(
        clock.work("a", 2e-3), repeats=3, warmup=2, number=4, device="cpu", timer=clock
    )
    assert seconds == pytest.approx([2e-3] * 3)
    assert len(clock.calls) == 2 + 3 * 4


def test_time_call_synchronizes_the_device_around_the_clock(monkeypatch):
    """On a GPU the clock must not stop before the queued kernels have finished."""
    events: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))

    def clock() -> float:
        events.append("clock")
        return float(len(events))

    timing.time_call(lambda: events.append("fn"), repeats=2, warmup=1, number=2,
                     device="cuda", timer=clock)  # fmt: skip
    one_repeat = ["sync", "clock", "fn", "fn", "sync", "clock"]
    assert events == ["fn"] + one_repeat * 2


def test_default_timer_is_the_thread_clock_only_for_one_cpu_thread():
    with timing.num_threads(1):
        assert timing.default_timer("cpu") is time.thread_time
        assert timing.default_timer(None) is time.thread_time
        assert timing.default_timer("cuda") is time.perf_counter
    with timing.num_threads(2):
        assert timing.default_timer("cpu") is time.perf_counter


def test_num_threads_restores_the_setting():
    before = torch.get_num_threads()
    with timing.num_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), timing.num_threads(1):
        raise RuntimeError("the block fails")
    assert torch.get_num_threads() == before


def test_calibrate_counts_calls_to_reach_min_time():
    clock = FakeClock()
    fast = clock.work("fast", 1e-4)
    assert timing.calibrate(fast, 5e-3, timer=clock) == 50
    assert timing.calibrate(fast, 5e-3, max_number=30, timer=clock) == 30
    assert timing.calibrate(clock.work("slow", 0.02), 5e-3, timer=clock) == 1
    clock.calls.clear()
    timing.calibrate(fast, 5e-3, warmup=2, timer=clock)
    assert clock.calls == ["fast"] * 3  # two untimed calls, one timed


# -- interleaving ----------------------------------------------------------------------------------


def test_run_order_rotates_and_reverses():
    names = ["a", "b", "c"]
    orders = [timing.run_order(names, r) for r in range(6)]
    assert orders[:4] == [["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"], ["a", "c", "b"]]
    for position in range(3):  # over 2 × 3 repeats every name holds every position twice
        assert sorted(order[position] for order in orders) == ["a", "a", "b", "b", "c", "c"]
    # ... and follows each other name equally often: the six orders are all permutations
    assert len({tuple(order) for order in orders}) == 6


def test_interleave_runs_in_run_order_and_pairs_samples_by_repeat():
    clock = FakeClock()
    calls = {"a": clock.costs("a", [9.0, 2.0, 3.0, 4.0]),
             "b": clock.costs("b", [9.0, 20.0, 30.0, 40.0])}  # fmt: skip
    samples = timing.interleave(calls, 3, warmup=1, timer=clock)
    # Warm-up (untimed, costs 9), then repeats A B, B A, B A (run_order).
    assert clock.calls == ["a", "b", "a", "b", "b", "a", "b", "a"]
    # Sample r of each list is repeat r, whatever position the task held in it.
    assert samples == {"a": [2.0, 3.0, 4.0], "b": [20.0, 30.0, 40.0]}


def test_interleave_follows_run_order_for_three_tasks():
    clock = FakeClock()
    calls = {name: clock.work(name, 1.0) for name in "xyz"}
    timing.interleave(calls, 4, warmup=0, timer=clock)
    assert clock.calls == list("xyz" + "zyx" + "yzx" + "xzy")


def test_interleave_settles_untimed_and_divides_by_number():
    clock = FakeClock()
    # Per measurement of "a": one settling call (cost 100, must not count), then 2 calls.
    calls = {"a": clock.costs("a", [100.0, 1.0, 3.0, 100.0, 5.0, 7.0]),
             "b": clock.costs("b", [100.0, 10.0, 100.0, 30.0])}  # fmt: skip
    samples = timing.interleave(calls, 2, warmup=0, settle=1, number={"a": 2, "b": 1}, timer=clock)
    assert samples == {"a": [2.0, 6.0], "b": [10.0, 30.0]}


@pytest.mark.parametrize(
    "kwargs, word",
    [({"repeats": 0}, "repeats"), ({"warmup": -1}, "warmup"), ({"settle": -1}, "settle")],
)
def test_interleave_rejects_bad_counts(kwargs, word):
    with pytest.raises(ValueError, match=word):
        timing.interleave({"a": lambda: None}, **{"repeats": 2, **kwargs})


def test_ratios_pair_samples_of_the_same_round():
    # The machine got 10× slower in round 2; round-by-round ratios don't see it.
    assert timing.ratios([2.0, 20.0, 2.2], [1.0, 10.0, 1.1]) == pytest.approx([2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="same rounds"):
        timing.ratios([1.0, 2.0], [1.0])


# -- the tidy table of the hardware lab ------------------------------------------------------------


def test_time_variants_interleaves_in_run_order():
    clock = FakeClock()
    calls = {"dense": clock.work("dense", 2e-3), "csr": clock.work("csr", 1e-3)}
    table = timing.time_variants(calls, repeats=4, warmup=1, number=1, device="cpu", timer=clock)
    expected = ["dense", "csr"]  # the warmup, then each repeat in its order
    for rep in range(4):
        for name in timing.run_order(["dense", "csr"], rep):
            expected += [name, name]  # an untimed call, then the measured one
    assert clock.calls == expected
    assert list(table.columns) == ["repeat", "position", "variant", "seconds", "number"]
    assert table.loc[table["variant"] == "csr", "seconds"].tolist() == pytest.approx([1e-3] * 4)
    first = table[table["repeat"] == 1].sort_values("position")["variant"].tolist()
    assert first == timing.run_order(["dense", "csr"], 1)


def test_number_is_calibrated_to_min_time():
    clock = FakeClock()
    calls = {"fast": clock.work("fast", 1e-4), "slow": clock.work("slow", 0.02)}
    table = timing.time_variants(
        calls, repeats=2, min_time=5e-3, max_number=30, device="cpu", timer=clock
    )
    numbers = table.groupby("variant")["number"].first()
    assert numbers["fast"] == 30  # 50 calls would reach 5 ms; capped at max_number
    assert numbers["slow"] == 1


def test_time_variants_and_summarize_report_medians_of_known_samples():
    """Known per-repeat seconds, one disturbed repeat, and settling calls that must not count."""
    dense = [1.0, 2.0, 50.0, 3.0, 4.0]  # repeat 2 was disturbed
    csr = [2.0, 1.0, 100.0, 6.0, 1.0]
    settle = 1000.0
    clock = FakeClock()

    def with_settling(seconds: list[float]) -> list[float]:
        return [cost for s in seconds for cost in (settle, s)]

    calls = {"dense": clock.costs("dense", with_settling(dense)),
             "csr": clock.costs("csr", with_settling(csr))}  # fmt: skip
    table = timing.time_variants(calls, repeats=5, warmup=0, number=1, timer=clock)
    summary = timing.summarize(table).set_index("variant")

    assert summary.loc["dense", "seconds_median"] == statistics.median(dense) == 3.0
    assert summary.loc["csr", "seconds_median"] == statistics.median(csr) == 2.0
    # Per-repeat dense/csr: 0.5, 2, 0.5, 0.5, 4 → median 0.5; the ratio of medians would be 1.5.
    assert summary.loc["csr", "speedup_vs_dense"] == pytest.approx(0.5)
    assert summary.loc["dense", "speedup_vs_dense"] == 1.0


def test_summarize_by_hand():
    timings = pd.DataFrame(
        {
            "repeat": [0, 0, 1, 1, 2, 2],
            "variant": ["dense", "csr"] * 3,
            "seconds": [1.0, 2.0, 2.0, 1.0, 3.0, 6.0],
        }
    )
    summary = timing.summarize(timings).set_index("variant")
    # Per-repeat ratios dense/csr: 0.5, 2, 0.5 → median 0.5 (the ratio of medians would be 2/2 = 1).
    assert summary.loc["csr", "speedup_vs_dense"] == pytest.approx(0.5)
    assert summary.loc["dense", "speedup_vs_dense"] == pytest.approx(1.0)
    assert summary.loc["csr", "seconds_median"] == pytest.approx(2.0)
    assert summary.loc["csr", "seconds_iqr"] == pytest.approx(4.0 - 1.5)  # quartiles of 1, 2, 6
    with pytest.raises(ValueError, match="baseline"):
        timing.summarize(timings, baseline="coo")


def test_interleaving_cancels_drift_that_fools_sequential_timing():
    """A machine that gets 2 % slower with every call: csr is truly 2× faster than dense."""
    drift, repeats = 0.02, 9
    clock = FakeClock()
    calls = {"dense": clock.work("dense", 2e-3, drift), "csr": clock.work("csr", 1e-3, drift)}
    table = timing.time_variants(
        calls, repeats=repeats, warmup=0, number=1, device="cpu", timer=clock
    )
    interleaved = timing.summarize(table).set_index("variant").loc["csr", "speedup_vs_dense"]
    assert interleaved == pytest.approx(2.0, rel=0.03)

    clock = FakeClock()  # the naive way: all dense repeats, then all csr repeats
    dense = timing.time_call(clock.work("dense", 2e-3, drift), repeats=repeats, warmup=0,
                             timer=clock)  # fmt: skip
    csr = timing.time_call(clock.work("csr", 1e-3, drift), repeats=repeats, warmup=0,
                           timer=clock)  # fmt: skip
    sequential = pd.Series(dense).median() / pd.Series(csr).median()
    assert abs(sequential - 2.0) > 0.2  # drift alone moves it by more than 10 %
