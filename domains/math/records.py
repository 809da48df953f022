"""The record a user brings and the one proof obligation a checker runs.

A record is a JSON object::

    {"backend": "coq" | "lean4", "statement": "<proposition in that backend's syntax>",
     "proof": "<tactic script>", "imports": [...], "name": "..."}

``imports`` (optional) are module names the checker loads before the statement (Coq:
``Require Import``; Lean: ``import``); ``name`` (optional) and any other field are kept with
the example as metadata. The checker, not the record, writes the theorem's header from
``statement`` and places ``proof`` inside it, so two records with the same backend,
statement, proof and imports are the same example whatever they are called
(:func:`identity_key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["BACKENDS", "PAYLOAD_SCHEMA", "Obligation", "identity_key", "obligation_of"]

Backend = Literal["coq", "lean4"]
BACKENDS: tuple[str, ...] = ("coq", "lean4")
_TEXT = {"type": "string"}
#: Field types only; missing fields are named in words by :func:`obligation_of`.
PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "backend ('coq' or 'lean4'), statement, proof (a tactic script), optional imports "
        "(module names) and name; other fields are kept as metadata"
    ),
    "properties": {
        "backend": {"type": "string", "enum": list(BACKENDS)},
        "statement": _TEXT,
        "proof": _TEXT,
        "imports": {"type": "array", "items": _TEXT},
        "name": {"type": ["string", "integer"]},
        "ir": {"type": "object"},
    },
}
_REQUIRED = ("backend", "statement", "proof")


@dataclass(frozen=True)
class Obligation:
    """What a checker is asked: prove ``statement`` by ``proof`` with ``imports`` loaded."""

    backend: Backend
    statement: str
    proof: str
    imports: tuple[str, ...]


def obligation_of(payload: Mapping[str, Any]) -> Obligation:
    """The obligation of a record; ``ValueError`` naming what is missing or mistyped."""
    missing = [f for f in _REQUIRED if f not in payload]
    if missing:
        _raise(f"the record has no {' / '.join(missing)} field (need {', '.join(_REQUIRED)})")
    backend = payload["backend"]
    if backend not in BACKENDS:
        _raise(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    for field in ("statement", "proof"):
        if not isinstance(payload[field], str):
            _raise(f"{field} must be a string, got {type(payload[field]).__name__}")
    imports = payload.get("imports", [])
    if not isinstance(imports, list | tuple) or not all(isinstance(i, str) for i in imports):
        _raise("imports must be a list of module names")
    return Obligation(backend, payload["statement"], payload["proof"], tuple(imports))


def _raise(message: str) -> Any:
    raise ValueError(message)


def identity_key(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """What makes two records the same example: backend, statement, proof, imports."""
    try:
        job = obligation_of(payload)
    except ValueError:
        return None
    return {
        "backend": job.backend,
        "statement": job.statement.strip(),
        "proof": job.proof.strip(),
        "imports": list(job.imports),
    }
