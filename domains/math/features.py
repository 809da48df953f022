"""Fixed-length features of a statement and its proof, for the surrogate and the monitors.

Computed from text without running a prover, for either backend:

* hashed token unigrams and bigrams of the statement (operators, sorts, library names:
  ``*`` between variables, ``<=`` under a hypothesis, ``rev`` of ``++``);
* hashed tokens of the proof script, and the first tactic word of each sentence;
* hashed pairs (proof tactic, statement operator): whether ``lia`` meets a product of two
  variables, ``reflexivity`` meets an inequality - where a proof's fate mostly lies;
* counts: sizes, quantified variables, hypotheses, numerals (largest as ``log1p``),
  parenthesis depth, sentences; and the backend;
* where the candidate carries its statement's structure (``ir``, as generated candidates do)
  and that structure renders to exactly its statement text: whether a brute-force search over
  small values (:func:`~.ir.counterexample`, ~1 ms) finds a counterexample - a false
  statement cannot be proved. Records without it get zeros there and the text alone.

Hashing uses blake2b (stable across processes, unlike ``hash``).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import re
from collections.abc import Sequence

import numpy as np

from foundry.contract import Candidate, canonical_json

from .families import render_statement
from .ir import counterexample
from .ir_json import theorem_from_json
from .records import obligation_of

__all__ = ["N_FEATURES", "math_features", "tokens"]

STATEMENT_BUCKETS = 256
PROOF_BUCKETS = 128
PAIR_BUCKETS = 128
_COUNTS = 10
#: brute-force budget of the counterexample feature (exhaustive up to this many assignments)
SEARCH_LIMIT = 512
SEARCH_SAMPLES = 256
N_FEATURES = STATEMENT_BUCKETS + PROOF_BUCKETS + PAIR_BUCKETS + _COUNTS + 2 + 3
_TOKEN = re.compile(
    r"[A-Za-z_][A-Za-z0-9_'.]*[A-Za-z0-9_']|[A-Za-z_]|\d+|<->|->|<=|>=|<>|/\\|\\/|&&|\|\||\S"
)
_OPERATORS = frozenset(
    [
        "+",
        "-",
        "*",
        "/",
        "<",
        ">",
        "<=",
        ">=",
        "=",
        "<>",
        "->",
        "<->",
        "/\\",
        "\\/",
        "~",
        "++",
        "&&",
        "||",
        "≤",
        "≥",
        "≠",
        "→",
        "↔",
        "∧",
        "∨",
        "¬",
        "∀",
        "∃",
        "%",
    ]
)
_WORDS = frozenset(
    [
        "length",
        "rev",
        "map",
        "app",
        "min",
        "max",
        "Nat",
        "Z",
        "Int",
        "nat",
        "list",
        "List",
        "bool",
        "Bool",
        "andb",
        "orb",
        "negb",
        "forall",
        "exists",
    ]
)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _bucket(token: str, n: int, salt: str) -> int:
    digest = hashlib.blake2b(f"{salt}\x00{token}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") % n


def math_features(candidates: Sequence[Candidate]) -> np.ndarray:
    out = np.zeros((len(candidates), N_FEATURES))
    for i, cand in enumerate(candidates):
        try:
            job = obligation_of(cand.payload)
        except ValueError:
            continue  # the rule layer refuses it; features stay zero
        out[i, :-3] = _features(job.backend, job.statement, job.proof)
        data = cand.payload.get("ir")
        if data is not None:
            out[i, -3:] = _search_features(canonical_json({"ir": data}), job.backend, job.statement)
    return out


@functools.lru_cache(maxsize=65536)
def _search_features(ir_json: str, backend: str, statement: str) -> tuple[float, float, float]:
    """(has a usable ir, counterexample found, no counterexample found). Memoised by text:
    every refit featurizes all labels again, and the search is most of a row's cost."""
    try:
        theorem = theorem_from_json(json.loads(ir_json)["ir"])
        if render_statement(theorem, backend) != statement:
            return (0.0, 0.0, 0.0)  # an ir that is not this statement says nothing about it
        found = counterexample(theorem, limit=SEARCH_LIMIT, samples=SEARCH_SAMPLES) is not None
    except (ValueError, TypeError, KeyError, ArithmeticError, RecursionError):
        return (0.0, 0.0, 0.0)
    return (1.0, float(found), float(not found))


def _features(backend: str, statement: str, proof: str) -> np.ndarray:
    row = np.zeros(N_FEATURES - 3)
    st = tokens(statement)
    for a, b in zip(["^", *st], [*st, "$"], strict=True):
        row[_bucket(b, STATEMENT_BUCKETS, "s1")] += 1
        row[_bucket(a + " " + b, STATEMENT_BUCKETS, "s2")] += 1
    off = STATEMENT_BUCKETS
    pt = tokens(proof)
    heads = [pt[0]] if pt else []
    heads += [b for a, b in itertools.pairwise(pt) if a in (".", ";")]
    for tok in pt:
        row[off + _bucket(tok, PROOF_BUCKETS, "p1")] += 1
    for tok in heads:
        row[off + _bucket(tok, PROOF_BUCKETS, "p0")] += 1
    off += PROOF_BUCKETS
    ops = {t for t in st if t in _OPERATORS or t in _WORDS}
    for head in set(heads):
        for op in ops:
            row[off + _bucket(head + " " + op, PAIR_BUCKETS, "x")] += 1
    off += PAIR_BUCKETS
    numerals = [int(t) for t in st if t.isdigit() and len(t) < 30]
    depth = best = 0
    for ch in statement:
        depth += ch == "("
        depth -= ch == ")"
        best = max(best, depth)
    counts = [
        len(statement),
        len(proof),
        len(st),
        len(pt),
        statement.count(",") + statement.count("∀"),
        sum(t in ("->", "→") for t in st),
        len(numerals),
        max(numerals, default=0),
        best,
        len(heads),
    ]
    row[off : off + _COUNTS] = [math.log1p(c) for c in counts]
    row[off + _COUNTS + (backend == "lean4")] = 1.0
    row[:off] = np.log1p(row[:off])
    return row
