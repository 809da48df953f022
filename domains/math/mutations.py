"""Mutations of the math domain: small structural edits that usually make a true statement false.

Off-by-one constants, flipped comparisons, swapped operands of a non-commutative operator, a
dropped hypothesis, a wrong list or arithmetic operator. Some mutants stay true; the prover
decides, and :func:`foundry.domains.math.ir.counterexample` says which are plausibly so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .families import INT, LIST, NAT
from .ir import (
    BinOp,
    Cmp,
    Cons,
    Fn,
    Lit,
    Map,
    Nil,
    Node,
    Path,
    PBin,
    PNot,
    Prop,
    Term,
    Theorem,
    UnOp,
    Var,
    get_at,
    replace_at,
    sort_of,
    to_coq,
    walk,
    walk_node,
)

MUTATION_KINDS: tuple[str, ...] = (
    "off_by_one",
    "flip_comparison",
    "swap_operands",
    "drop_hypothesis",
    "wrong_list_op",
    "wrong_op",
)

#: fresh attempts at a mutant whose text came out equal to the original
MUTANT_TRIES = 20


# -- mutations -------------------------------------------------------------------------------------
# A site finder lists, for one theorem, the edits of its kind: each a function of the RNG that
# returns the edited theorem. Edits touch the conclusion (or drop/swap hypotheses), not the
# hypotheses' insides, since weakening a hypothesis usually keeps a statement true.
Edit = Callable[[np.random.Generator], Theorem]


def _in_conclusion(path: Path) -> bool:
    return path[0] == "conclusion"


def _polarity(path: Path, ancestors: Sequence[Node]) -> int:
    """+1 if the node's truth makes the conclusion true, -1 if false, 0 if both (iff)."""
    sign = 1
    for depth, node in enumerate(ancestors):
        step = path[1 + depth]
        if isinstance(node, PNot):
            sign = -sign
        elif isinstance(node, PBin):
            if node.op == "iff":
                return 0
            if node.op == "implies" and step == "left":
                sign = -sign
    return sign


def _under_length(ancestors: Sequence[Node]) -> bool:
    return any(isinstance(a, UnOp) and a.op == "length" for a in ancestors)


def _bump(term: Term, delta: int) -> Term:
    """``term + delta`` folded into a trailing constant where there is one."""
    sort = sort_of(term)
    if isinstance(term, Lit) and sort in (NAT, INT):
        shifted = term.value + delta
        if shifted >= 0 or sort is INT:
            return Lit(shifted, sort)
    if isinstance(term, BinOp) and term.op in ("+", "-") and isinstance(term.right, Lit):
        step = (term.right.value if term.op == "+" else -term.right.value) + delta
        if step == 0:
            return term.left
        if sort is INT or step > 0:
            return BinOp("+" if step > 0 else "-", term.left, Lit(abs(step), sort))
    if delta > 0:
        return BinOp("+", term, Lit(delta, sort))
    return BinOp("-", term, Lit(-delta, sort))


def _literal_edits(thm: Theorem, path: Path, atom: Cmp, skip_lengths: bool) -> list[Edit]:
    """Shift one literal of the atom by one (never below zero for nat)."""
    edits: list[Edit] = []
    for sub_path, sub, ancestors in walk_node(atom, path):
        if isinstance(sub, Lit) and sub.sort in (NAT, INT):
            if skip_lengths and _under_length(ancestors):
                continue
            edits.append(lambda rng, p=sub_path, s=sub: replace_at(thm, p, _bump(s, _sign(rng, s))))
    return edits


def _off_by_one_sites(thm: Theorem) -> list[Edit]:
    """Equalities: shift a literal, or one side if there is none. Inequalities: strengthen.

    A true ``a <= b`` (or ``a < b``) is broken by a bigger ``a`` or a smaller ``b``; under a
    negation (or on the left of an implication) by the opposite, under an iff by either.
    """
    edits: list[Edit] = []
    for path, node, ancestors in walk(thm):
        if not _in_conclusion(path) or not isinstance(node, Cmp):
            continue
        sort = sort_of(node.left)
        if sort is LIST:  # literals inside list terms (not under length, where they do nothing)
            edits += _literal_edits(thm, path, node, skip_lengths=True)
        elif sort in (NAT, INT) and node.op in ("=", "<>"):
            literal_edits = _literal_edits(thm, path, node, skip_lengths=False)
            edits += literal_edits
            if not literal_edits:
                for side in ("left", "right"):
                    p = (*path, side)
                    edits.append(lambda rng, p=p: replace_at(thm, p, _bump(get_at(thm, p), 1)))
        elif sort in (NAT, INT):
            polarity = _polarity(path, ancestors)

            def shift(
                rng: np.random.Generator, p: Path = path, polarity: int = polarity
            ) -> Theorem:
                direction = polarity or (1 if rng.random() < 0.5 else -1)
                side = "left" if rng.random() < 0.5 else "right"
                delta = direction if side == "left" else -direction
                return replace_at(thm, (*p, side), _bump(get_at(thm, (*p, side)), delta))

            edits.append(shift)
    return edits


def _sign(rng: np.random.Generator, lit_: Term) -> int:
    if isinstance(lit_, Lit) and lit_.sort is NAT and lit_.value == 0:
        return 1
    return 1 if rng.random() < 0.5 else -1


_FLIPS: dict[str, tuple[tuple[str, bool], ...]] = {
    # (new operator, swap the sides)
    "<=": (("<", False), ("<=", True), ("<", True)),
    "<": (("<", True), ("<=", True), ("=", False)),
    "=": (("<>", False),),
    "<>": (("=", False),),
}


def _flip_sites(thm: Theorem) -> list[Edit]:
    edits: list[Edit] = []
    for path, node, _ in walk(thm):
        if _in_conclusion(path) and isinstance(node, Cmp):

            def flip(rng: np.random.Generator, p: Path = path, cmp: Cmp = node) -> Theorem:
                options = _FLIPS[cmp.op]
                op, swap = options[int(rng.integers(len(options)))]
                left, right = (cmp.right, cmp.left) if swap else (cmp.left, cmp.right)
                return replace_at(thm, p, Cmp(op, left, right))

            edits.append(flip)
    return edits


def _swap_sites(thm: Theorem) -> list[Edit]:
    edits: list[Edit] = []
    for path, node, ancestors in walk(thm):
        if not _in_conclusion(path):
            continue
        # (sides of a comparison are flip_comparison's; appending nil commutes; so does
        # anything under length)
        if (
            isinstance(node, BinOp)
            and node.op in ("-", "++")
            and node.left != node.right
            and not (node.op == "++" and _under_length(ancestors))
            and not isinstance(node.left, Nil)
            and not isinstance(node.right, Nil)
        ):
            swapped: Node = BinOp(node.op, node.right, node.left)
        elif isinstance(node, PBin) and node.op == "implies":
            swapped = PBin("implies", node.right, node.left)
        else:
            continue
        edits.append(lambda rng, p=path, s=swapped: replace_at(thm, p, s))
    for i, hyp in enumerate(thm.hypotheses):  # the converse: a hypothesis and the conclusion swap

        def converse(rng: np.random.Generator, i: int = i, hyp: Prop = hyp) -> Theorem:
            hyps = list(thm.hypotheses)
            hyps[i] = thm.conclusion
            return Theorem(thm.variables, tuple(hyps), hyp)

        edits.append(converse)
    return edits


def _drop_sites(thm: Theorem) -> list[Edit]:
    return [
        lambda rng, i=i: Theorem(
            thm.variables, thm.hypotheses[:i] + thm.hypotheses[i + 1 :], thm.conclusion
        )
        for i in range(len(thm.hypotheses))
    ]


def _other_fn(rng: np.random.Generator, fn: Fn) -> Fn:
    if rng.random() < 0.5:
        return Fn(fn.op, fn.k + 1)
    return Fn("mul" if fn.op == "add" else "add", max(2, fn.k))


def _list_op_sites(thm: Theorem) -> list[Edit]:
    edits: list[Edit] = []
    for path, node, ancestors in walk(thm):
        if not _in_conclusion(path):
            continue
        under = _under_length(ancestors)
        if isinstance(node, UnOp) and node.op == "rev" and not under:
            edits.append(lambda rng, p=path, n=node: replace_at(thm, p, n.arg))
        elif isinstance(node, Map) and not under:
            edits.append(
                lambda rng, p=path, n=node: replace_at(thm, p, Map(_other_fn(rng, n.fn), n.arg))
            )
        elif isinstance(node, BinOp) and node.op == "++":

            def drop(rng: np.random.Generator, p: Path = path, n: BinOp = node) -> Theorem:
                if isinstance(n.left, Nil) or isinstance(n.right, Nil):
                    return replace_at(thm, p, Nil())  # dropping nil would change nothing
                return replace_at(thm, p, n.left if rng.random() < 0.5 else n.right)

            edits.append(drop)
        elif isinstance(node, Cons):
            edits.append(lambda rng, p=path, n=node: replace_at(thm, p, n.tail))
        elif isinstance(node, Var) and node.sort is LIST and not _bigger_is_weaker(path, ancestors):
            edits.append(lambda rng, p=path, n=node: replace_at(thm, p, Cons(Lit(0, NAT), n)))
    return edits


def _bigger_is_weaker(path: Path, ancestors: Sequence[Node]) -> bool:
    """Whether the node sits on the right of a ``<=``/``<`` (a longer list only weakens it)."""
    for depth in range(len(ancestors) - 1, -1, -1):
        node = ancestors[depth]
        if isinstance(node, Cmp):
            return node.op in ("<=", "<") and path[1 + depth] == "right"
    return False


_OP_SWAPS: dict[str, tuple[str, ...]] = {
    "+": ("*", "-"),
    "-": ("+",),
    "*": ("+",),
    "min": ("max",),
    "max": ("min",),
    "&&": ("||",),
    "||": ("&&",),
}


def _op_sites(thm: Theorem) -> list[Edit]:
    edits: list[Edit] = []
    for path, node, _ in walk(thm):
        if not _in_conclusion(path):
            continue
        if isinstance(node, BinOp) and node.op in _OP_SWAPS:

            def swap_op(rng: np.random.Generator, p: Path = path, n: BinOp = node) -> Theorem:
                options = _OP_SWAPS[n.op]
                return replace_at(
                    thm, p, BinOp(options[int(rng.integers(len(options)))], n.left, n.right)
                )

            edits.append(swap_op)
        elif isinstance(node, UnOp) and node.op in ("neg", "negb"):
            edits.append(lambda rng, p=path, n=node: replace_at(thm, p, n.arg))
        elif isinstance(node, PBin) and node.op in ("and", "or"):
            other = "or" if node.op == "and" else "and"
            edits.append(
                lambda rng, p=path, n=node, o=other: replace_at(thm, p, PBin(o, n.left, n.right))
            )
        elif isinstance(node, PNot):
            edits.append(lambda rng, p=path, n=node: replace_at(thm, p, n.arg))
    return edits


_SITES: dict[str, Callable[[Theorem], list[Edit]]] = {
    "off_by_one": _off_by_one_sites,
    "flip_comparison": _flip_sites,
    "swap_operands": _swap_sites,
    "drop_hypothesis": _drop_sites,
    "wrong_list_op": _list_op_sites,
    "wrong_op": _op_sites,
}
assert tuple(_SITES) == MUTATION_KINDS


def mutation_sites(thm: Theorem) -> dict[str, list[Edit]]:
    """The applicable edits of each kind (kinds without a site are left out)."""
    return {kind: sites for kind, finder in _SITES.items() if (sites := finder(thm))}


def mutate(
    thm: Theorem, rng: np.random.Generator, kind: str | None = None
) -> tuple[Theorem, str] | None:
    """A mutant of the statement and its kind, or None if no edit changes its text.

    The kind is uniform among those with a site (or the given one); a mutant that renders the
    same as the original (in either backend) is drawn again.
    """
    sites = mutation_sites(thm)
    if kind is not None:
        sites = {kind: sites[kind]} if kind in sites else {}
    original = to_coq(thm)
    for _ in range(MUTANT_TRIES):
        if not sites:
            return None
        kinds = sorted(sites)
        chosen = kinds[int(rng.integers(len(kinds)))]
        edit = sites[chosen][int(rng.integers(len(sites[chosen])))]
        try:
            mutant = edit(rng)
        except (TypeError, ValueError):  # an edit that does not sort-check
            continue
        if to_coq(mutant) != original:
            return mutant, chosen
    return None
