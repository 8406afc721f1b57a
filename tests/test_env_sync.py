"""pyproject.toml and environment.yml name the same packages.

pyproject.toml is the single source of dependencies; environment.yml repeats the names for conda
users. The comparison is by name only (versions may be written differently for conda), after
translating the few conda-forge names that differ from PyPI's (``CONDA_TO_PYPI``) and setting aside
entries that only make sense in a conda file (``CONDA_ONLY``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from textwrap import dedent

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the dev extra installs tomli, the same parser before it joined the stdlib
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# conda-forge name -> PyPI name, where they differ.
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",  # conda-forge's explicit CPU-only variant
    "pytorch-gpu": "torch",  # conda-forge's explicit CUDA variant
    "matplotlib-base": "matplotlib",  # matplotlib without the Qt GUI toolkit
    "playwright-python": "playwright",
}
# Entries of environment.yml that are not dependencies of the package: the interpreter itself and
# the installer that runs the `pip:` section.
CONDA_ONLY = {"python", "pip"}

# PEP 508: a name starts and ends with a letter or digit; a conda spec may add "channel::".
_NAME = re.compile(r"\s*(?:[\w.-]+::)?([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
_EDITABLE = re.compile(r"^(?:-e|--editable)\s+\.(?:\[(?P<extras>[^\]]*)\])?\s*$")


def normalize(name: str) -> str:
    """PEP 503 normal form: ``PyYAML`` and ``pyyaml``, ``nb_val`` and ``nb-val`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    """The package name at the start of a PEP 508 requirement or a conda match spec."""
    match = _NAME.match(spec)
    if match is None:
        raise ValueError(f"cannot read a package name from {spec!r}")
    return normalize(match.group(1))


def pyproject_dependencies(path: Path) -> dict[str, set[str]]:
    """Names required by ``path``, by section: ``"dependencies"`` and one key per extra."""
    project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    own_name = normalize(project["name"])
    sections = {"dependencies": project.get("dependencies", [])}
    sections.update(project.get("optional-dependencies", {}))
    # An extra may pull in another extra as "ticketlab[lab]"; that is not a dependency to mirror.
    return {
        section: {requirement_name(spec) for spec in specs} - {own_name}
        for section, specs in sections.items()
    }


def sync_problems(pyproject_path: Path, environment_path: Path) -> list[str]:
    """Every way the two files disagree, each as a sentence that says how to fix it."""
    project = tomllib.loads(pyproject_path.read_text(encoding="utf-8"))["project"]
    wanted = pyproject_dependencies(pyproject_path)
    env = yaml.safe_load(environment_path.read_text(encoding="utf-8"))
    problems = []

    channels = env.get("channels", [])
    if channels != ["conda-forge"]:
        problems.append(
            f"environment.yml channels are {channels}; use exactly [conda-forge] "
            "(the pytorch channel is retired and conda-forge has every package)"
        )

    provided: dict[str, str] = {}  # PyPI name -> where environment.yml installs it
    python_spec = None
    editable_extras = None
    for entry in env.get("dependencies", []):
        if isinstance(entry, dict):
            for line in entry.get("pip", []):
                editable = _EDITABLE.match(line)
                if editable:
                    extras = editable.group("extras") or ""
                    editable_extras = {normalize(e) for e in extras.split(",") if e.strip()}
                elif not line.startswith("-"):
                    provided[requirement_name(line)] = "pip"
            continue
        conda_name = requirement_name(entry)
        if conda_name == "python":
            python_spec = re.sub(r"\s+", "", entry)
        if conda_name not in CONDA_ONLY:
            provided[CONDA_TO_PYPI.get(conda_name, conda_name)] = "conda"

    for section, names in wanted.items():
        for name in sorted(names - provided.keys()):
            conda_name = next((c for c, p in CONDA_TO_PYPI.items() if p == name), None)
            hint = f" (conda-forge calls it {conda_name!r})" if conda_name else ""
            problems.append(
                f"{name!r} is in pyproject.toml [{section}] but not in environment.yml; "
                f"add it there{hint}"
            )
    everything_wanted = set().union(*wanted.values())
    for name in sorted(provided.keys() - everything_wanted):
        problems.append(
            f"{name!r} is in environment.yml ({provided[name]}) but not in pyproject.toml; "
            "add it to pyproject.toml, the single source of dependencies, or remove it"
        )

    extras = set(project.get("optional-dependencies", {}))
    install_line = f"-e .[{','.join(sorted(extras))}]"
    if editable_extras is None:
        problems.append(
            f"environment.yml does not install the project; add `- {install_line}` under `pip:`"
        )
    elif editable_extras != extras:
        problems.append(
            f"environment.yml installs the project with extras {sorted(editable_extras)} but "
            f"pyproject.toml defines {sorted(extras)}; use `{install_line}`"
        )

    requires_python = re.sub(r"\s+", "", project.get("requires-python", ""))
    if python_spec != f"python{requires_python}":
        problems.append(
            f"environment.yml asks for {python_spec!r} but pyproject.toml has "
            f"requires-python {requires_python!r}; write `- python{requires_python}`"
        )
    return problems


def test_the_repository_files_agree():
    assert sync_problems(ROOT / "pyproject.toml", ROOT / "environment.yml") == []


# A small pair of files in sync, exercising every kind of line the real files use: version
# bounds, an environment marker, a renamed package, a pip-only package and the editable install.
PYPROJECT = """\
[project]
name = "demo"
requires-python = ">=3.10"
dependencies = ["torch>=2.2", "PyYAML", "matplotlib"]

[project.optional-dependencies]
lab = ["jupyterlab>=4"]
dev = ["pytest", "tomli; python_version < '3.11'", "playwright", "demo[lab]"]
"""
ENVIRONMENT = """\
channels:
  - conda-forge
dependencies:
  - python >=3.10
  - pip
  - conda-forge::pytorch-cpu>=2.2
  - pyyaml
  - matplotlib-base
  - jupyterlab>=4
  - pytest
  - tomli
  - pip:
      - playwright
      - -e .[lab,dev]
"""


def problems_for(tmp_path: Path, pyproject: str, environment: str) -> list[str]:
    (tmp_path / "pyproject.toml").write_text(dedent(pyproject), encoding="utf-8")
    (tmp_path / "environment.yml").write_text(dedent(environment), encoding="utf-8")
    return sync_problems(tmp_path / "pyproject.toml", tmp_path / "environment.yml")


def test_a_pair_in_sync_has_no_problems(tmp_path):
    assert problems_for(tmp_path, PYPROJECT, ENVIRONMENT) == []


@pytest.mark.parametrize(
    ("pyproject", "environment", "expected"),
    [
        pytest.param(
            PYPROJECT.replace('"pytest"', '"pytest", "rich"'),
            ENVIRONMENT,
            ["'rich' is in pyproject.toml [dev] but not in environment.yml"],
            id="added-to-pyproject-only",
        ),
        pytest.param(
            PYPROJECT.replace('"torch>=2.2", ', ""),
            ENVIRONMENT,
            ["'torch' is in environment.yml (conda) but not in pyproject.toml"],
            id="removed-from-pyproject-only",
        ),
        pytest.param(
            PYPROJECT,
            ENVIRONMENT.replace("  - pytest\n", "  - pytest\n  - scipy\n"),
            ["'scipy' is in environment.yml (conda) but not in pyproject.toml"],
            id="added-to-environment-only",
        ),
        pytest.param(
            PYPROJECT,
            ENVIRONMENT.replace("      - playwright\n", ""),
            [
                "'playwright' is in pyproject.toml [dev] but not in environment.yml; "
                "add it there (conda-forge calls it 'playwright-python')"
            ],
            id="removed-from-environment-only",
        ),
        pytest.param(
            PYPROJECT.replace('lab = ["jupyterlab>=4"]', 'lab = ["jupyterlab>=4"]\ndocs = []'),
            ENVIRONMENT,
            ["environment.yml installs the project with extras ['dev', 'lab']"],
            id="new-extra-not-installed",
        ),
        pytest.param(
            PYPROJECT,
            ENVIRONMENT.replace("      - -e .[lab,dev]\n", ""),
            ["environment.yml does not install the project"],
            id="project-not-installed",
        ),
        pytest.param(
            PYPROJECT,
            ENVIRONMENT.replace("  - conda-forge\n", "  - pytorch\n  - conda-forge\n"),
            ["environment.yml channels are ['pytorch', 'conda-forge']"],
            id="retired-pytorch-channel",
        ),
        pytest.param(
            PYPROJECT.replace('">=3.10"', '">=3.11"'),
            ENVIRONMENT,
            ["environment.yml asks for 'python>=3.10' but pyproject.toml has requires-python"],
            id="python-floor-differs",
        ),
    ],
)
def test_a_change_to_one_file_only_is_reported(tmp_path, pyproject, environment, expected):
    problems = problems_for(tmp_path, pyproject, environment)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), problems


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("torch>=2.2", "torch"),
        ("tomli; python_version < '3.11'", "tomli"),
        ("PyYAML", "pyyaml"),
        ("pytest_timeout", "pytest-timeout"),
        ("nbval >=0.11", "nbval"),
        ("conda-forge::pytorch-cpu=2.5", "pytorch-cpu"),
        ("ipykernel[test]==6.29 ; sys_platform != 'win32'", "ipykernel"),
    ],
)
def test_requirement_names_are_read_as_written_by_hand(spec, name):
    assert requirement_name(spec) == name
