"""The rule layer: a record must parse, stay within size limits and follow the import policy.

Runs on hostile text (the domain sets ``untrusted_check``, so the execution plane runs it in a
guarded child under a time limit: a parser driven into deep recursion or huge memory costs
that candidate, not the run). Static checks are about data quality; the sandbox is the
security boundary.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Mapping
from typing import Any

from .options import CodeOptions
from .tasks import CodeTask, task_of

__all__ = ["imported_modules", "rule_problem"]


def rule_problem(payload: Mapping[str, Any], options: CodeOptions) -> str | None:
    """``None`` when the record may be verified, else the reason it may not."""
    try:
        task = task_of(payload)
    except ValueError as exc:
        return str(exc)
    if len(task.program) > options.max_program_chars:
        limit = options.max_program_chars
        return f"program of {len(task.program)} characters > max_program_chars {limit}"
    test_chars = len(task.setup) + sum(len(t.source) for t in task.tests)
    if test_chars > options.max_test_chars:
        return f"tests of {test_chars} characters > max_test_chars {options.max_test_chars}"
    if len(task.tests) > options.max_tests:
        return f"{len(task.tests)} tests > max_tests {options.max_tests}"
    program = _parse(task.program, "the program")
    if isinstance(program, str):
        return program
    for what, source in _test_sources(task):
        tree = _parse(source, what)
        if isinstance(tree, str):
            return tree
    if task.style == "humaneval" and "def check" not in task.setup:
        return "the test code defines no check(candidate) function"
    return _import_problem(program, options)


def _test_sources(task: CodeTask) -> list[tuple[str, str]]:
    sources = [("the test setup", task.setup)] if task.setup else []
    return sources + [(t.name, t.source) for t in task.tests]


def _parse(source: str, what: str) -> ast.Module | str:
    if "\x00" in source:
        return f"{what} contains a NUL character"
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        return f"{what} does not parse: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"{what} does not parse: {type(exc).__name__}"


def imported_modules(tree: ast.Module) -> list[str]:
    """Top-level names of every module an import statement names (relative ones as '.')."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." if node.level else (node.module or "").split(".")[0])
    return names


def _import_problem(tree: ast.Module, options: CodeOptions) -> str | None:
    modules = imported_modules(tree)
    if options.imports == "none" and modules:
        return f"imports are not allowed (imports 'none'), the program imports {modules[0]!r}"
    denied = set(options.denied_imports)
    for name in modules:
        if name == ".":
            return "relative imports are not allowed"
        if name in denied:
            return f"import of {name!r} is not allowed (denied_imports)"
        if options.imports == "stdlib" and name not in sys.stdlib_module_names:
            return f"import of {name!r} is not allowed: not in the standard library ('stdlib')"
    return None
