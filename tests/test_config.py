"""ticketlab.config: every environment variable is read at call time, with clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ticketlab import config


def test_device_argument_beats_environment(monkeypatch):
    monkeypatch.setenv("TICKETLAB_DEVICE", "cuda:7")  # would fail if it were consulted
    assert config.device("cpu") == torch.device("cpu")
    assert config.device(torch.device("cpu")) == torch.device("cpu")


def test_device_environment_beats_auto_detection(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("TICKETLAB_DEVICE", "cpu")
    assert config.device() == torch.device("cpu")


def test_device_auto_detection_order(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert config.device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert config.device() == torch.device("cpu")


def test_empty_environment_variable_means_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setenv("TICKETLAB_DEVICE", "")
    assert config.device() == torch.device("cpu")


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_unavailable_cuda_is_a_clear_error(monkeypatch, how):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if how == "environment":
        monkeypatch.setenv("TICKETLAB_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match=r"CUDA is not available.*device='cpu'"):
        config.device("cuda:0" if how == "argument" else None)


def test_unavailable_mps_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="MPS is not available"):
        config.device("mps")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("", False), ("0", False), ("1", True), (" 1 ", True), ("TRUE", True)],
)
def test_quick_reads_the_environment(monkeypatch, value, expected):
    if value is not None:
        monkeypatch.setenv("TICKETLAB_QUICK", value)
    assert config.quick() is expected


def test_quick_and_budget_read_the_environment_at_call_time(monkeypatch):
    assert not config.quick()
    assert config.budget(quick=3, full=10) == 10
    monkeypatch.setenv("TICKETLAB_QUICK", "1")  # flipped after import: must be seen now
    assert config.quick()
    assert config.budget(quick=3, full=10) == 3
    monkeypatch.setenv("TICKETLAB_QUICK", "0")
    assert config.budget(quick="q", full="f") == "f"


def test_bad_quick_value_names_the_fix(monkeypatch):
    monkeypatch.setenv("TICKETLAB_QUICK", "maybe")
    with pytest.raises(ValueError, match=r"TICKETLAB_QUICK='maybe'.*set it to 1"):
        config.quick()
    with pytest.raises(ValueError, match="TICKETLAB_QUICK"):
        config.budget(quick=1, full=2)


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TICKETLAB_CACHE", str(tmp_path / "here"))
    assert config.cache_dir() == tmp_path / "here"
    monkeypatch.setenv("TICKETLAB_CACHE", "~/tl-cache")
    assert config.cache_dir() == Path.home() / "tl-cache"


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("TICKETLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert config.cache_dir() == tmp_path / "ticketlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert config.cache_dir() == Path.home() / ".cache" / "ticketlab"


def test_generator_is_deterministic_and_independent_of_global_state(device):
    torch.manual_seed(123)
    a = torch.rand(5, generator=config.generator(7, device), device=device)
    torch.manual_seed(456)  # the global seed must not matter
    b = torch.rand(5, generator=config.generator(7, device), device=device)
    c = torch.rand(5, generator=config.generator(8, device), device=device)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert config.generator(7, device).device.type == device.type


def test_generator_matches_torch_manual_seed():
    expected = torch.randn(4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.randn(4, generator=config.generator(3)), expected)
    assert config.generator(3).device == torch.device("cpu")


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_generator_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="non-negative int"):
        config.generator(seed)


def test_threads_sets_torch_from_the_environment(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("TICKETLAB_THREADS", "1")
        assert config.threads() == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.setenv("TICKETLAB_THREADS", "all")
        assert config.threads() is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("available", "expected"), [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_the_default_is_half_the_cores_and_at_least_one(available, expected):
    assert config.default_threads(available) == expected


def _threads_in_a_fresh_process(code: str, **env_changes: str) -> int:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TICKETLAB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code + "; print(torch.get_num_threads())"],
                         env=env | env_changes, capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def test_importing_ticketlab_applies_the_default_policy_unless_someone_chose():
    pytorch_default = _threads_in_a_fresh_process("import torch")
    half = max(1, len(os.sched_getaffinity(0)) // 2)
    assert _threads_in_a_fresh_process("import torch, ticketlab") == min(half, pytorch_default)
    # OMP_NUM_THREADS (read by PyTorch itself) and TICKETLAB_THREADS=all are left alone.
    omp = _threads_in_a_fresh_process("import torch", OMP_NUM_THREADS="2")
    assert _threads_in_a_fresh_process("import torch, ticketlab", OMP_NUM_THREADS="2") == omp
    all_cores = _threads_in_a_fresh_process("import torch, ticketlab", TICKETLAB_THREADS="all")
    assert all_cores == pytorch_default


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_thread_count_names_the_fix(monkeypatch, value):
    monkeypatch.setenv("TICKETLAB_THREADS", value)
    before = torch.get_num_threads()
    with pytest.raises(
        ValueError, match=rf"TICKETLAB_THREADS='{value}' is not a thread count.*'all'"
    ):
        config.threads()
    assert torch.get_num_threads() == before


def test_importing_ticketlab_applies_the_thread_count():
    code = "import ticketlab, torch; print(torch.get_num_threads())"
    env = {**os.environ, "TICKETLAB_THREADS": "1", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "1", out.stderr
