"""The math domain's theorem families and tactic templates.

A *family* is one kind of true statement (commutativity of a sum, ``rev (rev l) = l``, de Morgan
on booleans, ...) built from random parameters (which variables, which constants, how many
terms) scaled by a difficulty 1..5, with tactic templates per backend that should prove it and
templates that plausibly do not. Statements are built in the IR of
:mod:`foundry.domains.math.ir` and rendered to Coq or Lean 4. A Coq proof is the tactic script
only (the checker writes the theorem around it) and ends with a period; every Coq candidate
imports :data:`COQ_IMPORTS`; Lean candidates use core only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .ir import (
    BinOp,
    Cmp,
    Cons,
    Fn,
    Lit,
    Map,
    Nil,
    PBin,
    PNot,
    Prop,
    Sort,
    Term,
    Theorem,
    UnOp,
    Var,
    to_coq,
    to_lean,
    value,
    walk,
)

BACKENDS: tuple[str, ...] = ("coq", "lean4")
#: every Coq candidate's imports: the checker loads them once (``Require Import`` each)
COQ_IMPORTS: tuple[str, ...] = (
    "Coq.Arith.Arith",
    "Coq.micromega.Lia",
    "Coq.ZArith.ZArith",
    "Coq.Lists.List",
    "Coq.Bool.Bool",
)
#: Lean candidates use core only
LEAN_IMPORTS: tuple[str, ...] = ()
GROUPS: tuple[str, ...] = ("nat_arith", "int_arith", "lists", "logic")
LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)


# -- tactic templates ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tactic:
    """A proof template per backend (None: no such proof there).

    Templates may use ``{names}`` (the variables, space-separated), ``{bools}`` (the bool
    variables, comma-separated, for ``destruct``), ``{cases}`` (Lean ``cases a <;> cases b``)
    and ``{list}`` (the first list variable).
    """

    name: str
    coq: str | None
    lean: str | None


# fmt: off
_L = "repeat first [rewrite app_length | rewrite rev_length | rewrite map_length]"
_TABLE: tuple[tuple[str, str | None, str | None], ...] = (
    # name                   Coq script                                   Lean 4 script
    ("lia",                  "intros; lia.",                              "intros; omega"),
    ("lia_bare",             "lia.",                                      "omega"),
    ("ring",                 "intros; ring.",                             None),
    ("nia",                  "intros; nia.",                              None),
    ("reflexivity",          "reflexivity.",                              "rfl"),
    ("intros_reflexivity",   "intros; reflexivity.",                      "intros; rfl"),
    ("simpl_reflexivity",    "intros; simpl; reflexivity.",               None),
    ("decide",               None,                                        "decide"),
    ("simp",                 None,                                        "intros; simp"),
    ("simp_omega",           None,                                        "intros; simp <;> omega"),
    ("auto",                 "intros; auto.",                             None),
    ("auto_arith",           "intros; auto with arith.",                  None),
    ("auto_zarith",          "intros; auto with zarith.",                 None),
    ("tauto",                "intros; tauto.",                            None),
    ("discriminate",         "discriminate.",                             "contradiction"),
    ("left_lia",             "intros; left; lia.",                "intros; apply Or.inl; omega"),
    ("simp_all",             "intros; simpl in *; auto.",                 "intros; simp_all"),
    ("omega_nonlinear",      None,                                        "intros; omega"),
    ("nat_add_ac",   None, "intros; simp only [Nat.add_comm, Nat.add_assoc, Nat.add_left_comm]"),
    ("nat_mul_ac",   None, "intros; simp only [Nat.mul_comm, Nat.mul_assoc, Nat.mul_left_comm]"),
    ("int_add_ac",   None, "intros; simp only [Int.add_comm, Int.add_assoc, Int.add_left_comm]"),
    ("int_mul_ac",   None, "intros; simp only [Int.mul_comm, Int.mul_assoc, Int.mul_left_comm]"),
    ("ac_rfl",               None,                                        "intros; ac_rfl"),
    ("nat_add_assoc",        None,                          "intros; simp only [Nat.add_assoc]"),
    ("nat_mul_assoc",        None,                          "intros; simp only [Nat.mul_assoc]"),
    ("int_mul_assoc",        None,                          "intros; simp only [Int.mul_assoc]"),
    ("nat_distrib",  None, "intros; simp only [Nat.left_distrib, Nat.right_distrib]"),
    ("int_distrib",  None,
     "intros; simp only [Int.mul_add, Int.add_mul, Int.mul_sub, Int.sub_mul]"),
    ("nat_poly",     None, "intros; simp only [Nat.left_distrib, Nat.right_distrib, Nat.mul_comm,"
                           " Nat.mul_assoc, Nat.mul_left_comm] <;> omega"),
    ("int_neg_mul",          None,                     "intros; simp [Int.neg_mul, Int.mul_neg]"),
    ("lengths_lia",          f"intros; simpl; {_L}; simpl; lia.",
     "intros; simp [List.length_append, List.length_reverse, List.length_map] <;> omega"),
    ("rewrite_app_length",   "intros; rewrite app_length; reflexivity.",
     "intros; rw [List.length_append]"),
    ("induction_auto",       "induction {list}; simpl; auto.",
     "intro {names}; induction {list} with | nil => simp | cons h t ih => simp_all"),
    ("apply_rev_involutive", "intros; apply rev_involutive.",
     "intros; exact List.reverse_reverse _"),
    ("rewrite_rev_involutive", "intros; rewrite rev_involutive; reflexivity.",
     "intros; simp only [List.reverse_reverse]"),
    ("rewrite_map_length",   "intros; repeat rewrite map_length; reflexivity.",
     "intros; simp only [List.length_map]"),
    ("apply_map_length",     "intros; apply map_length.",  "intros; exact List.length_map _ _"),
    ("rewrite_rev_length",   "intros; repeat rewrite rev_length; reflexivity.",
     "intros; simp only [List.length_reverse]"),
    ("rewrite_app_nil",      "intros; rewrite ?app_nil_r; reflexivity.",
     "intros; simp only [List.append_nil, List.nil_append]"),
    ("apply_app_nil",        "intros; apply app_nil_r.",   "intros; exact List.append_nil _"),
    ("rewrite_app_assoc",    "intros; repeat rewrite <- app_assoc; reflexivity.",
     "intros; simp only [List.append_assoc]"),
    ("rewrite_rev_app",
     "intros; repeat rewrite rev_app_distr; repeat rewrite <- app_assoc; reflexivity.",
     "intros; simp [List.reverse_append]"),
    ("apply_rev_app",        "intros; apply rev_app_distr.",
     "intros; exact List.reverse_append _ _"),
    ("rewrite_map_app",      "intros; repeat rewrite map_app; reflexivity.",
     "intros; simp only [List.map_append]"),
    ("apply_map_app",        "intros; apply map_app.",     "intros; exact List.map_append _ _ _"),
    ("map_ext_lia",          "intros; repeat rewrite map_map; apply map_ext; intros; lia.",
     "intros; simp [List.map_map, Function.comp_def, Nat.add_assoc, Nat.mul_assoc]"),
    ("rewrite_map_map",      "intros; rewrite map_map; reflexivity.",   None),
    ("rewrite_map_rev",      "intros; rewrite map_rev; reflexivity.",
     "intros; simp [List.map_reverse]"),
    ("apply_map_rev",        "intros; apply map_rev.",     "intros; exact List.map_reverse _ _"),
    ("destruct_reflexivity", "intros {names}; destruct {bools}; reflexivity.",
     "intro {names}; {cases} <;> rfl"),
    ("destruct_intuition",   "intros {names}; destruct {bools}; simpl; intuition congruence.",
     "intro {names}; {cases} <;> decide"),
    ("destruct_simpl",       "intros {names}; destruct {bools}; simpl; auto.",   None),
)
# fmt: on
TACTICS: dict[str, Tactic] = {name: Tactic(name, coq, lean) for name, coq, lean in _TABLE}


def _fields(theorem: Theorem) -> dict[str, str]:
    names = [name for name, _ in theorem.variables]
    bools = [name for name, sort in theorem.variables if sort is Sort.BOOL]
    lists = [name for name, sort in theorem.variables if sort is Sort.LIST]
    return {
        "names": " ".join(names),
        "bools": ", ".join(bools),
        "cases": " <;> ".join(f"cases {b}" for b in bools),
        "list": lists[0] if lists else "",
    }


def render_proof(tactic: Tactic, backend: str, theorem: Theorem) -> str | None:
    """The tactic script for one theorem, or None if the template needs what it lacks."""
    template = tactic.coq if backend == "coq" else tactic.lean
    if template is None:
        return None
    fields = _fields(theorem)
    for key in ("bools", "list", "names"):
        if "{" + key + "}" in template and not fields[key]:
            return None
    if "{cases}" in template and not fields["cases"]:
        return None
    return template.format(**fields)


def render_statement(theorem: Theorem, backend: str) -> str:
    if backend == "coq":
        return to_coq(theorem)
    if backend == "lean4":
        return to_lean(theorem)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


# -- families --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Built:
    """A family's statement and, when they differ from the family's, its correct tactics."""

    theorem: Theorem
    correct: tuple[str, ...] = ()


Builder = Callable[[np.random.Generator, int], Built]


@dataclass(frozen=True, eq=False)
class Family:
    """One kind of true statement with the tactics that should (and should not) prove it."""

    name: str
    group: str
    build: Builder
    correct: tuple[str, ...]
    wrong: tuple[str, ...]
    levels: tuple[int, ...] = LEVELS

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"{self.name}: unknown group {self.group!r}")
        unknown = [t for t in (*self.correct, *self.wrong) if t not in TACTICS]
        if unknown:
            raise ValueError(f"{self.name}: unknown tactics {unknown}")
        if not self.levels or not set(self.levels) <= set(LEVELS):
            raise ValueError(f"{self.name}: levels {self.levels} outside 1..5")

    def tactics(self, built: Built, backend: str, wrong: bool) -> list[tuple[str, str]]:
        """``(template name, script)`` pairs for the backend: correct ones or wrong ones."""
        names = self.wrong if wrong else (built.correct or self.correct)
        out = []
        for name in names:
            script = render_proof(TACTICS[name], backend, built.theorem)
            if script is not None:
                out.append((name, script))
        return out


# small helpers to build terms ---------------------------------------------------------------------
NAT, INT, BOOL, LIST = Sort.NAT, Sort.INT, Sort.BOOL, Sort.LIST
NAT_NAMES = ("n", "m", "k", "p", "q", "r")
INT_NAMES = ("x", "y", "z", "w", "u", "v")
BOOL_NAMES = ("a", "b", "c", "d", "e")
LIST_NAMES = ("l1", "l2", "l3", "l4")
#: the largest constant at each difficulty (nat values stay small: Coq's nat is unary)
CMAX = {1: 3, 2: 9, 3: 20, 4: 50, 5: 99}


def _names(rng: np.random.Generator, pool: Sequence[str], k: int) -> list[str]:
    """``k`` distinct names from the pool, in pool order (``n, k`` or ``m, p``, ...)."""
    chosen = sorted(int(i) for i in rng.choice(len(pool), size=k, replace=False))
    return [pool[i] for i in chosen]


def _const(rng: np.random.Generator, d: int, low: int = 1) -> int:
    return int(rng.integers(low, CMAX[d] + 1))


def lit(value: int, sort: Sort = NAT) -> Lit:
    return Lit(value, sort)


def fold(op: str, terms: Sequence[Term]) -> Term:
    """Left-nested ``t0 op t1 op ...``."""
    out = terms[0]
    for term in terms[1:]:
        out = BinOp(op, out, term)
    return out


def rfold(op: str, terms: Sequence[Term]) -> Term:
    """Right-nested ``t0 op (t1 op (...))``."""
    out = terms[-1]
    for term in reversed(terms[:-1]):
        out = BinOp(op, term, out)
    return out


def random_tree(rng: np.random.Generator, op: str, terms: Sequence[Term]) -> Term:
    """A random bracketing of the sequence (the order is kept)."""
    if len(terms) == 1:
        return terms[0]
    split = int(rng.integers(1, len(terms)))
    return BinOp(op, random_tree(rng, op, terms[:split]), random_tree(rng, op, terms[split:]))


def _perm(rng: np.random.Generator, n: int) -> list[int]:
    """A random permutation of ``range(n)`` other than the identity (n >= 2)."""
    while True:
        order = [int(i) for i in rng.permutation(n)]
        if order != list(range(n)):
            return order


def theorem(variables: Sequence[tuple[str, Sort]], conclusion: Prop, *hyps: Prop) -> Theorem:
    return Theorem(tuple(variables), tuple(hyps), conclusion)


def _vars(names: Sequence[str], sort: Sort) -> list[Var]:
    return [Var(name, sort) for name in names]


def _decl(variables: Sequence[Var]) -> list[tuple[str, Sort]]:
    return [(v.name, v.sort) for v in variables]


def _used(variables: Sequence[Var], *props: Prop) -> list[tuple[str, Sort]]:
    """The declared variables that occur, in declaration order."""
    probe = Theorem(tuple(_decl(variables)), tuple(props[1:]), props[0])
    used = {node.name for _, node, _ in walk(probe) if isinstance(node, Var)}
    return [(v.name, v.sort) for v in variables if v.name in used]


def _summands(
    rng: np.random.Generator, d: int, pool: Sequence[str], sort: Sort
) -> tuple[list[Var], list[Term]]:
    """d + 1 distinct summands: two to four variables, and a constant if they are fewer."""
    n_vars = min(4, max(2, d + 1 - int(rng.random() < 0.4)))
    variables = _vars(_names(rng, pool, n_vars), sort)
    terms: list[Term] = list(variables)
    if len(terms) < d + 1:
        value = _const(rng, d)
        terms.append(Lit(-value if sort is INT and rng.random() < 0.5 else value, sort))
    order = [int(i) for i in rng.permutation(len(terms))]
    return variables, [terms[i] for i in order]


# nat_arith ----------------------------------------------------------------------------------------
def _small(term: Term, bound: int) -> Term:
    """A literal clipped to ``|value| <= bound`` (other terms unchanged)."""
    if isinstance(term, Lit) and abs(term.value) > bound:
        return Lit(bound if term.value > 0 else -bound, term.sort)
    return term


def _comm(op: str, pool: Sequence[str], sort: Sort) -> Builder:
    def build(rng: np.random.Generator, d: int) -> Built:
        variables, terms = _summands(rng, d, pool, sort)
        if op == "*":  # keep products small enough for unary nat
            terms = [_small(t, 5) for t in terms]
        permuted = [terms[i] for i in _perm(rng, len(terms))]
        left, right = fold(op, terms), random_tree(rng, op, permuted)
        return Built(theorem(_decl(variables), Cmp("=", left, right)))

    return build


def _assoc(op: str, pool: Sequence[str], sort: Sort) -> Builder:
    def build(rng: np.random.Generator, d: int) -> Built:
        variables, terms = _summands(rng, min(d + 1, 5), pool, sort)
        if op == "*":
            terms = [_small(t, 4) for t in terms]
        left = random_tree(rng, op, terms)
        right = random_tree(rng, op, terms)
        for _ in range(10):
            if right != left:
                break
            right = random_tree(rng, op, terms)
        if right == left:
            left, right = fold(op, terms), rfold(op, terms)
        return Built(theorem(_decl(variables), Cmp("=", left, right)))

    return build


def _distrib(pool: Sequence[str], sort: Sort) -> Builder:
    def build(rng: np.random.Generator, d: int) -> Built:
        variables, terms = _summands(rng, d, pool, sort)
        ops = ["+"] * (len(terms) - 1)
        if sort is INT:
            ops = ["+" if rng.random() < 0.6 else "-" for _ in ops]
        factor_name = next(n for n in pool if n not in {v.name for v in variables})
        if rng.random() < 0.5:
            factor: Term = Lit(_const(rng, min(d, 3), low=2), sort)
        else:
            factor = Var(factor_name, sort)
            variables = [*variables, factor]
        left_factor = rng.random() < 0.6

        def times(t: Term) -> Term:
            return BinOp("*", factor, t) if left_factor else BinOp("*", t, factor)

        summed, distributed = terms[0], times(terms[0])
        for term, op in zip(terms[1:], ops, strict=True):
            summed = BinOp(op, summed, term)
            distributed = BinOp(op, distributed, times(term))
        variables.sort(key=lambda v: pool.index(v.name))
        return Built(theorem(_decl(variables), Cmp("=", times(summed), distributed)))

    return build


def _nat_identity(rng: np.random.Generator, d: int) -> Built:
    if d == 1:
        variables = _vars(_names(rng, NAT_NAMES, 1), NAT)
        e: Term = variables[0]
    else:
        variables, terms = _summands(rng, d - 1, NAT_NAMES, NAT)
        e = random_tree(rng, "+" if rng.random() < 0.6 else "*", [_small(t, 9) for t in terms])
    zero, one = lit(0), lit(1)
    forms: list[tuple[Term, Term]] = [
        (BinOp("+", e, zero), e),
        (BinOp("+", zero, e), e),
        (BinOp("*", e, one), e),
        (BinOp("*", one, e), e),
        (BinOp("*", e, zero), zero),
        (BinOp("*", zero, e), zero),
        (BinOp("-", e, zero), e),
        (BinOp("-", e, e), zero),
        (BinOp("-", zero, e), zero),
    ]
    left, right = forms[int(rng.integers(len(forms)))]
    # ``ring`` knows no truncated subtraction
    correct = ("lia", "simp") if isinstance(left, BinOp) and left.op == "-" else ()
    return Built(theorem(_decl(variables), Cmp("=", left, right)), correct)


def _nat_sub(rng: np.random.Generator, d: int) -> Built:
    variables, terms = _summands(rng, d, NAT_NAMES, NAT)
    split = int(rng.integers(1, len(terms)))
    e, t = fold("+", terms[:split]), fold("+", terms[split:])
    form = int(rng.integers(5))
    if form == 0:
        concl, hyps = Cmp("=", BinOp("-", BinOp("+", e, t), t), e), ()
    elif form == 1:
        concl, hyps = Cmp("=", BinOp("-", BinOp("+", t, e), t), e), ()
    elif form == 2:
        concl, hyps = Cmp("=", BinOp("-", e, BinOp("+", e, t)), lit(0)), ()
    elif form == 3:
        concl, hyps = Cmp("<=", BinOp("-", e, t), e), ()
    else:
        concl, hyps = Cmp("=", BinOp("+", BinOp("-", e, t), t), e), (Cmp("<=", t, e),)
    return Built(theorem(_decl(variables), concl, *hyps))


def _chain(
    rng: np.random.Generator, d: int, pool: Sequence[str], sort: Sort, strict_first: bool
) -> tuple[list[Var], list[Prop]]:
    """Variables v0..vk and hypotheses v0 (<|<=) v1, v1 <= v2, ... (k = 1 + d // 2)."""
    variables = _vars(_names(rng, pool, min(len(pool), 2 + d // 2)), sort)
    hyps: list[Prop] = [
        Cmp("<" if strict_first and i == 0 else "<=", variables[i], variables[i + 1])
        for i in range(len(variables) - 1)
    ]
    return variables, hyps


def _le_mono(sort: Sort, pool: Sequence[str]) -> Builder:
    def build(rng: np.random.Generator, d: int) -> Built:
        variables, hyps = _chain(rng, d, pool, sort, strict_first=False)
        first, last = variables[0], variables[-1]
        c = Lit(_const(rng, d), sort)
        form = int(rng.integers(4 if sort is INT else 3))
        if form == 0:
            concl = Cmp("<=", BinOp("+", first, c), BinOp("+", last, c))
        elif form == 1:
            concl = Cmp("<=", BinOp("*", c, first), BinOp("*", c, last))
        elif form == 2:
            concl = Cmp("<=", BinOp("-", first, c), BinOp("-", last, c))
        else:
            concl = Cmp("<=", UnOp("neg", last), UnOp("neg", first))
        return Built(theorem(_decl(variables), concl, *hyps))

    return build


def _lt_succ(sort: Sort, pool: Sequence[str]) -> Builder:
    def build(rng: np.random.Generator, d: int) -> Built:
        variables, hyps = _chain(rng, d, pool, sort, strict_first=True)
        first, last = variables[0], variables[-1]
        if d >= 3 and rng.random() < 0.5:
            c = Lit(_const(rng, d), sort)
            hyps[0] = Cmp("<", BinOp("+", first, c), variables[1])
            concl = Cmp("<=", BinOp("+", first, Lit(c.value + 1, sort)), last)
        elif rng.random() < 0.5 or sort is NAT:
            concl = Cmp("<=", BinOp("+", first, Lit(1, sort)), last)
        else:
            concl = Cmp("<=", first, BinOp("-", last, Lit(1, sort)))
        return Built(theorem(_decl(variables), concl, *hyps))

    return build


def _min_max(sort: Sort, pool: Sequence[str]) -> Builder:
    def build(rng: np.random.Generator, d: int) -> Built:
        variables = _vars(_names(rng, pool, 3), sort)
        a, b, c = variables

        def arg(v: Var) -> Term:  # at higher difficulty the arguments are shifted sums
            if d >= 3 and rng.random() < 0.5:
                return BinOp("+", v, Lit(_const(rng, d - 2), sort))
            return v

        x, y = arg(a), arg(b)
        lo, hi = BinOp("min", x, y), BinOp("max", x, y)
        forms: list[Prop] = [
            Cmp("<=", lo, x),
            Cmp("<=", lo, y),
            Cmp("<=", x, hi),
            Cmp("<=", lo, hi),
            Cmp("=", BinOp("+", lo, hi), BinOp("+", x, y)),
            Cmp("=", lo, BinOp("min", y, x)),
            Cmp("=", BinOp("max", BinOp("max", x, y), c), BinOp("max", x, BinOp("max", y, c))),
            Cmp("=", BinOp("min", x, BinOp("max", x, y)), x),
        ]
        concl = forms[int(rng.integers(len(forms) if d >= 2 else 5))]
        return Built(theorem(_used(variables, concl), concl))

    return build


def _concrete_expr(rng: np.random.Generator, d: int, sort: Sort) -> Term:
    """A random closed arithmetic expression with about d + 1 operations."""

    def leaf() -> Term:
        value = int(rng.integers(0, CMAX[d] + 1)) if d > 1 else int(rng.integers(2, 15))
        if sort is INT and rng.random() < 0.4:
            value = -value
        return Lit(value, sort)

    expr = BinOp("*", leaf(), leaf()) if rng.random() < 0.6 else BinOp("+", leaf(), leaf())
    for _ in range(d - 1 + int(rng.random() < 0.5)):
        op = ["+", "-", "*"][int(rng.integers(3))]
        other = leaf() if op != "*" else Lit(int(rng.integers(0, 6)), sort)
        pair = (expr, other) if rng.random() < 0.6 else (other, expr)
        if op == "-" and sort is NAT and value(pair[0]) < value(pair[1]):
            pair = pair[::-1]  # no truncated differences in concrete facts: they read as typos
        expr = BinOp(op, *pair)
    return expr


def _concrete(sort: Sort, equality: bool) -> Builder:
    """``expr = v`` or a tight ``expr < v + 1`` / ``expr <= v`` for the value v of expr.

    Nat values stay below 2000: Coq's nat is unary, and ``reflexivity`` computes in it.
    """

    def build(rng: np.random.Generator, d: int) -> Built:
        for _ in range(50):
            expr = _concrete_expr(rng, d, sort)
            v = int(value(expr))
            if sort is INT or v <= 2000:
                break
        else:
            expr, v = BinOp("*", lit(12), lit(13)), 156
        if equality:
            concl = Cmp("=", expr, Lit(v, sort))
        elif rng.random() < 0.5:
            concl = Cmp("<", expr, Lit(v + 1, sort))
        else:
            concl = Cmp("<=", expr, Lit(v, sort))
        return Built(theorem([], concl))

    return build


def _collect(sort: Sort, pool: Sequence[str]) -> Builder:
    """A linear combination written out term by term equals the collected one."""

    def build(rng: np.random.Generator, d: int) -> Built:
        variables = _vars(_names(rng, pool, min(len(pool), 1 + (d + 1) // 2)), sort)
        cmax = max(3, CMAX[d] // 4)
        pieces: list[tuple[int, Var | None]] = []
        for v in variables:
            for _ in range(2):
                low = -cmax if sort is INT else 1
                c = int(rng.integers(low, cmax + 1)) or 1
                pieces.append((c, v))
        if rng.random() < 0.7:
            const = int(rng.integers(1, CMAX[d] + 1))
            pieces.append((-const if sort is INT and rng.random() < 0.5 else const, None))
        order = [int(i) for i in rng.permutation(len(pieces))]
        pieces = [pieces[i] for i in order]

        def term(c: int, v: Var | None) -> Term:
            if v is None:
                return Lit(c, sort)
            if c in (1, -1):
                return v if c == 1 else UnOp("neg", v)
            return BinOp("*", Lit(c, sort), v)

        left = fold("+", [term(c, v) for c, v in pieces])
        totals: dict[str, int] = {}
        const = 0
        for c, v in pieces:
            if v is None:
                const += c
            else:
                totals[v.name] = totals.get(v.name, 0) + c
        right_terms = [term(totals[v.name], v) for v in variables if totals[v.name] != 0]
        if const or not right_terms:
            right_terms.append(Lit(const, sort))
        return Built(theorem(_decl(variables), Cmp("=", left, fold("+", right_terms))))

    return build


def _nat_double(rng: np.random.Generator, d: int) -> Built:
    (n,) = _vars(_names(rng, NAT_NAMES, 1), NAT)
    if d == 1:
        k = int(rng.integers(2, 4))
        return Built(theorem(_decl([n]), Cmp("=", fold("+", [n] * k), BinOp("*", lit(k), n))))
    a, b = _const(rng, d), _const(rng, d)
    left = BinOp("+", BinOp("*", lit(a), n), BinOp("*", lit(b), n) if b > 1 else n)
    right = BinOp("*", lit(a + (b if b > 1 else 1)), n)
    return Built(theorem(_decl([n]), Cmp("=", left, right)))


def _nat_le_combo(rng: np.random.Generator, d: int) -> Built:
    """``n <= m -> b*n + a*m <= a*n + b*m`` for a <= b (it is ``(b-a)(m-n) >= 0``)."""
    pairs = 1 if d < 3 else 2
    names = _names(rng, NAT_NAMES, 2 * pairs)
    variables = _vars(names, NAT)
    hyps, small, large = [], [], []
    for i in range(pairs):
        n, m = variables[2 * i], variables[2 * i + 1]
        a = _const(rng, min(d, 3))
        b = a + _const(rng, min(d, 3))
        hyps.append(Cmp("<=", n, m))
        small += [BinOp("*", lit(b), n), BinOp("*", lit(a), m)]
        large += [BinOp("*", lit(a), n), BinOp("*", lit(b), m)]
    return Built(theorem(_decl(variables), Cmp("<=", fold("+", small), fold("+", large)), *hyps))


def _nat_square(rng: np.random.Generator, d: int) -> Built:
    """``(n + c)^2``, then ``(n + m)^2``, then ``(n + m) * (n + k)``, expanded."""
    n, m, k = _vars(_names(rng, NAT_NAMES, 3), NAT)
    if d <= 2 and rng.random() < 0.5:
        c = _const(rng, d)
        left: Term = BinOp("*", BinOp("+", n, lit(c)), BinOp("+", n, lit(c)))
        right = fold("+", [BinOp("*", n, n), BinOp("*", lit(2 * c), n), lit(c * c)])
        return Built(theorem(_decl([n]), Cmp("=", left, right)))
    if d <= 3:
        left = BinOp("*", BinOp("+", n, m), BinOp("+", n, m))
        right = fold("+", [BinOp("*", n, n), fold("*", [lit(2), n, m]), BinOp("*", m, m)])
        return Built(theorem(_decl([n, m]), Cmp("=", left, right)))
    left = BinOp("*", BinOp("+", n, m), BinOp("+", n, k))
    right = fold("+", [BinOp("*", n, n), BinOp("*", n, k), BinOp("*", m, n), BinOp("*", m, k)])
    return Built(theorem(_decl([n, m, k]), Cmp("=", left, right)))


# int_arith ----------------------------------------------------------------------------------------
def _int_sub_identities(rng: np.random.Generator, d: int) -> Built:
    x, y, z = _vars(_names(rng, INT_NAMES, 3), INT)
    if d >= 3:
        c = Lit(_const(rng, d), INT)
        x_: Term = BinOp("+", x, c) if rng.random() < 0.5 else BinOp("*", c, x)
    else:
        x_ = x

    def neg(t: Term) -> Term:
        return UnOp("neg", t)

    forms: list[tuple[Term, Term]] = [
        (BinOp("+", BinOp("-", x_, y), y), x_),
        (BinOp("-", x_, BinOp("-", y, z)), BinOp("+", BinOp("-", x_, y), z)),
        (neg(BinOp("+", x_, y)), BinOp("-", neg(x_), y)),
        (neg(neg(x_)), x_),
        (BinOp("-", x_, x_), Lit(0, INT)),
        (neg(BinOp("-", x_, y)), BinOp("-", y, x_)),
        (BinOp("-", BinOp("+", x_, y), BinOp("+", y, z)), BinOp("-", x_, z)),
    ]
    left, right = forms[int(rng.integers(len(forms)))]
    concl = Cmp("=", left, right)
    return Built(theorem(_used([x, y, z], concl), concl))


def _int_mul_neg(rng: np.random.Generator, d: int) -> Built:
    variables = _vars(_names(rng, INT_NAMES, min(5, 2 + (d - 1) // 2)), INT)
    negated = [
        int(i)
        for i in rng.choice(
            len(variables), size=int(rng.integers(1, len(variables) + 1)), replace=False
        )
    ]
    factors: list[Term] = [UnOp("neg", v) if i in negated else v for i, v in enumerate(variables)]
    if d >= 3:
        factors.append(Lit(_const(rng, min(d, 3), low=2), INT))
    product: Term = fold("*", list(variables) + [f for f in factors if isinstance(f, Lit)])
    right = product if len(negated) % 2 == 0 else UnOp("neg", product)
    return Built(theorem(_decl(variables), Cmp("=", fold("*", factors), right)))


# lists --------------------------------------------------------------------------------------------
def _fn(rng: np.random.Generator, d: int) -> Fn:
    return Fn(
        "add" if rng.random() < 0.6 else "mul", int(rng.integers(1, max(3, CMAX[min(d, 3)]) + 1))
    )


def _list_expr(rng: np.random.Generator, d: int, names: list[str], extra_nat: list[Var]) -> Term:
    """A list term over the given list variables: at low difficulty a variable, else wrapped."""
    base: Term = Var(names[0], LIST)
    if len(names) > 1:
        base = rfold("++", [Var(n, LIST) for n in names])
    if d >= 3:
        choice = int(rng.integers(3))
        if choice == 0:
            base = Map(_fn(rng, d), base)
        elif choice == 1:
            base = UnOp("rev", base)
        else:
            head = Var(f"n{len(extra_nat)}" if extra_nat else "n", NAT)
            extra_nat.append(head)
            base = Cons(head, base)
    return base


def _list_vars(names: Sequence[str], extra_nat: Sequence[Var]) -> list[tuple[str, Sort]]:
    return [(v.name, NAT) for v in extra_nat] + [(n, LIST) for n in names]


def _n_lists(rng: np.random.Generator, d: int, low: int = 1) -> list[str]:
    count = min(len(LIST_NAMES), max(low, int(rng.integers(1, 2 + d // 2))))
    if count == 1 and rng.random() < 0.5:
        return ["l"]
    return _names(rng, LIST_NAMES, count)


def _app_length(rng: np.random.Generator, d: int) -> Built:
    names = _n_lists(rng, d + 1, low=2)
    lists: list[Term] = []
    for name in names:
        term: Term = Var(name, LIST)
        if d >= 3 and rng.random() < 0.4:
            term = UnOp("rev", term) if rng.random() < 0.5 else Map(_fn(rng, d), term)
        lists.append(term)
    app = random_tree(rng, "++", lists)
    right = fold("+", [UnOp("length", Var(n, LIST)) for n in names])
    correct = ("lengths_lia", "simp_omega")
    if d == 1 and len(names) == 2 and isinstance(app, BinOp):
        correct = ("lengths_lia", "rewrite_app_length", "induction_auto", "simp_omega")
    return Built(theorem(_list_vars(names, []), Cmp("=", UnOp("length", app), right)), correct)


def _rev_involutive(rng: np.random.Generator, d: int) -> Built:
    extra: list[Var] = []
    names = _n_lists(rng, d)
    inner = _list_expr(rng, d, names, extra)
    return Built(
        theorem(_list_vars(names, extra), Cmp("=", UnOp("rev", UnOp("rev", inner)), inner))
    )


def _map_length(rng: np.random.Generator, d: int) -> Built:
    extra: list[Var] = []
    names = _n_lists(rng, d)
    inner = _list_expr(rng, d, names, extra)
    mapped: Term = Map(_fn(rng, d), inner)
    if d >= 4:
        mapped = Map(_fn(rng, d), mapped)
    correct = ("rewrite_map_length", "lengths_lia", "simp")
    if d < 4:
        correct = ("rewrite_map_length", "apply_map_length", "lengths_lia", "simp")
    concl = Cmp("=", UnOp("length", mapped), UnOp("length", inner))
    return Built(theorem(_list_vars(names, extra), concl), correct)


def _rev_length(rng: np.random.Generator, d: int) -> Built:
    extra: list[Var] = []
    names = _n_lists(rng, d)
    inner = _list_expr(rng, d, names, extra)
    concl = Cmp("=", UnOp("length", UnOp("rev", inner)), UnOp("length", inner))
    return Built(theorem(_list_vars(names, extra), concl))


def _app_nil(rng: np.random.Generator, d: int) -> Built:
    extra: list[Var] = []
    names = _n_lists(rng, d)
    inner = _list_expr(rng, d, names, extra)
    if rng.random() < 0.7:
        left: Term = BinOp("++", inner, Nil())
        correct = ("rewrite_app_nil", "apply_app_nil", "simp")
    else:
        left = BinOp("++", Nil(), inner)
        correct = ("rewrite_app_nil", "simpl_reflexivity", "simp")
    return Built(theorem(_list_vars(names, extra), Cmp("=", left, inner)), correct)


def _app_assoc(rng: np.random.Generator, d: int) -> Built:
    names = _names(rng, LIST_NAMES, min(4, 3 + (d >= 3)))
    lists: list[Term] = [Var(n, LIST) for n in names]
    if d >= 4:
        i = int(rng.integers(len(lists)))
        lists[i] = Map(_fn(rng, d), lists[i]) if rng.random() < 0.5 else UnOp("rev", lists[i])
    left = random_tree(rng, "++", lists)
    right = random_tree(rng, "++", lists)
    for _ in range(10):
        if right != left:
            break
        right = random_tree(rng, "++", lists)
    if right == left:
        left, right = fold("++", lists), rfold("++", lists)
    return Built(theorem(_list_vars(names, []), Cmp("=", left, right)))


def _rev_app(rng: np.random.Generator, d: int) -> Built:
    names = _names(rng, LIST_NAMES, 2 if d <= 2 else 3)
    lists = [Var(n, LIST) for n in names]
    left = UnOp("rev", rfold("++", lists))
    right = rfold("++", [UnOp("rev", v) for v in reversed(lists)])
    correct = (
        ("rewrite_rev_app", "simp")
        if len(names) > 2
        else ("rewrite_rev_app", "apply_rev_app", "simp")
    )
    return Built(theorem(_list_vars(names, []), Cmp("=", left, right)), correct)


def _map_app(rng: np.random.Generator, d: int) -> Built:
    names = _names(rng, LIST_NAMES, 2 if d <= 2 else 3)
    fn = _fn(rng, d)
    lists = [Var(n, LIST) for n in names]
    left = Map(fn, rfold("++", lists))
    right = rfold("++", [Map(fn, v) for v in lists])
    correct = (
        ("rewrite_map_app", "simp")
        if len(names) > 2
        else ("rewrite_map_app", "apply_map_app", "simp")
    )
    return Built(theorem(_list_vars(names, []), Cmp("=", left, right)), correct)


def _map_compose(rng: np.random.Generator, d: int) -> Built:
    names = _n_lists(rng, 1)
    op = "add" if rng.random() < 0.6 else "mul"
    count = 2 if d <= 3 else 3
    ks = [int(rng.integers(1, max(3, CMAX[min(d, 3)]) + 1)) for _ in range(count)]
    if op == "mul":
        ks = [min(k, 5) for k in ks]
    inner: Term = Var(names[0], LIST)
    for k in ks:
        inner = Map(Fn(op, k), inner)
    total = sum(ks) if op == "add" else math.prod(ks)
    concl = Cmp("=", inner, Map(Fn(op, total), Var(names[0], LIST)))
    return Built(theorem(_list_vars(names, []), concl))


def _map_rev(rng: np.random.Generator, d: int) -> Built:
    names = _n_lists(rng, d)
    fn = _fn(rng, d)
    inner: Term = (
        Var(names[0], LIST) if len(names) == 1 else rfold("++", [Var(n, LIST) for n in names])
    )
    concl = Cmp("=", Map(fn, UnOp("rev", inner)), UnOp("rev", Map(fn, inner)))
    return Built(theorem(_list_vars(names, []), concl))


def _cons_length(rng: np.random.Generator, d: int) -> Built:
    names = _n_lists(rng, d)
    heads = _vars(_names(rng, NAT_NAMES, min(3, 1 + d // 2)), NAT)
    inner: Term = (
        Var(names[0], LIST) if len(names) == 1 else rfold("++", [Var(n, LIST) for n in names])
    )
    consed = inner
    for head in reversed(heads):
        consed = Cons(head, consed)
    right = BinOp("+", fold("+", [UnOp("length", Var(n, LIST)) for n in names]), lit(len(heads)))
    return Built(
        theorem(_decl(heads) + _list_vars(names, []), Cmp("=", UnOp("length", consed), right))
    )


def _app_length_le(rng: np.random.Generator, d: int) -> Built:
    names = _names(rng, LIST_NAMES, 2 if d <= 2 else 3)
    lists = [Var(n, LIST) for n in names]
    which = int(rng.integers(len(lists)))
    concl = Cmp("<=", UnOp("length", lists[which]), UnOp("length", rfold("++", lists)))
    return Built(theorem(_list_vars(names, []), concl))


# logic --------------------------------------------------------------------------------------------
def _bools(rng: np.random.Generator, k: int) -> list[Var]:
    return _vars(_names(rng, BOOL_NAMES, min(k, len(BOOL_NAMES))), BOOL)


def _bool_comm(rng: np.random.Generator, d: int) -> Built:
    variables = _bools(rng, d + 1)
    op = "&&" if rng.random() < 0.5 else "||"
    permuted = [variables[i] for i in _perm(rng, len(variables))]
    concl = Cmp("=", fold(op, variables), random_tree(rng, op, permuted))
    return Built(theorem(_decl(variables), concl))


def _bool_demorgan(rng: np.random.Generator, d: int) -> Built:
    variables = _bools(rng, d + 1)
    op, dual = ("&&", "||") if rng.random() < 0.5 else ("||", "&&")
    left = UnOp("negb", fold(op, variables))
    right = fold(dual, [UnOp("negb", v) for v in variables])
    return Built(theorem(_decl(variables), Cmp("=", left, right)))


def _bool_distrib(rng: np.random.Generator, d: int) -> Built:
    variables = _bools(rng, min(5, d + 2))
    op, dual = ("&&", "||") if rng.random() < 0.5 else ("||", "&&")
    head, rest = variables[0], variables[1:]
    left = BinOp(op, head, fold(dual, rest))
    right = fold(dual, [BinOp(op, head, v) for v in rest])
    return Built(theorem(_decl(variables), Cmp("=", left, right)))


def _bool_expr(rng: np.random.Generator, variables: Sequence[Var], depth: int) -> Term:
    if depth == 0 or rng.random() < 0.3:
        return variables[int(rng.integers(len(variables)))]
    if rng.random() < 0.2:
        return UnOp("negb", _bool_expr(rng, variables, depth - 1))
    op = "&&" if rng.random() < 0.5 else "||"
    return BinOp(op, _bool_expr(rng, variables, depth - 1), _bool_expr(rng, variables, depth - 1))


def _bool_absorb(rng: np.random.Generator, d: int) -> Built:
    variables = _bools(rng, min(5, d + 1))
    a, others = variables[0], variables[1:]
    e = _bool_expr(rng, others, d - 1) if d > 1 else others[0]
    op, dual = ("||", "&&") if rng.random() < 0.5 else ("&&", "||")
    concl = Cmp("=", BinOp(op, a, BinOp(dual, a, e)), a)
    return Built(theorem(_used(variables, concl), concl))


def _bool_negb(rng: np.random.Generator, d: int) -> Built:
    variables = _bools(rng, d)
    e = _bool_expr(rng, variables, d - 1) if d > 1 else variables[0]
    forms: list[Prop] = [
        Cmp("=", UnOp("negb", UnOp("negb", e)), e),
        Cmp("=", BinOp("||", e, UnOp("negb", e)), Lit(True, BOOL)),
        Cmp("=", BinOp("&&", e, UnOp("negb", e)), Lit(False, BOOL)),
        Cmp("=", BinOp("&&", UnOp("negb", e), e), Lit(False, BOOL)),
    ]
    concl = forms[int(rng.integers(len(forms)))]
    return Built(theorem(_used(variables, concl), concl))


def _is_true(t: Term) -> Prop:
    return Cmp("=", t, Lit(True, BOOL))


def _bool_reflect(rng: np.random.Generator, d: int) -> Built:
    variables = _bools(rng, min(5, d + 1))
    op = "&&" if rng.random() < 0.5 else "||"
    connective = "and" if op == "&&" else "or"
    if rng.random() < 0.2:
        concl: Prop = PBin(
            "iff", _is_true(UnOp("negb", variables[0])), PNot(_is_true(variables[0]))
        )
        return Built(theorem(_decl(variables[:1]), concl))
    left = _is_true(fold(op, variables))
    right = _is_true(variables[0])
    for v in variables[1:]:
        right = PBin(connective, right, _is_true(v))
    concl = PBin("iff", left, right) if rng.random() < 0.6 else PBin("implies", right, left)
    return Built(theorem(_decl(variables), concl))


def _bool_chain(rng: np.random.Generator, d: int) -> Built:
    variables = _bools(rng, min(5, d + 2))
    hyps: list[Prop] = [
        PBin("implies", _is_true(variables[i]), _is_true(variables[i + 1]))
        for i in range(len(variables) - 1)
    ]
    order = [int(i) for i in rng.permutation(len(hyps))]
    hyps = [hyps[i] for i in order]
    hyps.append(_is_true(variables[0]))
    return Built(theorem(_decl(variables), _is_true(variables[-1]), *hyps))


def _prop_connectives(rng: np.random.Generator, d: int) -> Built:
    variables = _bools(rng, min(5, d + 1))
    atoms = [_is_true(v) for v in variables]
    p, q = atoms[0], atoms[1]
    if d >= 3:
        q = PBin("and" if rng.random() < 0.5 else "or", q, atoms[2])
    forms: list[tuple[Prop, tuple[Prop, ...]]] = [
        (q, (PBin("and", p, q),)),
        (PBin("or", q, p), (p,)),
        (PBin("iff", PNot(PBin("or", p, q)), PBin("and", PNot(p), PNot(q))), ()),
        (PBin("implies", PBin("and", p, q), PBin("or", p, q)), ()),
        (PNot(p), (PNot(PBin("or", p, q)),)),
        (PBin("implies", PBin("implies", p, q), PBin("implies", PNot(q), PNot(p))), ()),
    ]
    concl, hyps = forms[int(rng.integers(len(forms)))]
    return Built(theorem(_used(variables, concl, *hyps), concl, *hyps))


def _trichotomy(sort: Sort, pool: Sequence[str]) -> Builder:
    def build(rng: np.random.Generator, d: int) -> Built:
        x, y = _vars(_names(rng, pool, 2), sort)
        a: Term = x
        b: Term = y
        if d >= 2 and rng.random() < 0.6:
            a = BinOp("+", x, Lit(_const(rng, d), sort))
        if d >= 4 and rng.random() < 0.6:
            b = BinOp("*", Lit(_const(rng, 3, low=2), sort), y)
        one = Lit(1, sort)
        forms: list[tuple[Prop, tuple[Prop, ...]]] = [
            (PBin("or", Cmp("<", a, b), PBin("or", Cmp("=", a, b), Cmp("<", b, a))), ()),
            (PNot(PBin("and", Cmp("<", a, b), Cmp("<", b, a))), ()),
            (PBin("or", Cmp("<=", a, b), Cmp("<=", b, a)), ()),
            (PBin("iff", Cmp("<=", a, b), Cmp("<", a, BinOp("+", b, one))), ()),
            (PNot(Cmp("<=", b, a)), (Cmp("<", a, b),)),
            (Cmp("=", a, b), (Cmp("<=", a, b), Cmp("<=", b, a))),
            (Cmp("<>", a, b), (Cmp("<", a, b),)),
        ]
        concl, hyps = forms[int(rng.integers(len(forms)))]
        return Built(theorem(_decl([x, y]), concl, *hyps))

    return build


# the families -------------------------------------------------------------------------------------
_EQ_WRONG = ("intros_reflexivity", "simpl_reflexivity")
_BOOL_OK = ("destruct_reflexivity", "destruct_intuition", "decide")
_BOOL_PROP_OK = ("destruct_intuition", "decide")
_BOOL_WRONG = ("intros_reflexivity", "auto")
_LIST_WRONG = ("simpl_reflexivity", "intros_reflexivity", "rewrite_app_length")


# fmt: off
_NAT, _INT, _LISTS, _LOGIC = GROUPS
FAMILIES: tuple[Family, ...] = (
    Family("nat_add_comm", _NAT, _comm("+", NAT_NAMES, NAT),
           ("lia", "ring", "nat_add_ac"), _EQ_WRONG),
    Family("nat_add_assoc", _NAT, _assoc("+", NAT_NAMES, NAT),
           ("lia", "ring", "nat_add_assoc"), _EQ_WRONG),
    Family("nat_mul_comm", _NAT, _comm("*", NAT_NAMES, NAT),
           ("ring", "nia", "nat_mul_ac", "ac_rfl"), (*_EQ_WRONG, "omega_nonlinear")),
    Family("nat_mul_assoc", _NAT, _assoc("*", NAT_NAMES, NAT),
           ("ring", "nia", "nat_mul_assoc"), ("intros_reflexivity", "omega_nonlinear")),
    Family("nat_distrib", _NAT, _distrib(NAT_NAMES, NAT),
           ("ring", "nia", "nat_distrib"), _EQ_WRONG),
    Family("nat_identity", _NAT, _nat_identity, ("lia", "ring", "simp"),
           ("simpl_reflexivity", "auto", "decide")),
    Family("nat_sub_cancel", _NAT, _nat_sub, ("lia", "simp_omega"),
           ("simpl_reflexivity", "auto", "ring", "intros_reflexivity")),
    Family("nat_le_mono", _NAT, _le_mono(NAT, NAT_NAMES), ("lia",),
           ("intros_reflexivity", "auto", "simp")),
    Family("nat_lt_succ", _NAT, _lt_succ(NAT, NAT_NAMES), ("lia",),
           ("intros_reflexivity", "auto", "decide")),
    Family("nat_min_max", _NAT, _min_max(NAT, NAT_NAMES), ("lia",),
           ("intros_reflexivity", "simp_all")),
    Family("nat_concrete_eq", _NAT, _concrete(NAT, True), ("reflexivity", "lia_bare", "decide"),
           ("discriminate",)),
    Family("nat_concrete_ineq", _NAT, _concrete(NAT, False), ("lia_bare", "decide"),
           ("reflexivity", "discriminate")),
    Family("nat_double", _NAT, _nat_double, ("lia", "ring"), _EQ_WRONG),
    Family("nat_collect", _NAT, _collect(NAT, NAT_NAMES), ("lia", "ring"), _EQ_WRONG),
    Family("nat_le_combo", _NAT, _nat_le_combo, ("lia", "nia"), ("auto_arith", "simp")),
    Family("nat_square", _NAT, _nat_square, ("ring", "nia", "nat_poly"),
           ("simpl_reflexivity", "omega_nonlinear")),
    Family("int_add_comm", _INT, _comm("+", INT_NAMES, INT),
           ("lia", "ring", "int_add_ac"), _EQ_WRONG),
    Family("int_mul_comm", _INT, _comm("*", INT_NAMES, INT),
           ("ring", "nia", "int_mul_ac", "ac_rfl"), ("intros_reflexivity", "omega_nonlinear")),
    Family("int_mul_assoc", _INT, _assoc("*", INT_NAMES, INT),
           ("ring", "int_mul_assoc"), ("intros_reflexivity", "omega_nonlinear")),
    Family("int_distrib", _INT, _distrib(INT_NAMES, INT), ("ring", "int_distrib"), _EQ_WRONG),
    Family("int_sub_identities", _INT, _int_sub_identities, ("lia", "ring"), _EQ_WRONG),
    Family("int_mul_neg", _INT, _int_mul_neg, ("ring", "int_neg_mul"),
           ("intros_reflexivity", "lia")),
    Family("int_lt_succ", _INT, _lt_succ(INT, INT_NAMES), ("lia",),
           ("intros_reflexivity", "auto_zarith", "simp")),
    Family("int_le_mono", _INT, _le_mono(INT, INT_NAMES), ("lia",),
           ("intros_reflexivity", "simp")),
    Family("int_min_max", _INT, _min_max(INT, INT_NAMES), ("lia",),
           ("intros_reflexivity", "simp_all")),
    Family("int_concrete_eq", _INT, _concrete(INT, True), ("reflexivity", "lia_bare", "decide"),
           ("discriminate",)),
    Family("int_concrete_ineq", _INT, _concrete(INT, False), ("lia_bare", "decide"),
           ("reflexivity", "discriminate")),
    Family("int_collect", _INT, _collect(INT, INT_NAMES), ("lia", "ring"), _EQ_WRONG),
    Family("list_app_length", _LISTS, _app_length, ("lengths_lia", "simp_omega"),
           ("simpl_reflexivity", "intros_reflexivity", "rewrite_map_length")),
    Family("list_rev_involutive", _LISTS, _rev_involutive,
           ("apply_rev_involutive", "rewrite_rev_involutive", "simp"), _LIST_WRONG),
    Family("list_map_length", _LISTS, _map_length,
           ("rewrite_map_length", "lengths_lia", "simp"), _LIST_WRONG),
    Family("list_rev_length", _LISTS, _rev_length,
           ("rewrite_rev_length", "lengths_lia", "simp"), _LIST_WRONG),
    Family("list_app_nil", _LISTS, _app_nil, ("rewrite_app_nil", "simp"),
           ("intros_reflexivity", "rewrite_app_length")),
    Family("list_app_assoc", _LISTS, _app_assoc, ("rewrite_app_assoc", "simp"), _LIST_WRONG),
    Family("list_rev_app", _LISTS, _rev_app, ("rewrite_rev_app", "simp"), _LIST_WRONG),
    Family("list_map_app", _LISTS, _map_app, ("rewrite_map_app", "simp"), _LIST_WRONG),
    Family("list_map_compose", _LISTS, _map_compose, ("map_ext_lia",),
           ("rewrite_map_map", "intros_reflexivity")),
    Family("list_map_rev", _LISTS, _map_rev, ("rewrite_map_rev", "simp"), _LIST_WRONG),
    Family("list_cons_length", _LISTS, _cons_length, ("lengths_lia", "simp_omega"),
           ("intros_reflexivity", "rewrite_app_length")),
    Family("list_app_length_le", _LISTS, _app_length_le, ("lengths_lia", "simp_omega"),
           _LIST_WRONG),
    Family("bool_comm", _LOGIC, _bool_comm, _BOOL_OK, _BOOL_WRONG),
    Family("bool_demorgan", _LOGIC, _bool_demorgan, _BOOL_OK, _BOOL_WRONG),
    Family("bool_distrib", _LOGIC, _bool_distrib, _BOOL_OK, _BOOL_WRONG),
    Family("bool_absorb", _LOGIC, _bool_absorb, _BOOL_OK, _BOOL_WRONG),
    Family("bool_negb", _LOGIC, _bool_negb, _BOOL_OK, _BOOL_WRONG),
    Family("bool_reflect", _LOGIC, _bool_reflect, _BOOL_PROP_OK, _BOOL_WRONG),
    Family("bool_chain", _LOGIC, _bool_chain, ("auto", "destruct_intuition", "decide"),
           ("intros_reflexivity", "discriminate")),
    Family("prop_connectives", _LOGIC, _prop_connectives, (*_BOOL_PROP_OK, "tauto"),
           ("intros_reflexivity", "left_lia")),
    Family("nat_trichotomy", _LOGIC, _trichotomy(NAT, NAT_NAMES), ("lia",),
           ("left_lia", "auto", "decide")),
    Family("int_trichotomy", _LOGIC, _trichotomy(INT, INT_NAMES), ("lia",),
           ("left_lia", "auto_zarith", "decide")),
)
# fmt: on
_BY_NAME = {f.name: f for f in FAMILIES}
assert len(_BY_NAME) == len(FAMILIES), "family names must be unique"


def family_by_name(name: str) -> Family:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown math family {name!r}") from None
