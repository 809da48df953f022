"""The rule layer: a record must name a backend, fit the size limits and split into sentences.

Runs on hostile text in a guarded child (the domain sets ``untrusted_check``). What it refuses
here is refused for data quality and as defense in depth - a statement that is not one term,
a script that does not end its last sentence, file and process commands, soundness switches,
compiler-trusting computation. Whether a proof proves its statement is only ever decided by
the checker's own answers (``foundry.simulators.coq``, ``foundry.simulators.lean4``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from foundry.simulators import lean4
from foundry.simulators.coq import SentenceError, import_problem, sentences, statement_problem

from .options import MathOptions
from .records import Obligation, obligation_of

__all__ = ["denied_phrase", "rule_problem"]


def rule_problem(payload: Mapping[str, Any], options: MathOptions) -> str | None:
    """``None`` when the record may be checked, else the reason it may not."""
    try:
        job = obligation_of(payload)
    except ValueError as exc:
        return str(exc)
    for field, text, limit in (
        ("statement", job.statement, options.max_statement_chars),
        ("proof", job.proof, options.max_proof_chars),
    ):
        if "\x00" in text:
            return f"the {field} contains a NUL character"
        if len(text) > limit:
            return f"{field} of {len(text)} characters > max_{field}_chars {limit}"
    if not job.proof.strip():
        return "the proof is empty"
    if len(job.imports) > options.max_imports:
        return f"{len(job.imports)} imports > max_imports {options.max_imports}"
    for name in job.imports:
        problem = import_problem(name)
        if problem is not None:
            return problem
    if job.backend == "coq":
        return _coq_problem(job, options)
    return _lean_problem(job, options)


def _coq_problem(job: Obligation, options: MathOptions) -> str | None:
    problem = statement_problem(job.statement)
    if problem is not None:
        return problem
    try:
        script = sentences(job.proof)
    except SentenceError as exc:
        return f"the proof does not parse: {exc}"
    if not script:
        return "the proof has no sentence"
    phrase = denied_phrase(job.proof, options.coq_denied_commands)
    if phrase is not None:
        return f"the proof uses {phrase!r}, which is not allowed (coq_denied_commands)"
    return None


def _lean_problem(job: Obligation, options: MathOptions) -> str | None:
    # the Lean checker's own structural rules, so that a record fails here, with the reason,
    # rather than on a worker (``foundry.simulators.lean4``)
    problem = lean4.statement_problem(job.statement)
    if problem is not None:
        return problem
    problem = lean4.proof_problem(job.proof, allow_native_decide=options.allow_native_decide)
    if problem is not None:
        if any(t in problem for t in ("native_decide", "ofReduce", "trustCompiler")):
            problem += " (it trusts the compiler: allow_native_decide)"
        return problem
    return None


def denied_phrase(text: str, phrases: tuple[str, ...]) -> str | None:
    """The first of ``phrases`` that occurs in ``text`` as whole words, white space between
    its words free (``Declare   ML Module``), else ``None``."""
    for phrase in phrases:
        words = [re.escape(w) for w in phrase.split()]
        if re.search(r"(?<![\w'])" + r"\s+".join(words) + r"(?![\w'])", text):
            return phrase
    return None
