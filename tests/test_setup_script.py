"""The ./workbook script: which torch it installs, when it installs, and how `test` runs the suite.

Nothing here installs anything. Each test copies the script into a scratch folder and puts fakes
first on PATH (uname, nvidia-smi, curl) or in place of .venv/bin/python (a stand-in that records
every `-m pip` and `-m pytest` call and hands everything else to the real interpreter).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or shutil.which("bash") is None, reason="./workbook is a bash script"
)


def write_program(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/env bash\n" + body, encoding="utf-8")
    path.chmod(0o755)


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A folder holding only what the script reads: itself and pyproject.toml."""
    shutil.copy(ROOT / "workbook", tmp_path / "workbook")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def run_workbook(checkout: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TICKETLAB_", "PYTHON"))}
    base["PATH"] = f"{checkout / 'fakebin'}{os.pathsep}{base['PATH']}"
    return subprocess.run(
        ["bash", str(checkout / "workbook"), *args],
        cwd=checkout,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def fake_machine(checkout: Path, *, system: str, gpu: bool, cpu_index_up: bool) -> None:
    """Makes the script see `system` (uname -s), a GPU or none, and the CPU index up or down."""
    bin_ = checkout / "fakebin"
    real_uname = shutil.which("uname")
    write_program(bin_ / "uname", f'[[ "$1" == -s ]] && echo {system} || exec {real_uname} "$@"\n')
    gpu_body = 'echo "GPU 0: NVIDIA H100 (UUID: GPU-0)"\n' if gpu else "exit 9\n"
    write_program(bin_ / "nvidia-smi", gpu_body)
    write_program(
        bin_ / "curl",
        f'echo "curl $*" >> "{checkout}/curl.log"\n' + ("exit 0\n" if cpu_index_up else "exit 6\n"),
    )


def torch_plan(checkout: Path, **env: str) -> dict[str, str]:
    result = run_workbook(checkout, "torch-plan", **env)
    assert result.returncode == 0, result.stderr
    lines = [line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line]
    return {key: value for key, value in lines if key in {"requirement", "index", "why"}}


CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@pytest.mark.parametrize(
    ("system", "gpu", "cpu_index_up", "requirement", "index"),
    [
        pytest.param("Linux", False, True, "torch", CPU_INDEX, id="linux-no-gpu-cpu-index"),
        pytest.param("Linux", False, False, "torch==2.13.0", "pip default", id="linux-offline"),
        pytest.param("Linux", True, True, "torch", "pip default", id="linux-nvidia-gpu"),
        pytest.param("Darwin", False, True, "torch", "pip default", id="macos"),
    ],
)
def test_torch_build_follows_the_machine(checkout, system, gpu, cpu_index_up, requirement, index):
    fake_machine(checkout, system=system, gpu=gpu, cpu_index_up=cpu_index_up)
    plan = torch_plan(checkout)
    assert (plan["requirement"], plan["index"]) == (requirement, index), plan


def test_the_cpu_index_is_probed_with_a_short_time_limit(checkout):
    fake_machine(checkout, system="Linux", gpu=False, cpu_index_up=False)
    torch_plan(checkout)
    probe = (checkout / "curl.log").read_text()
    assert f"{CPU_INDEX}/torch/" in probe
    assert "--max-time 5" in probe


def test_environment_overrides_win_over_detection(checkout):
    fake_machine(checkout, system="Linux", gpu=False, cpu_index_up=True)
    cu124 = "https://download.pytorch.org/whl/cu124"
    plan = torch_plan(checkout, TICKETLAB_TORCH_INDEX=cu124, TICKETLAB_TORCH_SPEC="torch==2.5.1")
    assert (plan["requirement"], plan["index"]) == ("torch==2.5.1", cu124)
    plan = torch_plan(checkout, TICKETLAB_TORCH_INDEX="pypi")
    assert (plan["requirement"], plan["index"]) == ("torch", "pip default")
    fake_machine(checkout, system="Linux", gpu=False, cpu_index_up=False)
    plan = torch_plan(checkout, TICKETLAB_TORCH_SPEC="torch==2.4.0")
    assert (plan["requirement"], plan["index"]) == ("torch==2.4.0", "pip default")


def test_too_old_a_python_is_refused_before_anything_is_created(checkout):
    old = checkout / "fakebin" / "python3.9"
    write_program(old, '[[ "$1" == -V ]] && echo "Python 3.9.18" && exit 0\nexit 1\n')
    result = run_workbook(checkout, "setup", PYTHON=str(old))
    assert result.returncode != 0
    assert "Python 3.9.18; ticketlab needs Python >= 3.10" in result.stderr
    assert not (checkout / ".venv").exists()


def test_an_unknown_command_fails_and_shows_the_commands(checkout):
    result = run_workbook(checkout, "tset")
    assert result.returncode != 0
    assert "unknown command 'tset'" in result.stderr
    assert "./workbook test" in result.stderr


@pytest.fixture
def fake_venv(checkout) -> Path:
    """A .venv whose python records pip, compileall and pytest calls (and their environment).

    pytest exits with $UNIT_EXIT for the tests/ stage and $NOTEBOOK_EXIT for the nbval stage,
    pip with $PIP_EXIT ($UPGRADE_EXIT for ``--upgrade pip``); its pip is $FAKE_PIP_VERSION
    (default 26.0).
    Returns the log file.
    """
    log = checkout / "calls.log"
    write_program(
        checkout / ".venv" / "bin" / "python",
        f"""\
if [[ "$1" == -c && "$2" == *'version("pip")'* ]]; then
    echo "${{FAKE_PIP_VERSION:-26.0}}"
    exit 0
fi
if [[ "$1" == -m && "$2" == pip && " $* " == *" --upgrade pip "* ]]; then
    echo "${{*:2}}" >> "{log}"
    exit "${{UPGRADE_EXIT:-0}}"
fi
if [[ "$1" == -m && ( "$2" == pip || "$2" == pytest || "$2" == compileall ) ]]; then
    echo "${{*:2}} | QUICK=${{TICKETLAB_QUICK:-}} MPLBACKEND=${{MPLBACKEND:-}}" >> "{log}"
    if [[ "$2" == pytest ]]; then
        [[ " $* " == *" --nbval-lax "* ]] && exit "${{NOTEBOOK_EXIT:-0}}"
        exit "${{UNIT_EXIT:-0}}"
    fi
    exit "${{PIP_EXIT:-0}}"
fi
exec "{sys.executable}" "$@"
""",
    )
    (checkout / "tests").mkdir()
    (checkout / "notebooks").mkdir()
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_setup_installs_once_and_again_only_when_pyproject_changes(checkout, fake_venv):
    assert run_workbook(checkout, "setup").returncode == 0
    first = calls(fake_venv)
    assert any(
        call.startswith("pip install --disable-pip-version-check --no-compile -e .[lab,dev,")
        for call in first
    )

    assert run_workbook(checkout, "setup").returncode == 0
    assert calls(fake_venv) == first, "a second setup with nothing changed must install nothing"

    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# changed\n")
    assert run_workbook(checkout, "setup").returncode == 0
    assert len(calls(fake_venv)) > len(first)


def test_a_failed_install_is_retried_on_the_next_call(checkout, fake_venv):
    assert run_workbook(checkout, "setup", PIP_EXIT="1").returncode != 0
    failed = calls(fake_venv)
    assert run_workbook(checkout, "setup").returncode == 0
    assert len(calls(fake_venv)) > len(failed), "a failed setup must not be recorded as done"


PIP = "pip install --disable-pip-version-check --no-compile"


def test_a_requested_torch_is_installed_from_the_planned_index(checkout, fake_venv):
    fake_machine(checkout, system="Linux", gpu=False, cpu_index_up=True)
    result = run_workbook(checkout, "setup", TICKETLAB_TORCH_SPEC="torch==2.4.0")
    assert result.returncode == 0, result.stderr
    pip_calls = [call.split(" | ")[0] for call in calls(fake_venv) if call.startswith("pip")]
    assert pip_calls == [
        f"{PIP} torch==2.4.0 --index-url {CPU_INDEX}",
        f"{PIP} -e .[lab,dev,cluster,course]",
    ]
    # what pip did not byte-compile is compiled afterwards, in parallel, in .venv only
    assert [call.split(" | ")[0] for call in calls(fake_venv)][-1] == (
        f"compileall -q -j 0 {checkout / '.venv' / 'lib'}"
    )


UPGRADE = f"{PIP} --retries 0 --timeout 15 --upgrade pip"


@pytest.mark.parametrize(
    "pip_version, upgrade_exit, upgraded, ok",
    [
        pytest.param("26.0", "0", False, True, id="recent-pip-kept"),
        pytest.param("25.0.1", "0", False, True, id="pip-25-kept"),
        pytest.param("23.2.1", "0", True, True, id="old-pip-upgraded"),
        pytest.param("23.2.1", "1", True, True, id="old-pip-kept-when-no-newer"),
        pytest.param("21.0", "1", True, False, id="too-old-pip-must-upgrade"),
    ],
)
def test_an_old_pip_is_upgraded_first_and_only_required_where_it_must_be(
    checkout, fake_venv, pip_version, upgrade_exit, upgraded, ok
):
    fake_machine(checkout, system="Linux", gpu=False, cpu_index_up=True)
    result = run_workbook(
        checkout, "setup", FAKE_PIP_VERSION=pip_version, UPGRADE_EXIT=upgrade_exit
    )
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    pip_calls = [call.split(" | ")[0] for call in calls(fake_venv) if call.startswith("pip")]
    upgrades = [call for call in pip_calls if "--upgrade pip" in call]
    assert len(upgrades) == int(upgraded)
    if upgraded:
        assert pip_calls[0] == (UPGRADE if pip_version != "21.0" else f"{PIP} --upgrade pip")
    if ok:
        assert pip_calls[-1] == f"{PIP} -e .[lab,dev,cluster,course]"
    if upgrade_exit == "1" and ok:
        assert f"keeping pip {pip_version}" in result.stdout + result.stderr
    if not ok:
        assert not any(call.endswith("-e .[lab,dev,cluster,course]") for call in pip_calls)


def test_test_runs_unit_tests_then_notebooks_in_quick_mode(checkout, fake_venv):
    (checkout / "notebooks" / "00_setup_check.ipynb").write_text("{}")
    result = run_workbook(checkout, "test", "-k", "masks")
    assert result.returncode == 0, result.stderr
    pytest_calls = [call for call in calls(fake_venv) if call.startswith("pytest")]
    assert pytest_calls == [
        "pytest tests -k masks | QUICK= MPLBACKEND=Agg",
        "pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 "
        "--nbval-kernel-startup-timeout=120 notebooks/ | QUICK=1 MPLBACKEND=Agg",
    ]


def test_test_skips_the_notebook_stage_while_there_are_no_notebooks(checkout, fake_venv):
    # A checkpoint copy is not a notebook of the workbook.
    (checkout / "notebooks" / ".ipynb_checkpoints").mkdir()
    (checkout / "notebooks" / ".ipynb_checkpoints" / "x-checkpoint.ipynb").write_text("{}")
    result = run_workbook(checkout, "test")
    assert result.returncode == 0, result.stderr
    assert [call for call in calls(fake_venv) if "--nbval-lax" in call] == []
    assert "no notebooks yet" in result.stderr


@pytest.mark.parametrize(
    ("unit_exit", "notebook_exit", "failed"),
    [
        pytest.param("1", "0", "tests(exit 1)", id="unit-failure"),
        pytest.param("0", "1", "notebooks(exit 1)", id="notebook-failure"),
        pytest.param("0", "5", "notebooks(exit 5)", id="notebooks-collected-nothing"),
        pytest.param("2", "1", "tests(exit 2) notebooks(exit 1)", id="both"),
    ],
)
def test_test_fails_when_any_stage_fails(checkout, fake_venv, unit_exit, notebook_exit, failed):
    (checkout / "notebooks" / "00_setup_check.ipynb").write_text("{}")
    result = run_workbook(checkout, "test", UNIT_EXIT=unit_exit, NOTEBOOK_EXIT=notebook_exit)
    assert result.returncode != 0
    assert f"FAILED: {failed}" in result.stderr
    # Both stages run even when the first fails: one CI run reports every failure.
    assert len([call for call in calls(fake_venv) if call.startswith("pytest")]) == 2
