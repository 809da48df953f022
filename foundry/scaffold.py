"""``foundry new-domain NAME``: write a pip-installable plugin project that passes the suite.

The generated project is a working example (a pendulum whose period is integrated numerically),
not empty stubs: a newcomer starts from green tests and replaces the science one method at a
time. Templates live in ``foundry/templates/*.tmpl`` and use :class:`string.Template`
placeholders (``$name``), which leave Python's braces alone.
"""

from __future__ import annotations

import keyword
import re
from importlib import metadata, resources
from pathlib import Path
from string import Template

__all__ = ["new_domain", "validate_name"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")

#: Template file -> path inside the generated project (``{name}`` is filled in).
_LAYOUT: dict[str, str] = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "domain.py.tmpl": "foundry_{name}/__init__.py",
    "test_domain.py.tmpl": "tests/test_{name}.py",
}


def validate_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` can be an entry-point, package and module name.

    Lowercase identifiers only: the name becomes ``foundry_<name>`` (import), ``foundry-<name>``
    (distribution) and the registry key that run configs allow-list.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise ValueError(
            f"domain name must be a lowercase Python identifier (letters, digits, '_', "
            f"starting with a letter), got {name!r}"
        )


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _foundry_requirement() -> str:
    """Require at least the foundry that wrote the project: the templates use its API."""
    try:
        version = metadata.version("foundry-sci")
    except metadata.PackageNotFoundError:
        return "foundry-sci"
    return f"foundry-sci>={version}"


def new_domain(name: str, dest: Path, *, force: bool = False) -> Path:
    """Write the plugin project ``dest/foundry-<name>/`` and return its path.

    Refuses to touch an existing project unless ``force``; with ``force`` the generated files
    are overwritten and any other file there is left alone.
    """
    validate_name(name)
    root = Path(dest) / f"foundry-{name}"
    if root.exists() and not force:
        raise FileExistsError(f"{root} already exists (use force=True to overwrite)")
    context = {
        "name": name,
        "package": f"foundry_{name}",
        "class_name": _class_name(name),
        "foundry_requirement": _foundry_requirement(),
    }
    templates = resources.files("foundry") / "templates"
    for template, target in _LAYOUT.items():
        text = Template((templates / template).read_text(encoding="utf-8")).substitute(context)
        path = root / target.format(name=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
