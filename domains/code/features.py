"""Fixed-length features of a program and its tests, for the pass/fail surrogate and monitors.

Three blocks, all computed from text without running anything:

* hashed token n-grams of the program (unigrams and bigrams of Python tokens, names kept, so
  ``range ( n + 1 )`` and ``range ( n )`` land in different buckets) - where wrong operators,
  off-by-ones and dropped guards show up;
* counts of AST node types, operators and comparison kinds, with size and depth;
* hashed tokens of the tests and their count, and the entry point's name (which task it is).

Counts enter as ``log1p``; hashing uses blake2b (stable across processes, unlike ``hash``).
"""

from __future__ import annotations

import ast
import hashlib
import io
import tokenize
from collections.abc import Sequence

import numpy as np

from foundry.contract import Candidate

from .tasks import task_of

__all__ = ["N_FEATURES", "code_features"]

PROGRAM_BUCKETS = 512
TEST_BUCKETS = 64
NAME_BUCKETS = 32
_NODE_TYPES: tuple[type, ...] = (
    ast.FunctionDef,
    ast.Return,
    ast.If,
    ast.For,
    ast.While,
    ast.Break,
    ast.Continue,
    ast.Assign,
    ast.AugAssign,
    ast.Call,
    ast.Compare,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.Subscript,
    ast.Slice,
    ast.ListComp,
    ast.GeneratorExp,
    ast.DictComp,
    ast.SetComp,
    ast.Lambda,
    ast.IfExp,
    ast.Try,
    ast.Raise,
    ast.Import,
    ast.ImportFrom,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Set,
    ast.Yield,
    ast.Global,
    ast.With,
    ast.Assert,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.And,
    ast.Or,
    ast.Not,
    ast.USub,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
)
_N_AST = len(_NODE_TYPES) + 4  # + lines, characters, depth, parse failure
N_FEATURES = PROGRAM_BUCKETS + _N_AST + TEST_BUCKETS + 1 + NAME_BUCKETS


def _bucket(text: str, n: int) -> int:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % n


def _tokens(source: str) -> list[str]:
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.NAME, tokenize.OP, tokenize.NUMBER):
                out.append(tok.string)
            elif tok.type == tokenize.STRING:
                out.append("<str>")
    except (tokenize.TokenError, IndentationError, SyntaxError, ValueError):
        out.append("<untokenizable>")
    return out


def _depth(node: ast.AST, level: int = 0) -> int:
    children = list(ast.iter_child_nodes(node))
    if not children or level > 200:
        return level
    return max(_depth(child, level + 1) for child in children)


def _program_block(source: str) -> np.ndarray:
    grams = np.zeros(PROGRAM_BUCKETS)
    tokens = _tokens(source)
    for a, b in zip(["<s>", *tokens], [*tokens, "</s>"], strict=True):
        grams[_bucket(b, PROGRAM_BUCKETS)] += 1.0
        grams[_bucket(f"{a} {b}", PROGRAM_BUCKETS)] += 1.0
    shape = np.zeros(_N_AST)
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        shape[-1] = 1.0
    else:
        index = {t: i for i, t in enumerate(_NODE_TYPES)}
        for node in ast.walk(tree):
            i = index.get(type(node))
            if i is not None:
                shape[i] += 1.0
        shape[-2] = _depth(tree)
    shape[-4] = source.count("\n") + 1
    shape[-3] = len(source)
    return np.concatenate([grams, shape])


def _features(candidate: Candidate) -> np.ndarray:
    try:
        task = task_of(candidate.payload)
    except (ValueError, KeyError, TypeError):
        return np.zeros(N_FEATURES)
    program = _program_block(task.program)
    tests = np.zeros(TEST_BUCKETS + 1)
    for token in _tokens(task.setup + "\n" + "\n".join(t.source for t in task.tests)):
        tests[_bucket(token, TEST_BUCKETS)] += 1.0
    tests[-1] = len(task.tests) + task.setup.count("assert")
    name = np.zeros(NAME_BUCKETS)
    name[_bucket(task.entry_point or "?", NAME_BUCKETS)] = 1.0
    return np.concatenate([program, tests, name])


def code_features(candidates: Sequence[Candidate]) -> np.ndarray:
    """(n, N_FEATURES) float array; counts as log1p."""
    if not candidates:
        return np.zeros((0, N_FEATURES))
    return np.log1p(np.vstack([_features(c) for c in candidates]))
