"""The two record formats people already have, and the one task the sandbox runs.

* **HumanEval-style**: ``task_id``, ``prompt``, ``entry_point``, ``test`` (defines
  ``check(candidate)``), and the solution in ``completion`` (appended to ``prompt``) or
  ``canonical_solution``. The program is ``prompt + completion``; the test code is the setup
  and the one test is ``check(<entry_point>)``.
* **MBPP-style**: ``text``, ``code``, ``test_list`` (assert statements), optional
  ``test_setup_code``. The program is ``code``; each assert is a test.

Any other field (``task_id``, ``text``, ``challenge_test_list``, a model name) is kept with the
example as metadata and does not change what is verified: two records with the same program
and tests are the same example (:func:`identity_key`).
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from foundry.simulators.pysandbox import TestCase

__all__ = ["PAYLOAD_SCHEMA", "CodeTask", "identity_key", "task_of"]

_TEXT = {"type": "string"}
#: Field types only: which fields a record needs depends on its format, and the rule layer
#: says which are missing in words (a schema's ``anyOf`` would only say "no branch matched").
PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "HumanEval-style (task_id, prompt, entry_point, test, completion or "
        "canonical_solution) or MBPP-style (text, code, test_list, test_setup_code); other "
        "fields are kept as metadata"
    ),
    "properties": {
        "task_id": {"type": ["string", "integer"]},
        "prompt": _TEXT,
        "entry_point": _TEXT,
        "test": _TEXT,
        "completion": _TEXT,
        "canonical_solution": _TEXT,
        "text": _TEXT,
        "code": _TEXT,
        "test_list": {"type": "array", "items": _TEXT},
        "test_setup_code": _TEXT,
        "time_limit_s": {"type": "number", "exclusiveMinimum": 0},
    },
}
_HUMANEVAL_FIELDS = ("prompt", "entry_point", "test")
_MBPP_FIELDS = ("code", "test_list")

Style = Literal["humaneval", "mbpp"]


@dataclass(frozen=True)
class CodeTask:
    """What the sandbox runs: ``program`` in the runner; ``setup`` then ``tests`` in the judge."""

    style: Style
    program: str
    setup: str
    tests: tuple[TestCase, ...]
    entry_point: str
    #: the record's own time limit (``time_limit_s``), if it names one: the check gets the
    #: smaller of it and the domain's ``timeout_s``
    time_limit_s: float | None = None
    #: whether the tests may run in the judge's warm interpreter (they are the domain's own:
    #: generated from reference solutions, or the reservoir's); a user's run in a fork
    trusted_tests: bool = False


def style_of(payload: Mapping[str, Any]) -> Style | None:
    if isinstance(payload.get("prompt"), str) and isinstance(payload.get("test"), str):
        return "humaneval"
    if isinstance(payload.get("code"), str) and isinstance(payload.get("test_list"), list):
        return "mbpp"
    return None


def task_of(payload: Mapping[str, Any]) -> CodeTask:
    """The task a record describes; ``ValueError`` with the reason when it describes none."""
    style = style_of(payload)
    if style == "humaneval":
        solution = payload.get("completion")
        if not isinstance(solution, str):
            solution = payload.get("canonical_solution")
        if not isinstance(solution, str):
            raise ValueError("a HumanEval-style record needs 'completion' or 'canonical_solution'")
        entry = payload.get("entry_point")
        if not isinstance(entry, str) or not entry.isidentifier():
            raise ValueError(f"entry_point {entry!r} is not a Python name")
        check = TestCase("check", f"check({entry})")
        program = payload["prompt"] + solution
        return CodeTask(style, program, payload["test"], (check,), entry, _time_limit(payload))
    if style == "mbpp":
        asserts = payload["test_list"]
        if not asserts or not all(isinstance(a, str) for a in asserts):
            raise ValueError("test_list must be a non-empty list of assert statements")
        setup = payload.get("test_setup_code") or ""
        if not isinstance(setup, str):
            raise ValueError("test_setup_code must be a string")
        tests = tuple(TestCase(f"test {i + 1}", a) for i, a in enumerate(asserts))
        return CodeTask(
            style, payload["code"], setup, tests, _called_name(payload["code"], asserts)
        )
    for fields, what in ((_HUMANEVAL_FIELDS, "HumanEval-style"), (_MBPP_FIELDS, "MBPP-style")):
        present = [f for f in fields if f in payload]
        if present:
            missing = [f for f in fields if f not in payload]
            has = ", ".join(present)
            raise ValueError(f"a {what} record needs {', '.join(missing)} (it has {has})")
    raise ValueError(
        "not a HumanEval-style (prompt, entry_point, test, completion) or MBPP-style "
        "(code, test_list) record"
    )


def _time_limit(payload: Mapping[str, Any]) -> float | None:
    value = payload.get("time_limit_s")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e6:
        raise ValueError(f"time_limit_s must be a number of seconds > 0, got {value!r}")
    return float(value)


def _called_name(code: str, asserts: list[str]) -> str:
    """The program's function the asserts call first (MBPP records name none); never a
    builtin's name (a program's ``set`` must not become the entry point of ``set(f(x))``)."""
    try:
        defined = {
            node.name
            for node in ast.parse(code).body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        } - set(dir(builtins))
        for text in asserts:
            for node in ast.walk(ast.parse(text)):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in defined
                ):
                    return node.func.id
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    return ""


def identity_key(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """What makes two records the same example: the program and the tests, not the metadata."""
    try:
        task = task_of(payload)
    except (ValueError, KeyError, TypeError):
        return None
    return {
        "style": task.style,
        "program": task.program,
        "setup": task.setup,
        "tests": [t.source for t in task.tests],
        "time_limit_s": task.time_limit_s,
    }
