"""Candidates of the code domain: HumanEval-style tasks, right or plausibly wrong.

A candidate is one family's prompt, a body (``completion``) and a ``check`` of plain asserts
whose expected values come from the family's reference. The body is one of the family's
correct implementations or, with probability ``wrong_fraction``, a mutant of one: a small
AST edit of the kind a programmer gets wrong (off by one, a flipped comparison, a wrong
operator, a dropped guard, ...). Mutants are not labelled here: some are equivalent to the
original, and the ground truth (running the tests) decides.

Every body, correct or mutated, is rendered by ``ast.unparse``, so that the text's layout says
nothing about correctness. Children are deterministic given the RNG.

Task ids are ``gen/<family>/<variant>``: the variant of a child is a digest of its test (the
same tests, the same task); the reference tasks (the domain's parents) are variant ``0``, and
each child's ``parent_key`` is ``gen/<family>/0#ref<k>``, the reference implementation k it
was derived from.

Steering knobs (``STEERING_DEFAULTS``):

* ``wrong_fraction`` - share of candidates that are mutants;
* ``edge_case_share`` - share of a task's asserts drawn from the family's edge cases;
* ``n_tests`` - asserts per task (fewer if the inputs run out of distinct values);
* ``difficulty`` - target difficulty 1..5; families get weight ``exp(-|d - target|)``
  (0 means any difficulty);
* ``max_mutations`` - a mutant carries 1..max_mutations edits (uniform);
* ``group_<name>`` - relative weight of each family group.
"""

from __future__ import annotations

import ast
import hashlib
import math
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from .families import FAMILIES, GROUPS, Args, Family

__all__ = [
    "MUTATION_KINDS",
    "STEERING_DEFAULTS",
    "CodeGenerator",
    "GeneratedTask",
    "mutate_completion",
    "normalise_body",
    "reference_key",
    "reference_tasks",
    "render_test",
    "select_inputs",
]

#: The time limit of a generated task (wall seconds for loading the program and running its
#: tests). Every reference solution runs in milliseconds; a mutant that loops for ever (a
#: flipped loop condition) would otherwise hold a core for the domain's whole ``timeout_s``,
#: and a few such mutants cost more than all the other checks together (measured: 5 of 600
#: generated tasks timed out at 10 s and took 90 % of the sandbox's time). The slowest reference
#: solution took 38 ms here: 0.25 s leaves a margin of 6x for a loaded node.
TIME_LIMIT_S = 0.25

STEERING_DEFAULTS: dict[str, float] = {
    "wrong_fraction": 0.5,
    "edge_case_share": 0.3,
    "n_tests": 6.0,
    "difficulty": 0.0,
    "max_mutations": 1.0,
    **{f"group_{group}": 1.0 for group in GROUPS},
}
#: the kinds of mutation, in the order they are tried before shuffling
MUTATION_KINDS: tuple[str, ...] = (
    "off_by_one",
    "range_bound",
    "comparison_flip",
    "arith_op",
    "bool_op",
    "missing_guard",
    "min_max_swap",
    "wrong_return",
    "slice_off_by_one",
)
#: relative odds of each kind, among the kinds a body has a site for; returning the wrong
#: name fits almost every body and is the least subtle, so it is drawn less often
KIND_WEIGHTS: dict[str, float] = {kind: 1.0 for kind in MUTATION_KINDS} | {"wrong_return": 0.4}
#: fresh attempts at a mutant whose text came out equal to the original (or did not compile)
MUTANT_TRIES = 25
#: draws of the sampler per missing test input before a task settles for fewer asserts
INPUT_TRIES = 20
#: the variant of the reference tasks (the domain's own parents)
REFERENCE_VARIANT = "0"


@dataclass(frozen=True)
class GeneratedTask:
    """A payload and the key of the reference implementation it was derived from.

    For a reference task (:meth:`CodeGenerator.reference_tasks`) ``parent_key`` is its own key:
    references are the roots the domain maps children's keys to.
    """

    payload: dict[str, Any]
    parent_key: str


def reference_key(family: str, implementation: int) -> str:
    return f"gen/{family}/{REFERENCE_VARIANT}#ref{implementation}"


# -- tests -----------------------------------------------------------------------------------
def select_inputs(
    family: Family, rng: np.random.Generator, n_tests: int, edge_share: float
) -> list[Args]:
    """``n_tests`` distinct inputs, about ``edge_share`` of them edge cases."""
    edges = family.edge_cases
    n_edge = min(len(edges), int(edge_share * n_tests + 0.5), n_tests)
    chosen = [edges[int(i)] for i in rng.choice(len(edges), size=n_edge, replace=False)]
    seen = {repr(args) for args in chosen}
    for _ in range(INPUT_TRIES * max(0, n_tests - len(chosen))):
        if len(chosen) >= n_tests:
            break
        args = family.draw(rng)
        if repr(args) not in seen:
            seen.add(repr(args))
            chosen.append(args)
    return chosen


def render_test(family: Family, inputs: Sequence[Args]) -> str:
    """``def check(candidate)`` with one literal assert per input."""
    lines = ["def check(candidate):"]
    for args in inputs:
        call = f"candidate({', '.join(repr(a) for a in args)})"
        expected = family.expected(args)
        if family.approx:
            lines.append(f"    assert abs({call} - {expected!r}) < 1e-9")
        else:
            lines.append(f"    assert {call} == {expected!r}")
    return "\n".join(lines) + "\n"


# -- bodies ------------------------------------------------------------------------------------
def _entry(tree: ast.Module, name: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise ValueError(f"the program defines no function {name!r}")


def _render_body(func: ast.FunctionDef) -> str:
    """The statements after the docstring, as a completion indented under the prompt."""
    body = func.body[1:] or [ast.Pass()]
    return textwrap.indent("\n".join(ast.unparse(stmt) for stmt in body), "    ") + "\n"


def normalise_body(prompt: str, body: str, entry_point: str) -> str:
    """A body in ``ast.unparse`` layout, the layout every mutant has too."""
    program = prompt + textwrap.indent(body, "    ")
    return _render_body(_entry(ast.parse(program), entry_point))


# -- mutation sites ------------------------------------------------------------------------------
# A site finder lists, for one function tree, the places one edit can go: the program line
# and a closure that applies the edit in place.
class Site(NamedTuple):
    line: int
    apply: Callable[[np.random.Generator], None]


_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_ARITH: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Add,
    ast.FloorDiv: ast.Div,
    ast.Div: ast.FloorDiv,
    ast.Mod: ast.FloorDiv,
}
_EXITS = (ast.Return, ast.Continue, ast.Break, ast.Raise)
_NEW_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp,
               ast.SetComp, ast.DictComp, ast.GeneratorExp)  # fmt: skip


def _body_nodes(func: ast.FunctionDef) -> Iterator[ast.AST]:
    """Every node of the completion (the docstring and the signature are the prompt's)."""
    for stmt in func.body[1:]:
        yield from ast.walk(stmt)


def _is_int(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _int_value(node: ast.AST) -> int | None:
    """The value of an integer literal, ``-3`` included."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = node.operand
        if isinstance(inner, ast.Constant) and type(inner.value) is int:
            return -inner.value
    return None


def _delta(rng: np.random.Generator) -> int:
    return 1 if rng.random() < 0.5 else -1


def _shifted(expr: ast.expr, delta: int) -> ast.expr:
    """``expr + delta``, folded into a constant or an existing ``+ c`` / ``- c``."""
    value = _int_value(expr)
    if value is not None:
        new: ast.expr = ast.Constant(value + delta)
    elif (
        isinstance(expr, ast.BinOp)
        and isinstance(expr.op, ast.Add | ast.Sub)
        and ((right := _int_value(expr.right)) is not None)
    ):
        step = (right if isinstance(expr.op, ast.Add) else -right) + delta
        if step == 0:
            return expr.left
        op: ast.operator = ast.Add() if step > 0 else ast.Sub()
        new = ast.BinOp(expr.left, op, ast.copy_location(ast.Constant(abs(step)), expr))
    else:
        one = ast.copy_location(ast.Constant(1), expr)
        new = ast.BinOp(expr, ast.Add() if delta > 0 else ast.Sub(), one)
    return ast.copy_location(new, expr)


def _bump_constant(node: ast.Constant, avoid_zero: bool, rng: np.random.Generator) -> None:
    delta = _delta(rng)
    if avoid_zero and node.value + delta == 0:  # ``j - 1`` -> ``j - 2``, never ``j - 0``
        delta = -delta
    node.value += delta


def _shift_item(parent: ast.AST, field: str, index: int | None, rng: np.random.Generator) -> None:
    """Shift ``parent.field`` (or its ``index``-th element) by one; absent bounds become 1/-1."""
    container = getattr(parent, field)
    old = container if index is None else container[index]
    delta = _delta(rng)
    if old is None:  # an open slice bound: start at 1, or stop one short
        new: ast.expr = ast.copy_location(ast.Constant(1 if field == "lower" else -1), parent)
    else:
        new = _shifted(old, delta)
    if index is None:
        setattr(parent, field, new)
    else:
        container[index] = new


def _set_attr(node: ast.AST, field: str, value: Any, _rng: np.random.Generator) -> None:
    setattr(node, field, value)


def _flip_compare(node: ast.Compare, index: int, _rng: np.random.Generator) -> None:
    node.ops[index] = _FLIP[type(node.ops[index])]()


def _drop_statement(block: list[ast.stmt], index: int, _rng: np.random.Generator) -> None:
    del block[index]
    if not block:
        block.append(ast.Pass())


def _off_by_one_sites(func: ast.FunctionDef) -> list[Site]:
    addends = set()  # constants added or subtracted: they never become 0
    for node in _body_nodes(func):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            addends.add(id(node.right))
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Add | ast.Sub):
            addends.add(id(node.value))
    return [
        Site(n.lineno, partial(_bump_constant, n, id(n) in addends))
        for n in _body_nodes(func)
        if _is_int(n)
    ]


def _range_bound_sites(func: ast.FunctionDef) -> list[Site]:
    sites: list[Site] = []
    for node in _body_nodes(func):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "range"
        ):
            sites += [
                Site(arg.lineno, partial(_shift_item, node, "args", i))
                for i, arg in enumerate(node.args)
            ]
    return sites


def _slice_sites(func: ast.FunctionDef) -> list[Site]:
    sites: list[Site] = []
    for node in _body_nodes(func):
        if isinstance(node, ast.Slice):
            for field in ("lower", "upper"):  # open bounds only when there is no step
                if getattr(node, field) is not None or node.step is None:
                    line = (getattr(node, field) or node).lineno
                    sites.append(Site(line, partial(_shift_item, node, field, None)))
    return sites


def _comparison_sites(func: ast.FunctionDef) -> list[Site]:
    return [
        Site(node.lineno, partial(_flip_compare, node, i))
        for node in _body_nodes(func)
        if isinstance(node, ast.Compare)
        for i, op in enumerate(node.ops)
        if type(op) in _FLIP
    ]


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _arith_sites(func: ast.FunctionDef) -> list[Site]:
    sites: list[Site] = []
    for node in _body_nodes(func):
        if isinstance(node, ast.BinOp):
            operands: tuple[ast.expr, ...] = (node.left, node.right)
        elif isinstance(node, ast.AugAssign):
            operands = (node.value,)
        else:
            continue
        if type(node.op) in _ARITH and not any(_is_str(o) for o in operands):  # no 'a' - 'b'
            sites.append(Site(node.lineno, partial(_set_attr, node, "op", _ARITH[type(node.op)]())))
    return sites


def _bool_op_sites(func: ast.FunctionDef) -> list[Site]:
    return [
        Site(
            node.lineno,
            partial(_set_attr, node, "op", ast.Or() if isinstance(node.op, ast.And) else ast.And()),
        )
        for node in _body_nodes(func)
        if isinstance(node, ast.BoolOp)
    ]


def _guard_sites(func: ast.FunctionDef) -> list[Site]:
    """``if`` statements without ``else`` whose body ends by leaving (return, continue, ...)."""
    sites: list[Site] = []
    for node in [func, *_body_nodes(func)]:
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            for i, stmt in enumerate(block):
                if (
                    isinstance(stmt, ast.If)
                    and not stmt.orelse
                    and isinstance(stmt.body[-1], _EXITS)
                ):
                    sites.append(Site(stmt.lineno, partial(_drop_statement, block, i)))
    return sites


def _min_max_sites(func: ast.FunctionDef) -> list[Site]:
    return [
        Site(
            node.lineno,
            partial(_set_attr, node.func, "id", "max" if node.func.id == "min" else "min"),
        )
        for node in _body_nodes(func)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("min", "max")
    ]


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of one function scope, not descending into nested scopes."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop(0)
        yield node
        if not isinstance(node, _NEW_SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def _listy(expr: ast.AST | None, list_names: set[str]) -> bool:
    if isinstance(expr, ast.List | ast.ListComp):
        return True
    if isinstance(expr, ast.Name):
        return expr.id in list_names
    return (
        isinstance(expr, ast.Call)
        and isinstance(expr.func, ast.Name)
        and expr.func.id in ("list", "sorted")
    )


def _return_sites(func: ast.FunctionDef) -> list[Site]:
    """Return a list one element short, or a local name other than the one returned."""
    sites: list[Site] = []
    scopes = [func] + [n for n in _body_nodes(func) if isinstance(n, ast.FunctionDef)]
    for scope in scopes:
        own = list(_own_nodes(scope)) if scope is not func else list(_own_body(func))
        names: dict[str, None] = {a.arg: None for a in scope.args.args + scope.args.kwonlyargs}
        list_names = {
            a.arg
            for a in scope.args.args
            if a.annotation is not None and ast.unparse(a.annotation).startswith("list")
        }
        for node in own:
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names[node.id] = None
            if isinstance(node, ast.Assign) and _listy(node.value, list_names):
                list_names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        for node in own:
            if not isinstance(node, ast.Return) or node.value is None:
                continue
            value = node.value
            if _listy(value, list_names):
                trimmed = ast.Subscript(
                    value, ast.Slice(upper=ast.Constant(-1)), ctx=ast.Load()
                )  # the list one element short
                trimmed = ast.copy_location(trimmed, value)
                sites.append(Site(node.lineno, partial(_set_attr, node, "value", trimmed)))
            for other in names:  # any local but the one returned
                if not (isinstance(value, ast.Name) and other == value.id):
                    swapped = ast.copy_location(ast.Name(other, ast.Load()), value)
                    sites.append(Site(node.lineno, partial(_set_attr, node, "value", swapped)))
    return sites


def _own_body(func: ast.FunctionDef) -> Iterator[ast.AST]:
    for stmt in func.body[1:]:
        yield stmt
        if not isinstance(stmt, _NEW_SCOPES):
            yield from _own_nodes(stmt)


_SITES: dict[str, Callable[[ast.FunctionDef], list[Site]]] = {
    "off_by_one": _off_by_one_sites,
    "range_bound": _range_bound_sites,
    "comparison_flip": _comparison_sites,
    "arith_op": _arith_sites,
    "bool_op": _bool_op_sites,
    "missing_guard": _guard_sites,
    "min_max_swap": _min_max_sites,
    "wrong_return": _return_sites,
    "slice_off_by_one": _slice_sites,
}
assert tuple(_SITES) == MUTATION_KINDS


def _mutate_once(
    func: ast.FunctionDef, rng: np.random.Generator, first_line: int, used: set[int]
) -> str | None:
    """Apply one edit of a random kind (falling back to kinds that have a site).

    Lines already edited (``used``) are left alone, so that edits neither stack on the nodes
    an earlier edit made nor undo it.
    """
    weights = np.array([KIND_WEIGHTS[kind] for kind in MUTATION_KINDS])
    keys = rng.random(len(weights)) ** (1.0 / weights)  # a weighted order without replacement
    for k in np.argsort(-keys, kind="stable"):
        kind = MUTATION_KINDS[int(k)]
        sites = [site for site in _SITES[kind](func) if site.line not in used]
        if sites:
            site = sites[int(rng.integers(len(sites)))]
            site.apply(rng)
            ast.fix_missing_locations(func)  # new nodes get their parents' lines
            used.add(site.line)
            return f"{kind}@line{site.line - first_line}"
    return None


def mutate_completion(
    prompt: str,
    completion: str,
    entry_point: str,
    rng: np.random.Generator,
    n_mutations: int = 1,
) -> tuple[str, str]:
    """A mutant of ``completion`` and its label, e.g. ``("...", "off_by_one@line3")``.

    Lines count from the first line of the completion (1). Several edits are joined by ``;``.
    A mutant whose text equals the original, or that does not compile, is drawn again.
    """
    offset = prompt.count("\n")
    for _ in range(MUTANT_TRIES):
        tree = ast.parse(prompt + completion)
        func = _entry(tree, entry_point)
        used: set[int] = set()
        labels = [
            label
            for _ in range(max(1, n_mutations))
            if (label := _mutate_once(func, rng, offset, used)) is not None
        ]
        if not labels:
            break
        text = _render_body(func)
        if text == completion:
            continue
        try:
            compile(prompt + text, "<mutant>", "exec")
        except SyntaxError:
            continue
        return text, ";".join(labels)
    raise RuntimeError(f"no mutant of {entry_point!r} differs from the original")


# -- the generator --------------------------------------------------------------------------------
class CodeGenerator:
    """Tasks from a set of families (all by default), mutated with ``wrong_fraction``."""

    def __init__(self, families: Sequence[Family] | None = None) -> None:
        self.families: tuple[Family, ...] = tuple(FAMILIES if families is None else families)
        if not self.families:
            raise ValueError("the code generator needs at least one family")
        names = [f.name for f in self.families]
        if len(set(names)) != len(names):
            raise ValueError("family names must be unique")
        self._prompts = {f.name: f.prompt for f in self.families}
        self._bodies = {f.name: self._normalised(f) for f in self.families}

    def _normalised(self, family: Family) -> tuple[str, ...]:
        prompt = self._prompts[family.name]
        return tuple(normalise_body(prompt, b, family.name) for b in family.implementations)

    def bodies(self, family: str) -> tuple[str, ...]:
        """The family's correct completions, in the layout of the payloads."""
        return self._bodies[family]

    def family_weights(self, steering: Mapping[str, float]) -> np.ndarray:
        """Choice probabilities: group weight x ``exp(-|d - target|)`` (target > 0)."""
        knobs = {**STEERING_DEFAULTS, **steering}
        target = float(knobs["difficulty"])
        weights = np.array(
            [
                max(0.0, float(knobs.get(f"group_{f.group}", 1.0)))
                * (math.exp(-abs(f.difficulty - target)) if target > 0 else 1.0)
                for f in self.families
            ]
        )
        if not weights.sum() > 0:
            raise ValueError("the steering gives every code family zero weight")
        return weights / weights.sum()

    def children(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[GeneratedTask]:
        """``n`` tasks: family by steering, implementation uniform, mutated or not."""
        knobs = {**STEERING_DEFAULTS, **steering}
        probabilities = self.family_weights(knobs)
        wrong = min(1.0, max(0.0, float(knobs["wrong_fraction"])))
        edge_share = min(1.0, max(0.0, float(knobs["edge_case_share"])))
        n_tests = max(1, round(float(knobs["n_tests"])))
        max_mutations = max(1, round(float(knobs["max_mutations"])))
        out = []
        for _ in range(n):
            family = self.families[int(rng.choice(len(self.families), p=probabilities))]
            k = int(rng.integers(len(self._bodies[family.name])))
            test = render_test(family, select_inputs(family, rng, n_tests, edge_share))
            completion, mutation = self._bodies[family.name][k], ""
            if rng.random() < wrong:
                n_mutations = int(rng.integers(1, max_mutations + 1))
                completion, mutation = mutate_completion(
                    self._prompts[family.name], completion, family.name, rng, n_mutations
                )
            variant = hashlib.sha256(test.encode()).hexdigest()[:10]
            payload = self._payload(family, variant, completion, test, mutation)
            out.append(GeneratedTask(payload, reference_key(family.name, k)))
        return out

    def reference_tasks(self, rng: np.random.Generator) -> list[GeneratedTask]:
        """One unmutated task per family and implementation, tested on every edge case.

        The implementations of a family share one task (``gen/<family>/0``) and differ in the
        completion; each is keyed ``gen/<family>/0#ref<k>`` (its own ``parent_key``).
        """
        out = []
        n_random = round(STEERING_DEFAULTS["n_tests"])
        for family in self.families:
            inputs = select_inputs(family, rng, len(family.edge_cases) + n_random, 1.0)
            test = render_test(family, inputs)
            for k, body in enumerate(self._bodies[family.name]):
                payload = self._payload(family, REFERENCE_VARIANT, body, test, "")
                out.append(GeneratedTask(payload, reference_key(family.name, k)))
        return out

    def _payload(
        self, family: Family, variant: str, completion: str, test: str, mutation: str
    ) -> dict[str, Any]:
        return {
            "task_id": f"gen/{family.name}/{variant}",
            "prompt": self._prompts[family.name],
            "entry_point": family.name,
            "completion": completion,
            "test": test,
            "family": family.name,
            "difficulty": int(family.difficulty),
            "mutation": mutation,
            "time_limit_s": TIME_LIMIT_S,
        }


def reference_tasks(
    rng: np.random.Generator, families: Sequence[Family] | None = None
) -> list[GeneratedTask]:
    """The reference tasks of ``CodeGenerator(families)``."""
    return CodeGenerator(families).reference_tasks(rng)
