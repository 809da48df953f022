"""Packaging checks: pyproject.toml and environment.yml agree, and the install has the right shape.

* Every pip requirement of the runtime and of the circuits / chemistry / materials / gnn / slurm
  extras has a conda-forge counterpart in environment.yml whose version range starts no lower
  than pip's.
* The console script ``foundry`` and the entry-point group ``foundry.domains`` are declared.
* The folders ``domains/``, ``surrogates/``, ``simulators/`` install as ``foundry.domains`` ...,
  and nothing claims the generic top-level names ``domains`` / ``surrogates`` / ``simulators``.
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import Specifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRAS_IN_CONDA = ("circuits", "chemistry", "materials", "gnn", "slurm")

# pip (PyPI) name -> conda-forge name. Explicit on purpose: a new dependency must be placed here
# by someone who checked its conda-forge name.
PIP_TO_CONDA = {
    "numpy": "numpy",
    "scipy": "scipy",
    "pydantic": "pydantic",
    "pyyaml": "pyyaml",
    "rich": "rich",
    "dask": "dask-core",  # conda's "dask" is a metapackage that also pulls bokeh, pyarrow, ...
    "distributed": "distributed",
    "pyarrow": "pyarrow",
    "jsonschema": "jsonschema",
    "fastjsonschema": "python-fastjsonschema",
    "torch": "pytorch",
    "torch-geometric": "pytorch_geometric",
    "pyspice": "pyspice",
    "rdkit": "rdkit",
    "pyscf": "pyscf",
    "tblite": "tblite-python",  # conda-forge splits the library (tblite) from its Python API
    "ase": "ase",
    "openmm": "openmm",
    "dask-jobqueue": "dask-jobqueue",
    "pytest": "pytest",
    "ruff": "ruff",
}
# Extras whose requirements are not on conda-forge: environment.yml installs them with pip.
EXTRAS_IN_PIP_SECTION = ("code",)
# What pip cannot express but an extra needs: conda-forge packages that must come with it.
CONDA_ONLY_FOR_EXTRA = {"circuits": ("ngspice", "ngspice-lib"), "math": ("coq",)}

# Folder in the repo -> import package it must install as (pyproject [tool.setuptools.package-dir]).
MAPPED_FOLDERS = {
    "foundry": "foundry",
    "domains": "foundry.domains",
    "surrogates": "foundry.surrogates",
    "simulators": "foundry.simulators",
}
GENERIC_TOP_LEVEL = ("domains", "surrogates", "simulators", "tests", "benchmarks")


# ---- helpers ---------------------------------------------------------------------------------


def pip_requirements() -> list[tuple[str, Requirement]]:
    """(where, requirement) for the runtime dependencies and the extras mirrored in conda."""
    project = PYPROJECT["project"]
    reqs = [("[project.dependencies]", Requirement(r)) for r in project["dependencies"]]
    optional = project.get("optional-dependencies", {})
    for extra in EXTRAS_IN_CONDA:
        assert extra in optional, f"pyproject.toml has no [project.optional-dependencies] {extra}"
        reqs += [(f"extra '{extra}'", Requirement(r)) for r in optional[extra]]
    return reqs


_CONDA_SPEC = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*$")
_CONDA_OP = re.compile(r"^(>=|<=|==|!=|>|<|=)?\s*([0-9][0-9A-Za-z.*+_\-]*)$")


def conda_specs() -> dict[str, SpecifierSet]:
    """environment.yml conda dependencies as {name: PEP 440 specifier set}."""
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "conda-forge" in env.get("channels", []), "environment.yml must use conda-forge"
    specs: dict[str, SpecifierSet] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # the pip: section
            continue
        name, rest = _CONDA_SPEC.match(str(dep)).groups()
        name = name.lower()
        if "=*=" in rest or "|" in rest or " " in rest:
            pytest.fail(f"environment.yml: cannot check the conda spec {dep!r} (build or OR)")
        parts = []
        for clause in filter(None, rest.split(",")):
            m = _CONDA_OP.match(clause.strip())
            assert m, f"environment.yml: cannot read the version clause {clause!r} of {dep!r}"
            op, ver = m.groups()
            if op in (None, "="):  # conda's "=3.11" and bare "3.11" mean 3.11.*
                parts.append(f"=={ver.rstrip('.*')}.*")
            else:
                parts.append(f"{op}{ver}")
        assert name not in specs, f"environment.yml lists {name} twice"
        specs[name] = SpecifierSet(",".join(parts))
    return specs


def test_pip_only_extras_are_in_the_pip_section_of_environment_yml() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    (section,) = [dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict)]
    listed = {
        canonicalize_name(Requirement(line).name): Requirement(line).specifier
        for line in section
        if not line.startswith("-")
    }
    optional = PYPROJECT["project"]["optional-dependencies"]
    for extra in EXTRAS_IN_PIP_SECTION:
        for text in optional[extra]:
            req = Requirement(text)
            name = canonicalize_name(req.name)
            assert name in listed, f"environment.yml's pip section lacks {req} (extra {extra!r})"
            assert lower_bound(listed[name]) == lower_bound(req.specifier), (
                f"environment.yml pins {name}{listed[name]}, pyproject {req}"
            )


def lower_bound(spec: SpecifierSet) -> Version | None:
    lower_ops = (">=", ">", "==", "~=")
    bounds = [Version(s.version.rstrip(".*")) for s in spec if s.operator in lower_ops]
    return max(bounds) if bounds else None


def upper_bound(spec: SpecifierSet) -> Version | None:
    bounds = [Version(s.version) for s in spec if s.operator in ("<", "<=")]
    bounds += [_next_release(s) for s in spec if s.operator == "==" and s.version.endswith(".*")]
    return min(bounds) if bounds else None


def _next_release(s: Specifier) -> Version:
    release = list(Version(s.version.rstrip(".*")).release)
    release[-1] += 1
    return Version(".".join(map(str, release)))


# ---- pyproject <-> environment.yml ---------------------------------------------------------


def test_every_pip_requirement_has_a_compatible_conda_counterpart():
    conda = conda_specs()
    problems = []
    for where, req in pip_requirements():
        pip_name = canonicalize_name(req.name)
        conda_name = PIP_TO_CONDA.get(pip_name)
        if conda_name is None:
            problems.append(
                f"{req} ({where}): no conda-forge name known; add it to PIP_TO_CONDA in "
                f"tests/test_packaging.py and to environment.yml"
            )
            continue
        if conda_name not in conda:
            problems.append(f"{req} ({where}): environment.yml lacks its counterpart {conda_name}")
            continue
        pip_low, conda_low = lower_bound(req.specifier), lower_bound(conda[conda_name])
        if pip_low is not None and (conda_low is None or conda_low < pip_low):
            problems.append(
                f"{req} ({where}): conda {conda_name}{conda[conda_name]} allows versions below "
                f"{pip_low}; give it a lower bound >= {pip_low}"
            )
        elif conda_low is not None and not req.specifier.contains(conda_low, prereleases=True):
            problems.append(
                f"{req} ({where}): conda {conda_name}{conda[conda_name]} starts at {conda_low}, "
                f"which pip's range rejects"
            )
        pip_high, conda_high = upper_bound(req.specifier), upper_bound(conda[conda_name])
        if pip_high is not None and (conda_high is None or conda_high > pip_high):
            problems.append(
                f"{req} ({where}): conda {conda_name}{conda[conda_name]} allows versions above "
                f"pip's upper bound {pip_high}"
            )
    assert not problems, "pyproject.toml and environment.yml disagree:\n" + "\n".join(problems)


def test_conda_environment_has_what_pip_cannot_express():
    conda = conda_specs()
    optional = PYPROJECT["project"].get("optional-dependencies", {})
    for extra, names in CONDA_ONLY_FOR_EXTRA.items():
        if extra in optional:
            missing = [n for n in names if n not in conda]
            assert not missing, f"environment.yml lacks {missing}, needed by the '{extra}' extra"
    python = conda.get("python")
    assert python is not None, "environment.yml does not pin python"
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    low = lower_bound(python)
    assert low is not None and requires.contains(low), (
        f"environment.yml python{python} starts outside requires-python {requires}"
    )


def test_environment_installs_the_project_itself():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert "pip" in env["dependencies"], "environment.yml has a pip: section but not pip itself"
    assert any(
        line.replace(" ", "").startswith("-e.") for section in pip_sections for line in section
    ), "environment.yml should install the project itself with `pip: [-e .]`"


# ---- entry points ------------------------------------------------------------------------------


def test_console_script_and_domain_entry_points_are_declared():
    project = PYPROJECT["project"]
    script = project.get("scripts", {}).get("foundry")
    assert script, "pyproject.toml: [project.scripts] must declare the `foundry` console script"
    assert script.startswith("foundry."), f"`foundry` script should point into foundry: {script}"
    domains = project.get("entry-points", {}).get("foundry.domains")
    assert domains, 'pyproject.toml: [project.entry-points."foundry.domains"] is missing or empty'
    for name, target in domains.items():
        assert target.startswith("foundry.domains."), (
            f"domain entry point {name} = {target} should point into foundry.domains"
        )


# ---- the shape of the install ------------------------------------------------------------------


def test_installed_package_maps_the_folders_under_foundry(tmp_path):
    """Import from a neutral directory in isolated mode: only what is installed is visible."""
    probe = textwrap.dedent(
        """
        import importlib.util, json, sys
        import foundry, foundry.domains, foundry.surrogates, foundry.simulators
        print(json.dumps({
            "files": {m.__name__: m.__file__ for m in
                      (foundry, foundry.domains, foundry.surrogates, foundry.simulators)},
            "generic": [n for n in sys.argv[1:] if importlib.util.find_spec(n) is not None],
        }))
        """
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", probe, *GENERIC_TOP_LEVEL],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, f"the installed foundry does not import:\n{out.stderr}"
    result = json.loads(out.stdout)
    files = {name: Path(f).resolve().parent for name, f in result["files"].items()}
    editable = files["foundry"] == REPO / "foundry"
    for folder, package in MAPPED_FOLDERS.items():
        expected = REPO / folder if editable else files["foundry"].joinpath(*package.split(".")[1:])
        assert files[package] == expected, f"{package} loads from {files[package]}, not {expected}"
    assert not result["generic"], (
        f"generic top-level modules are importable from the install: {result['generic']}"
    )


def _copy_source(dst: Path) -> Path:
    """Copy the source tree without venvs and build leftovers: building in place would write
    build/ and *.egg-info into the work tree."""

    def ignore(folder, names):
        skip = {n for n in names if n in {".git", "build", "dist", "__pycache__"}}
        skip |= {n for n in names if n.endswith((".egg-info", "_cache"))}
        skip |= {n for n in names if (Path(folder, n) / "pyvenv.cfg").exists()}
        return skip

    shutil.copytree(REPO, dst, ignore=ignore)
    return dst


def test_wheel_maps_folders_under_foundry_and_claims_no_generic_names(tmp_path):
    src = _copy_source(tmp_path / "src")
    out = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out), str(src)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, f"pip wheel failed:\n{build.stdout}\n{build.stderr}"
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()

    top_level = {n.split("/")[0] for n in names} - {dist_info}
    assert top_level == {"foundry"}, f"the wheel installs top-level names {sorted(top_level)}"

    # Every file of the mapped folders is in the wheel, at its foundry.* place. This catches a new
    # subpackage that [tool.setuptools] packages does not list yet, and data files (netlists,
    # templates) that [tool.setuptools.package-data] misses: both work in the editable install
    # and break only for users of the wheel.
    missing = []
    for folder, package in MAPPED_FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*")):
            rel = path.relative_to(REPO / folder)
            if path.is_dir() or "__pycache__" in rel.parts or path.suffix == ".pyc":
                continue
            target = "/".join([*package.split("."), *rel.parts])
            if target not in names:
                missing.append(f"{path.relative_to(REPO)} -> {target}")
    assert not missing, (
        "files left out of the wheel (list the package in [tool.setuptools] packages, or the "
        "file in [tool.setuptools.package-data]):\n" + "\n".join(missing)
    )

    eps = configparser.ConfigParser()
    eps.read_string(entry_points)
    assert eps.has_option("console_scripts", "foundry"), entry_points
    assert eps.has_section("foundry.domains") and eps.items("foundry.domains"), entry_points
