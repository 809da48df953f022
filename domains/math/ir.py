"""A small theorem IR for the math domain: rendered to Coq and to Lean 4, checked by brute force.

The generator builds statements as trees, not text, so that one statement renders into both
provers' syntax and can be mutated structurally (a literal, a comparison, one operand), and so
that its truth on small values can be computed without a prover: the ground truth (the prover)
decides, but tests and steering want to know whether a statement is plausibly true.

Sorts are ``nat``, ``int`` (Coq ``Z``), ``bool`` and ``list_nat``. Natural subtraction is
truncated (``2 - 5 = 0``) in Coq, in Lean and in :func:`evaluate`. A :class:`Theorem` is
``forall vars, hypothesis_1 -> ... -> conclusion``.

Rendering is deliberately parenthesis-heavy: every compound operand is wrapped, so that the two
provers' different precedence tables (Lean's ``&&`` binds looser than ``=``) never change the
meaning. Coq statements never contain a full stop followed by a blank (or at the end), a comment
opener/closer or a double quote, since a checker splits sentences on those.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Union

import numpy as np

__all__ = [
    "EXHAUSTIVE_LIMIT",
    "SAMPLES",
    "BinOp",
    "Cmp",
    "Cons",
    "Fn",
    "Lit",
    "Map",
    "Nil",
    "PBin",
    "PNot",
    "Sort",
    "Theorem",
    "UnOp",
    "Var",
    "compile_theorem",
    "counterexample",
    "domain",
    "evaluate",
    "get_at",
    "is_plausibly_true",
    "replace_at",
    "sort_of",
    "thresholds",
    "to_coq",
    "to_lean",
    "value",
    "walk",
    "walk_node",
]


class Sort(StrEnum):
    NAT = "nat"
    INT = "int"
    BOOL = "bool"
    LIST = "list_nat"


# -- terms ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Var:
    name: str
    sort: Sort


@dataclass(frozen=True)
class Lit:
    """An integer literal of sort ``nat`` or ``int``, or a boolean of sort ``bool``."""

    value: int | bool
    sort: Sort

    def __post_init__(self) -> None:
        if self.sort is Sort.BOOL:
            if not isinstance(self.value, bool):
                raise TypeError("a bool literal needs a bool value")
        elif self.sort in (Sort.NAT, Sort.INT):
            if isinstance(self.value, bool) or not isinstance(self.value, int):
                raise TypeError("a number literal needs an int value")
            if self.sort is Sort.NAT and self.value < 0:
                raise ValueError("a nat literal cannot be negative")
        else:
            raise TypeError("lists have no literals but nil and cons")


@dataclass(frozen=True)
class Nil:
    """The empty list of naturals."""


@dataclass(frozen=True)
class Fn:
    """The function a ``map`` applies: ``fun x => x + k`` (``add``) or ``fun x => x * k``."""

    op: str
    k: int

    def __post_init__(self) -> None:
        if self.op not in ("add", "mul") or self.k < 0:
            raise ValueError(f"unknown map function {self.op} {self.k}")

    def __call__(self, x: int) -> int:
        return x + self.k if self.op == "add" else x * self.k


#: binary term operators: arithmetic (nat, int), ``min``/``max``, list append, bool and/or
BINOPS = ("+", "-", "*", "min", "max", "++", "&&", "||")
#: unary term operators: int negation, bool negation, list length (nat-valued), list reverse
UNOPS = ("neg", "negb", "length", "rev")


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Term
    right: Term

    def __post_init__(self) -> None:
        if self.op not in BINOPS:
            raise ValueError(f"unknown operator {self.op!r}")


@dataclass(frozen=True)
class UnOp:
    op: str
    arg: Term

    def __post_init__(self) -> None:
        if self.op not in UNOPS:
            raise ValueError(f"unknown operator {self.op!r}")


@dataclass(frozen=True)
class Map:
    fn: Fn
    arg: Term


@dataclass(frozen=True)
class Cons:
    head: Term
    tail: Term


Term = Union[Var, Lit, Nil, BinOp, UnOp, Map, Cons]  # noqa: UP007 - a runtime alias


# -- propositions -------------------------------------------------------------------------------
CMPS = ("=", "<=", "<", "<>")
CONNECTIVES = ("and", "or", "implies", "iff")


@dataclass(frozen=True)
class Cmp:
    op: str
    left: Term
    right: Term

    def __post_init__(self) -> None:
        if self.op not in CMPS:
            raise ValueError(f"unknown comparison {self.op!r}")


@dataclass(frozen=True)
class PNot:
    arg: Prop


@dataclass(frozen=True)
class PBin:
    op: str
    left: Prop
    right: Prop

    def __post_init__(self) -> None:
        if self.op not in CONNECTIVES:
            raise ValueError(f"unknown connective {self.op!r}")


Prop = Union[Cmp, PNot, PBin]  # noqa: UP007 - a runtime alias
Node = Union[Term, Prop]  # noqa: UP007 - a runtime alias


@dataclass(frozen=True)
class Theorem:
    """``forall variables, hypotheses[0] -> ... -> conclusion``, sort-checked on creation."""

    variables: tuple[tuple[str, Sort], ...]
    hypotheses: tuple[Prop, ...]
    conclusion: Prop

    def __post_init__(self) -> None:
        names = [name for name, _ in self.variables]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate variable names in {names}")
        scope = dict(self.variables)
        for prop in (*self.hypotheses, self.conclusion):
            _check_prop(prop, scope)


# -- sorts ---------------------------------------------------------------------------------------
def sort_of(term: Term, scope: Mapping[str, Sort] | None = None) -> Sort:
    """The sort of a term; raises ``TypeError`` on an ill-sorted one."""
    if isinstance(term, Var):
        if scope is not None and scope.get(term.name) is not term.sort:
            raise TypeError(f"variable {term.name} is not bound as {term.sort}")
        return term.sort
    if isinstance(term, Lit):
        return term.sort
    if isinstance(term, Nil):
        return Sort.LIST
    if isinstance(term, Cons):
        _expect(term.head, Sort.NAT, scope)
        _expect(term.tail, Sort.LIST, scope)
        return Sort.LIST
    if isinstance(term, Map):
        _expect(term.arg, Sort.LIST, scope)
        return Sort.LIST
    if isinstance(term, UnOp):
        arg_sort, result = {
            "neg": (Sort.INT, Sort.INT),
            "negb": (Sort.BOOL, Sort.BOOL),
            "length": (Sort.LIST, Sort.NAT),
            "rev": (Sort.LIST, Sort.LIST),
        }[term.op]
        _expect(term.arg, arg_sort, scope)
        return result
    if isinstance(term, BinOp):
        left = sort_of(term.left, scope)
        _expect(term.right, left, scope)
        allowed = {
            "++": (Sort.LIST,),
            "&&": (Sort.BOOL,),
            "||": (Sort.BOOL,),
        }.get(term.op, (Sort.NAT, Sort.INT))
        if left not in allowed:
            raise TypeError(f"operator {term.op} does not apply to {left}")
        return left
    raise TypeError(f"not a term: {term!r}")


def _expect(term: Term, sort: Sort, scope: Mapping[str, Sort] | None) -> None:
    got = sort_of(term, scope)
    if got is not sort:
        raise TypeError(f"expected a {sort}, got a {got}: {term!r}")


def _check_prop(prop: Prop, scope: Mapping[str, Sort]) -> None:
    if isinstance(prop, Cmp):
        left = sort_of(prop.left, scope)
        _expect(prop.right, left, scope)
        if prop.op in ("<=", "<") and left not in (Sort.NAT, Sort.INT):
            raise TypeError(f"{prop.op} compares numbers, not {left}")
    elif isinstance(prop, PNot):
        _check_prop(prop.arg, scope)
    elif isinstance(prop, PBin):
        _check_prop(prop.left, scope)
        _check_prop(prop.right, scope)
    else:
        raise TypeError(f"not a proposition: {prop!r}")


# -- traversal -----------------------------------------------------------------------------------
Path = tuple[str | int, ...]

_FIELDS: dict[type, tuple[str, ...]] = {
    BinOp: ("left", "right"),
    UnOp: ("arg",),
    Map: ("arg",),
    Cons: ("head", "tail"),
    Cmp: ("left", "right"),
    PNot: ("arg",),
    PBin: ("left", "right"),
}


def walk_node(
    node: Node, path: Path = (), ancestors: tuple[Node, ...] = ()
) -> Iterator[tuple[Path, Node, tuple[Node, ...]]]:
    """The node and its descendants as ``(path, node, ancestors)``, pre-order."""
    yield path, node, ancestors
    for field in _FIELDS.get(type(node), ()):
        yield from walk_node(getattr(node, field), (*path, field), (*ancestors, node))


def walk(theorem: Theorem) -> Iterator[tuple[Path, Node, tuple[Node, ...]]]:
    """Every node as ``(path, node, ancestors)``, hypotheses first, pre-order.

    Paths start with ``("hypotheses", i)`` or ``("conclusion",)``; ancestors run from the root
    proposition down to the node's parent.
    """
    for i, hypothesis in enumerate(theorem.hypotheses):
        yield from walk_node(hypothesis, ("hypotheses", i))
    yield from walk_node(theorem.conclusion, ("conclusion",))


def get_at(theorem: Theorem, path: Path) -> Node:
    node: Any = theorem
    for step in path:
        node = node[step] if isinstance(step, int) else getattr(node, step)
    return node


def _replace(node: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    step, rest = path[0], path[1:]
    if isinstance(step, int):
        items = list(node)
        items[step] = _replace(items[step], rest, new)
        return tuple(items)
    return dataclasses.replace(node, **{step: _replace(getattr(node, step), rest, new)})


def replace_at(theorem: Theorem, path: Path, new: Node) -> Theorem:
    """A copy of the theorem with the node at ``path`` replaced (and sort-checked again)."""
    return _replace(theorem, path, new)


# -- rendering -------------------------------------------------------------------------------------
#: arithmetic precedence, the same relative order in Coq and in Lean
_PRECEDENCE = {"+": 1, "-": 1, "*": 2}


def _application(term: Term) -> bool:
    """Prefix applications (``length l``, ``Nat.min a b``, ``map f l``), not infix forms."""
    return (
        isinstance(term, Map)
        or (isinstance(term, UnOp) and term.op != "neg")
        or (isinstance(term, BinOp) and term.op in ("min", "max"))
    )


def _atomic(term: Term) -> bool:
    """Terms that need no parentheses as an operand or a function argument."""
    return isinstance(term, Var | Nil) or (
        isinstance(term, Lit) and (term.sort is not Sort.INT or term.value >= 0)
    )


class _Syntax(ABC):
    """One prover's spelling of the IR; subclasses fill in the tables and the leaves."""

    forall: ClassVar[str] = ""
    sorts: ClassVar[dict[Sort, str]] = {}
    cmps: ClassVar[dict[str, str]] = {}
    connectives: ClassVar[dict[str, str]] = {}
    negation: ClassVar[str] = ""

    @abstractmethod
    def lit(self, term: Lit) -> str: ...

    @abstractmethod
    def nil(self) -> str: ...

    def app(self, fn: str, args: Sequence[Term]) -> str:
        return " ".join([fn, *(self.argument(a) for a in args)])

    def argument(self, term: Term) -> str:
        """A function argument: anything but a name or a literal is wrapped."""
        text = self.term(term)
        return text if _atomic(term) or (text.startswith("(") and _balanced(text)) else f"({text})"

    def operand(self, term: Term) -> str:
        """An operand of an infix operator: applications bind tighter than any infix."""
        return self.term(term) if _application(term) else self.argument(term)

    def infix(self, term: BinOp) -> str:
        """``left op right`` with the parentheses both provers need, and no more.

        ``+ - *`` have the same precedence and left associativity in Coq and Lean, and a chain
        of one bool operator reads the same in both; ``++`` associates to the right in Coq and
        to the left in Lean, so nested appends keep their parentheses.
        """
        left = self._side(term.left, term.op, right=False)
        return f"{left} {term.op} {self._side(term.right, term.op, right=True)}"

    def _side(self, child: Term, op: str, *, right: bool) -> str:
        if isinstance(child, BinOp) and op in _PRECEDENCE and child.op in _PRECEDENCE:
            inner, outer = _PRECEDENCE[child.op], _PRECEDENCE[op]
            if inner > outer or (inner == outer and not right):
                return self.term(child)
        if isinstance(child, BinOp) and child.op == op and op in ("&&", "||") and not right:
            return self.term(child)
        return self.operand(child)

    def fn(self, fn: Fn) -> str:
        return f"(fun x => x {'+' if fn.op == 'add' else '*'} {fn.k})"

    @abstractmethod
    def term(self, term: Term) -> str: ...

    def atom(self, cmp: Cmp) -> str:
        left, right = self.cmp_operand(cmp.left), self.cmp_operand(cmp.right)
        return f"{left} {self.cmps[cmp.op]} {right}"

    def cmp_operand(self, term: Term) -> str:
        """Bool operators bind looser than ``=`` in Lean (``!a = b`` is ``!(a = b)``, and
        ``a && b = c`` is ``a && (b = c)``): wrap them in comparisons, for both provers."""
        if (isinstance(term, BinOp) and term.op in ("&&", "||")) or (
            isinstance(term, UnOp) and term.op == "negb"
        ):
            return f"({self.term(term)})"
        return self.term(term)

    def prop(self, prop: Prop) -> str:
        if isinstance(prop, Cmp):
            return self.atom(prop)
        if isinstance(prop, PNot):
            return f"{self.negation} ({self.prop(prop.arg)})"
        return f"{self.sub(prop.left)} {self.connectives[prop.op]} {self.sub(prop.right)}"

    def sub(self, prop: Prop) -> str:
        text = self.prop(prop)
        return f"({text})" if isinstance(prop, PBin) else text

    def theorem(self, theorem: Theorem) -> str:
        body = [self.sub(h) for h in theorem.hypotheses]
        concl = theorem.conclusion
        body.append(self.sub(concl) if theorem.hypotheses else self.prop(concl))
        text = f" {self.connectives['implies']} ".join(body)
        if not theorem.variables:
            return text
        groups = [
            (sort, [name for name, _ in group])
            for sort, group in itertools.groupby(theorem.variables, key=lambda v: v[1])
        ]
        if len(groups) == 1:
            sort, names = groups[0]
            binders = f"{' '.join(names)} : {self.sorts[sort]}"
        else:
            binders = " ".join(
                f"({' '.join(names)} : {self.sorts[sort]})" for sort, names in groups
            )
        return f"{self.forall} {binders}, {text}"


def _balanced(text: str) -> bool:
    """Whether the opening parenthesis of ``text`` closes at its very end."""
    depth = 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return i == len(text) - 1
    return False


class _Coq(_Syntax):
    forall = "forall"
    sorts: ClassVar[dict[Sort, str]] = {
        Sort.NAT: "nat",
        Sort.INT: "Z",
        Sort.BOOL: "bool",
        Sort.LIST: "list nat",
    }
    cmps: ClassVar[dict[str, str]] = {"=": "=", "<=": "<=", "<": "<", "<>": "<>"}
    connectives: ClassVar[dict[str, str]] = {
        "and": "/\\",
        "or": "\\/",
        "implies": "->",
        "iff": "<->",
    }
    negation = "~"

    def lit(self, term: Lit) -> str:
        if term.sort is Sort.BOOL:
            return "true" if term.value else "false"
        return str(term.value) if term.value >= 0 else f"({term.value})"

    def nil(self) -> str:
        return "(@nil nat)"

    def term(self, term: Term) -> str:
        if isinstance(term, Var):
            return term.name
        if isinstance(term, Lit):
            return self.lit(term)
        if isinstance(term, Nil):
            return self.nil()
        if isinstance(term, Cons):
            return self.app("cons", [term.head, term.tail])
        if isinstance(term, Map):
            return f"map {self.fn(term.fn)} {self.argument(term.arg)}"
        if isinstance(term, UnOp):
            if term.op == "neg":
                return f"- {self.argument(term.arg)}"
            return self.app({"negb": "negb", "length": "length", "rev": "rev"}[term.op], [term.arg])
        if term.op in ("min", "max"):
            prefix = "Z" if sort_of(term) is Sort.INT else "Nat"
            return self.app(f"{prefix}.{term.op}", [term.left, term.right])
        return self.infix(term)

    def atom(self, cmp: Cmp) -> str:
        text = f"{self.cmp_operand(cmp.left)} {self.cmps[cmp.op]} {self.cmp_operand(cmp.right)}"
        return f"({text})%Z" if sort_of(cmp.left) is Sort.INT else text


class _Lean(_Syntax):
    forall = "∀"
    sorts: ClassVar[dict[Sort, str]] = {
        Sort.NAT: "Nat",
        Sort.INT: "Int",
        Sort.BOOL: "Bool",
        Sort.LIST: "List Nat",
    }
    cmps: ClassVar[dict[str, str]] = {"=": "=", "<=": "≤", "<": "<", "<>": "≠"}
    connectives: ClassVar[dict[str, str]] = {"and": "∧", "or": "∨", "implies": "→", "iff": "↔"}
    negation = "¬"

    def lit(self, term: Lit) -> str:
        if term.sort is Sort.BOOL:
            return "true" if term.value else "false"
        # every Int literal is annotated: a statement without Int variables (a concrete fact)
        # would otherwise be elaborated over Nat
        return f"({term.value} : Int)" if term.sort is Sort.INT else str(term.value)

    def nil(self) -> str:
        return "([] : List Nat)"

    def term(self, term: Term) -> str:
        if isinstance(term, Var):
            return term.name
        if isinstance(term, Lit):
            return self.lit(term)
        if isinstance(term, Nil):
            return self.nil()
        if isinstance(term, Cons):
            return f"{self.operand(term.head)} :: {self.operand(term.tail)}"
        if isinstance(term, Map):
            return f"List.map {self.fn(term.fn)} {self.argument(term.arg)}"
        if isinstance(term, UnOp):
            if term.op == "neg":
                return f"-{self.argument(term.arg)}"
            if term.op == "negb":
                return f"!{self.argument(term.arg)}"
            return self.app({"length": "List.length", "rev": "List.reverse"}[term.op], [term.arg])
        if term.op in ("min", "max"):
            return self.app(term.op, [term.left, term.right])
        return self.infix(term)


_COQ, _LEAN = _Coq(), _Lean()


def to_coq(theorem: Theorem) -> str:
    """The statement as a Coq proposition (``Z`` atoms in ``%Z`` scope, lists without notation)."""
    return _COQ.theorem(theorem)


def to_lean(theorem: Theorem) -> str:
    """The statement as a Lean 4 proposition using core only (no Mathlib)."""
    return _LEAN.theorem(theorem)


# -- brute-force semantics -------------------------------------------------------------------------
#: the small values a statement is checked on
NAT_VALUES: tuple[int, ...] = tuple(range(7))
INT_VALUES: tuple[int, ...] = tuple(range(-4, 5))
LIST_VALUES: tuple[tuple[int, ...], ...] = tuple(
    values for length in range(4) for values in itertools.product(range(4), repeat=length)
)
#: statements with at most this many assignments are checked on all of them, others are sampled
EXHAUSTIVE_LIMIT = 8192
#: assignments drawn when the grid is larger than ``EXHAUSTIVE_LIMIT``
SAMPLES = 4096
#: at most this many values are added to a number domain around a statement's literals
MAX_EXTRA_VALUES = 12

Env = Mapping[str, Any]
_Eval = Callable[[Env], Any]


def domain(sort: Sort, thresholds: Iterable[int] = ()) -> tuple[Any, ...]:
    """The values a variable of the sort takes, numbers extended around ``thresholds``.

    A hypothesis ``n + 43 < k`` holds nowhere on 0..6, which would make any conclusion look
    true; with the values next to 43 (and, for int, next to -43) it can hold.
    """
    base: tuple[Any, ...] = {
        Sort.NAT: NAT_VALUES,
        Sort.INT: INT_VALUES,
        Sort.BOOL: (False, True),
        Sort.LIST: LIST_VALUES,
    }[sort]
    if sort not in (Sort.NAT, Sort.INT):
        return base
    extra = {v + delta for c in thresholds for v in (c, -c) for delta in (-1, 0, 1)}
    if sort is Sort.NAT:
        extra = {v for v in extra if v >= 0}
    return tuple(sorted(set(base) | set(sorted(extra - set(base), key=abs)[:MAX_EXTRA_VALUES])))


def thresholds(theorem: Theorem) -> dict[Sort, list[int]]:
    """Literals beyond the small grid that are added or compared (not coefficients), by sort."""
    found: dict[Sort, set[int]] = {Sort.NAT: set(), Sort.INT: set()}
    for _, node, ancestors in walk(theorem):
        if not isinstance(node, Lit) or node.sort not in found or abs(node.value) <= 4:
            continue
        parent = ancestors[-1] if ancestors else None
        if isinstance(parent, Cmp) or (isinstance(parent, BinOp) and parent.op in ("+", "-")):
            found[node.sort].add(abs(int(node.value)))
    return {sort: sorted(values) for sort, values in found.items()}


def _compile_term(term: Term) -> _Eval:
    if isinstance(term, Var):
        name = term.name
        return lambda env: env[name]
    if isinstance(term, Lit):
        value = term.value
        return lambda env: value
    if isinstance(term, Nil):
        return lambda env: ()
    if isinstance(term, Cons):
        head, tail = _compile_term(term.head), _compile_term(term.tail)
        return lambda env: (head(env), *tail(env))
    if isinstance(term, Map):
        fn, arg = term.fn, _compile_term(term.arg)
        return lambda env: tuple(fn(x) for x in arg(env))
    if isinstance(term, UnOp):
        arg = _compile_term(term.arg)
        unary: Callable[[Any], Any] = {
            "neg": lambda v: -v,
            "negb": lambda v: not v,
            "length": len,
            "rev": lambda v: v[::-1],
        }[term.op]
        return lambda env: unary(arg(env))
    left, right = _compile_term(term.left), _compile_term(term.right)
    if term.op == "-" and sort_of(term) is Sort.NAT:  # truncated, as in both provers
        return lambda env: max(0, left(env) - right(env))
    binary: Callable[[Any, Any], Any] = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "min": min,
        "max": max,
        "++": lambda a, b: a + b,
        "&&": lambda a, b: a and b,
        "||": lambda a, b: a or b,
    }[term.op]
    return lambda env: binary(left(env), right(env))


def _compile_prop(prop: Prop) -> _Eval:
    if isinstance(prop, Cmp):
        left, right = _compile_term(prop.left), _compile_term(prop.right)
        compare: Callable[[Any, Any], bool] = {
            "=": lambda a, b: a == b,
            "<>": lambda a, b: a != b,
            "<=": lambda a, b: a <= b,
            "<": lambda a, b: a < b,
        }[prop.op]
        return lambda env: compare(left(env), right(env))
    if isinstance(prop, PNot):
        arg = _compile_prop(prop.arg)
        return lambda env: not arg(env)
    left, right = _compile_prop(prop.left), _compile_prop(prop.right)
    connect: Callable[[bool, bool], bool] = {
        "and": lambda a, b: a and b,
        "or": lambda a, b: a or b,
        "implies": lambda a, b: (not a) or b,
        "iff": lambda a, b: a == b,
    }[prop.op]
    return lambda env: connect(left(env), right(env))


def value(term: Term, env: Env | None = None) -> Any:
    """The value of a term under ``env`` (a closed term needs none)."""
    return _compile_term(term)({} if env is None else env)


def compile_theorem(theorem: Theorem) -> Callable[[Env], bool]:
    """A fast predicate ``env -> bool``: the hypotheses imply the conclusion under ``env``."""
    hypotheses = [_compile_prop(h) for h in theorem.hypotheses]
    conclusion = _compile_prop(theorem.conclusion)
    return lambda env: not all(h(env) for h in hypotheses) or bool(conclusion(env))


def evaluate(theorem: Theorem, assignment: Env) -> bool:
    """The truth of the (quantifier-free) body under one assignment of the variables."""
    missing = {name for name, _ in theorem.variables} - set(assignment)
    if missing:
        raise KeyError(f"no values for {sorted(missing)}")
    return compile_theorem(theorem)(assignment)


def counterexample(
    theorem: Theorem,
    search: np.random.Generator | None = None,
    *,
    limit: int = EXHAUSTIVE_LIMIT,
    samples: int = SAMPLES,
) -> dict[str, Any] | None:
    """An assignment of small values that falsifies the statement, or None.

    The values: nat 0..6, int -4..4, bool, lists of length <= 3 over 0..3, and numbers next to
    the statement's added or compared literals (:func:`domain`). Every assignment is tried when
    there are at most ``limit`` of them; otherwise ``samples`` are drawn from ``search`` (a
    fixed seed if None). A counterexample is real (the semantics are the provers'); None means
    "plausibly true", not "proved".
    """
    names = [name for name, _ in theorem.variables]
    near = thresholds(theorem)
    domains = [domain(sort, near.get(sort, ())) for _, sort in theorem.variables]
    check = compile_theorem(theorem)
    if math.prod(len(d) for d in domains) <= limit:
        assignments: Iterator[tuple[Any, ...]] = itertools.product(*domains)
    else:
        rng = search if search is not None else np.random.default_rng(0)
        sorts = [sort for _, sort in theorem.variables]
        assignments = (_draw(rng, sorts, domains) for _ in range(samples))
    for values in assignments:
        env = dict(zip(names, values, strict=True))
        if not check(env):
            return {name: list(v) if isinstance(v, tuple) else v for name, v in env.items()}
    return None


def _draw(
    rng: np.random.Generator, sorts: Sequence[Sort], domains: Sequence[tuple[Any, ...]]
) -> tuple[Any, ...]:
    """One assignment; numbers often tie with (or neighbour) an earlier one of their sort.

    Uniform draws almost never satisfy a chain ``x <= y -> y <= z -> ...`` tightly, and the
    interesting counterexamples sit where such hypotheses are equalities.
    """
    values: list[Any] = []
    for i, (sort, values_of) in enumerate(zip(sorts, domains, strict=True)):
        earlier = [values[j] for j in range(i) if sorts[j] is sort]
        u = rng.random()
        if earlier and sort in (Sort.NAT, Sort.INT) and u < 0.4:
            base = earlier[int(rng.integers(len(earlier)))]
            value = base if u < 0.25 else base + (1 if rng.random() < 0.5 else -1)
            values.append(max(0, value) if sort is Sort.NAT else value)
        else:
            values.append(values_of[int(rng.integers(len(values_of)))])
    return tuple(values)


def is_plausibly_true(theorem: Theorem) -> bool:
    """No counterexample among small values (see :func:`counterexample`)."""
    return counterexample(theorem) is None
