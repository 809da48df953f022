"""The theorem IR as plain JSON, so that a generated candidate can carry its statement's
structure (``payload["ir"]``) next to the rendered text.

A node is ``[tag, field, ...]`` with the tags below; sorts are their names. Decoding rebuilds
the frozen dataclasses, whose constructors check operators and sorts, so a hand-edited or
hostile ``ir`` either decodes to a well-formed theorem or raises ``ValueError``.
"""

from __future__ import annotations

from typing import Any

from .ir import BinOp, Cmp, Cons, Fn, Lit, Map, Nil, Node, PBin, PNot, Sort, Theorem, UnOp, Var

__all__ = ["theorem_from_json", "theorem_to_json"]

#: nesting beyond this is not a statement the generator writes
_MAX_DEPTH = 200


def _node(node: Node) -> list[Any]:
    match node:
        case Var(name, sort):
            return ["var", name, sort.value]
        case Lit(value, sort):
            return ["lit", value, sort.value]
        case Nil():
            return ["nil"]
        case BinOp(op, left, right):
            return ["bin", op, _node(left), _node(right)]
        case UnOp(op, arg):
            return ["un", op, _node(arg)]
        case Map(fn, arg):
            return ["map", fn.op, fn.k, _node(arg)]
        case Cons(head, tail):
            return ["cons", _node(head), _node(tail)]
        case Cmp(op, left, right):
            return ["cmp", op, _node(left), _node(right)]
        case PNot(arg):
            return ["not", _node(arg)]
        case PBin(op, left, right):
            return ["pbin", op, _node(left), _node(right)]
    raise TypeError(f"not an IR node: {node!r}")


def theorem_to_json(theorem: Theorem) -> dict[str, Any]:
    return {
        "variables": [[name, sort.value] for name, sort in theorem.variables],
        "hypotheses": [_node(h) for h in theorem.hypotheses],
        "conclusion": _node(theorem.conclusion),
    }


def _decode(data: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError("the ir is nested too deeply")
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise ValueError(f"an ir node must be [tag, ...], got {str(data)[:40]!r}")
    tag, *args = data
    d = depth + 1
    try:
        if tag == "var":
            return Var(str(args[0]), Sort(args[1]))
        if tag == "lit":
            return Lit(args[0], Sort(args[1]))
        if tag == "nil":
            return Nil()
        if tag == "bin":
            return BinOp(args[0], _decode(args[1], d), _decode(args[2], d))
        if tag == "un":
            return UnOp(args[0], _decode(args[1], d))
        if tag == "map":
            return Map(Fn(args[0], int(args[1])), _decode(args[2], d))
        if tag == "cons":
            return Cons(_decode(args[0], d), _decode(args[1], d))
        if tag == "cmp":
            return Cmp(args[0], _decode(args[1], d), _decode(args[2], d))
        if tag == "not":
            return PNot(_decode(args[0], d))
        if tag == "pbin":
            return PBin(args[0], _decode(args[1], d), _decode(args[2], d))
    except (IndexError, TypeError, KeyError) as exc:
        raise ValueError(f"malformed ir node {tag!r}: {exc}") from None
    raise ValueError(f"unknown ir tag {tag!r}")


def theorem_from_json(data: Any) -> Theorem:
    """The theorem ``data`` encodes; ``ValueError`` for anything else."""
    if not isinstance(data, dict):
        raise ValueError("the ir must be an object")
    try:
        variables = tuple((str(n), Sort(s)) for n, s in data["variables"])
        hypotheses = tuple(_decode(h, 0) for h in data["hypotheses"])
        return Theorem(variables, hypotheses, _decode(data["conclusion"], 0))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed ir: {exc}") from None
