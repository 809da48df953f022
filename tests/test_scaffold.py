"""``foundry.scaffold.new_domain`` writes a plugin project that installs, registers and conforms."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from foundry.contract import Domain
from foundry.scaffold import new_domain, validate_name
from foundry.testing import check_domain


@pytest.fixture
def forget_modules() -> Iterator[list[str]]:
    """Names of generated packages imported by a test; dropped afterwards to keep tests apart."""
    names: list[str] = []
    yield names
    for name in names:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]


def test_project_layout_and_entry_point(tmp_path: Path) -> None:
    root = new_domain("demo", tmp_path)
    assert root == tmp_path / "foundry-demo"
    for rel in ("pyproject.toml", "README.md", "foundry_demo/__init__.py", "tests/test_demo.py"):
        assert (root / rel).is_file(), rel
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["name"] == "foundry-demo"
    assert any(d.startswith("foundry-sci") for d in project["project"]["dependencies"])
    entry = project["project"]["entry-points"]["foundry.domains"]
    assert entry == {"demo": "foundry_demo:DemoDomain"}
    source = (root / "foundry_demo/__init__.py").read_text()
    assert "VectorEnsembleSurrogate(" in source and "$" not in source
    assert "check_domain(DemoDomain())" in (root / "tests/test_demo.py").read_text()


@pytest.mark.parametrize("bad", ["", "Demo", "1demo", "my-demo", "_demo", "class", "dé"])
def test_rejects_names_that_cannot_be_packages(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lowercase Python identifier"):
        new_domain(bad, tmp_path)
    assert not any(tmp_path.iterdir())


def test_multi_word_name_gives_camel_case_class(tmp_path: Path) -> None:
    validate_name("heat_flow")
    root = new_domain("heat_flow", tmp_path)
    assert "class HeatFlowDomain(Domain)" in (root / "foundry_heat_flow/__init__.py").read_text()


def test_existing_project_needs_force(tmp_path: Path) -> None:
    root = new_domain("demo", tmp_path)
    (root / "NOTES.md").write_text("mine")
    init = root / "foundry_demo/__init__.py"
    init.write_text("edited")
    with pytest.raises(FileExistsError, match="force"):
        new_domain("demo", tmp_path)
    assert init.read_text() == "edited"
    assert new_domain("demo", tmp_path, force=True) == root
    assert "class DemoDomain" in init.read_text()
    assert (root / "NOTES.md").read_text() == "mine"


def test_generated_domain_passes_the_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: list[str]
) -> None:
    root = new_domain("scaffolded", tmp_path)
    monkeypatch.syspath_prepend(str(root))
    forget_modules.append("foundry_scaffolded")
    module = importlib.import_module("foundry_scaffolded")
    assert Path(module.__file__).is_relative_to(root)
    check_domain(module.ScaffoldedDomain())


def test_generated_tests_run_green(tmp_path: Path) -> None:
    root = new_domain("greentest", tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout, result.stdout


@pytest.mark.slow
def test_installed_plugin_is_found_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forget_modules: list[str]
) -> None:
    root = new_domain("installed", tmp_path / "src")
    target = tmp_path / "site"
    # No build isolation: the build uses the setuptools already here, so no index is needed.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(root),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    monkeypatch.syspath_prepend(str(target))
    forget_modules.append("foundry_installed")
    found = {ep.name: ep for ep in metadata.entry_points(group="foundry.domains")}
    assert "installed" in found, sorted(found)
    cls = found["installed"].load()
    assert issubclass(cls, Domain) and cls.name == "installed"
    assert Path(sys.modules["foundry_installed"].__file__).is_relative_to(target)
    check_domain(cls(), n=8)
