"""The math domain's theorem generator: the IR, brute-force truth, steering, mutants, and Coq.

Coq runs for real (``coqc``; skipped where it is not installed): statements expected to be
proved go into one ``.v`` file (the imports loaded once), each statement expected to fail into a
file of its own, two at a time. Lean 4 is not exercised here (its toolchain is not installed);
its rendering is checked as text.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from foundry.domains.math.generator import (
    COQ_IMPORTS,
    FAMILIES,
    GROUPS,
    MUTATION_KINDS,
    STEERING_DEFAULTS,
    TACTICS,
    MathGenerator,
    family_by_name,
    mutate,
    reference_key,
    render_statement,
)
from foundry.domains.math.ir import (
    BinOp,
    Cmp,
    Fn,
    Lit,
    Map,
    Nil,
    PBin,
    Sort,
    Theorem,
    UnOp,
    Var,
    counterexample,
    evaluate,
    is_plausibly_true,
    to_coq,
    to_lean,
)
from foundry.domains.math.ir_json import theorem_from_json

PAYLOAD_KEYS = {
    "backend": str,
    "statement": str,
    "proof": str,
    "imports": list,
    "name": str,
    "family": str,
    "group": str,
    "difficulty": int,
    "tactic": str,
    "mutation": str,
    "ir": dict,
}
#: what a checker splits Coq sentences on: never inside a statement
FORBIDDEN = re.compile(r'\.(\s|$)|\(\*|\*\)|"')
HEADER = "".join(f"Require Import {module}.\n" for module in COQ_IMPORTS)
needs_coq = pytest.mark.skipif(shutil.which("coqc") is None, reason="coqc is not installed")

N, Z, L, B = Sort.NAT, Sort.INT, Sort.LIST, Sort.BOOL
n, m, x, y = Var("n", N), Var("m", N), Var("x", Z), Var("y", Z)
l1, l2 = Var("l1", L), Var("l2", L)


def children(n_children: int, seed: int = 0, backend: str = "coq", **steering: float):
    return MathGenerator(backend).children(n_children, np.random.default_rng(seed), steering)


# -- the IR ------------------------------------------------------------------------------------
def test_rendering_of_hand_built_theorems() -> None:
    comm = Theorem((("n", N), ("m", N)), (), Cmp("=", BinOp("+", n, m), BinOp("+", m, n)))
    assert to_coq(comm) == "forall n m : nat, n + m = m + n"
    assert to_lean(comm) == "∀ n m : Nat, n + m = m + n"
    zcomm = Theorem((("x", Z), ("y", Z)), (), Cmp("=", BinOp("+", x, y), BinOp("+", y, x)))
    assert to_coq(zcomm) == "forall x y : Z, (x + y = y + x)%Z"
    succ = Theorem((("x", Z), ("y", Z)), (Cmp("<", x, y),), Cmp("<=", BinOp("+", x, Lit(1, Z)), y))
    assert to_coq(succ) == "forall x y : Z, (x < y)%Z -> (x + 1 <= y)%Z"
    assert to_lean(succ) == "∀ x y : Int, x < y → x + (1 : Int) ≤ y"
    length = Theorem(
        (("l1", L), ("l2", L)),
        (),
        Cmp(
            "=",
            UnOp("length", BinOp("++", l1, l2)),
            BinOp("+", UnOp("length", l1), UnOp("length", l2)),
        ),
    )
    assert to_coq(length) == ("forall l1 l2 : list nat, length (l1 ++ l2) = length l1 + length l2")
    assert to_lean(length) == (
        "∀ l1 l2 : List Nat, List.length (l1 ++ l2) = List.length l1 + List.length l2"
    )
    mapped = Theorem(
        (("n", N), ("l1", L)),
        (),
        Cmp("=", BinOp("++", Map(Fn("add", 2), l1), Nil()), Map(Fn("add", 2), l1)),
    )
    assert to_coq(mapped) == (
        "forall (n : nat) (l1 : list nat), "
        "map (fun x => x + 2) l1 ++ (@nil nat) = map (fun x => x + 2) l1"
    )
    assert to_lean(mapped).startswith("∀ (n : Nat) (l1 : List Nat), List.map (fun x => x + 2)")
    a, b = Var("a", B), Var("b", B)
    demorgan = Theorem(
        (("a", B), ("b", B)),
        (),
        Cmp("=", UnOp("negb", BinOp("&&", a, b)), BinOp("||", UnOp("negb", a), UnOp("negb", b))),
    )
    assert to_coq(demorgan) == "forall a b : bool, (negb (a && b)) = (negb a || negb b)"
    # Lean's ``!`` and ``&&`` bind looser than ``=``: both sides stay wrapped
    assert to_lean(demorgan) == "∀ a b : Bool, (!(a && b)) = (!a || !b)"
    concrete = Theorem((), (), Cmp("=", BinOp("*", Lit(12, N), Lit(13, N)), Lit(156, N)))
    assert to_coq(concrete) == "12 * 13 = 156"
    assert to_lean(Theorem((), (), Cmp("=", Lit(-3, Z), BinOp("-", Lit(1, Z), Lit(4, Z))))) == (
        "(-3 : Int) = (1 : Int) - (4 : Int)"
    )


def test_precedence_keeps_meaning() -> None:
    """Parentheses appear exactly where left-associative ``+ - *`` need them."""
    k = Var("k", N)
    left = BinOp("-", BinOp("+", n, m), k)  # (n + m) - k
    right = BinOp("-", n, BinOp("+", m, k))  # n - (m + k)
    product = BinOp("*", BinOp("+", n, m), k)  # (n + m) * k
    thm = Theorem(
        (("n", N), ("m", N), ("k", N)),
        (),
        PBin("and", Cmp("<=", left, right), Cmp("=", product, product)),
    )
    assert (
        to_coq(thm) == "forall n m k : nat, n + m - k <= n - (m + k) /\\ (n + m) * k = (n + m) * k"
    )


def test_truncated_subtraction_and_brute_force() -> None:
    back = Theorem((("n", N), ("m", N)), (), Cmp("=", BinOp("+", BinOp("-", n, m), m), n))
    assert evaluate(back, {"n": 0, "m": 1}) is False  # 0 - 1 = 0 in nat
    assert evaluate(back, {"n": 5, "m": 2}) is True
    assert counterexample(back) is not None
    guarded = Theorem(back.variables, (Cmp("<=", m, n),), back.conclusion)
    assert is_plausibly_true(guarded)
    int_back = Theorem((("x", Z), ("y", Z)), (), Cmp("=", BinOp("+", BinOp("-", x, y), y), x))
    assert is_plausibly_true(int_back)
    # a hypothesis that holds only beyond the small grid still finds the counterexample
    far = Theorem(
        (("n", N), ("m", N)),
        (Cmp("<", BinOp("+", n, Lit(43, N)), m),),
        Cmp("<=", BinOp("+", n, Lit(45, N)), m),
    )
    found = counterexample(far)
    assert found is not None and found["m"] == found["n"] + 44
    with pytest.raises(TypeError):
        Theorem((("n", N),), (), Cmp("=", n, x))  # x is not bound
    with pytest.raises(TypeError):
        Theorem((("x", Z),), (), Cmp("<=", UnOp("negb", x), x))


# -- families and references ---------------------------------------------------------------------
def test_families_and_groups() -> None:
    assert len(FAMILIES) >= 30
    assert {f.group for f in FAMILIES} == set(GROUPS)
    assert all(sum(f.group == g for f in FAMILIES) >= 6 for g in GROUPS)
    assert family_by_name("nat_add_comm").group == "nat_arith"
    with pytest.raises(KeyError):
        family_by_name("no_such_family")
    for family in FAMILIES:
        assert not set(family.correct) & set(family.wrong), family.name
        for backend, d in itertools.product(("coq", "lean4"), family.levels):
            built = family.build(np.random.default_rng(d), d)
            assert not set(built.correct) & set(family.wrong), (family.name, d)
            assert family.tactics(built, backend, wrong=False), (family.name, backend, d)
            assert family.tactics(built, backend, wrong=True), (family.name, backend, d)
    assert dict(STEERING_DEFAULTS) == {
        "difficulty": 0.0,
        "false_fraction": 0.3,
        "wrong_proof_fraction": 0.15,
        **{f"group_{g}": 1.0 for g in GROUPS},
    }


def test_every_family_at_every_level_is_brute_force_true() -> None:
    rng = np.random.default_rng(11)
    for family in FAMILIES:
        for d in family.levels:
            for _ in range(2):
                thm = family.build(rng, d).theorem
                assert counterexample(thm) is None, (family.name, d, to_coq(thm))


def test_references() -> None:
    for backend in ("coq", "lean4"):
        refs = MathGenerator(backend).reference_theorems(np.random.default_rng(3))
        assert [r.payload["family"] for r in refs] == [f.name for f in FAMILIES]
        for ref in refs:
            family = family_by_name(ref.payload["family"])
            assert ref.parent_key == reference_key(family.name) == f"gen/{family.name}/ref"
            assert ref.payload["mutation"] == ""
            assert ref.payload["tactic"] not in family.wrong
            assert ref.theorem is not None and is_plausibly_true(ref.theorem)


def test_children_are_deterministic() -> None:
    for backend in ("coq", "lean4"):
        first = children(200, seed=5, backend=backend, difficulty=3.0)
        again = children(200, seed=5, backend=backend, difficulty=3.0)
        assert [c.payload for c in first] == [c.payload for c in again]
        assert [c.parent_key for c in first] == [c.parent_key for c in again]
        other = children(200, seed=6, backend=backend, difficulty=3.0)
        assert [c.payload for c in other] != [c.payload for c in first]


# -- mutants -------------------------------------------------------------------------------------
def test_each_mutation_kind_is_mostly_false() -> None:
    rng = np.random.default_rng(2)
    pairs = [(f, d) for f in FAMILIES for d in f.levels]
    for kind in MUTATION_KINDS:
        verdicts: list[bool] = []
        for _ in range(40):  # rounds over every (family, level) until 200 mutants
            for family, d in pairs:
                thm = family.build(rng, d).theorem
                mutated = mutate(thm, rng, kind)
                if mutated is None:
                    continue
                mutant, label = mutated
                assert label == kind and to_coq(mutant) != to_coq(thm)
                verdicts.append(counterexample(mutant) is not None)
                if len(verdicts) == 200:
                    break
            if len(verdicts) == 200:
                break
        assert len(verdicts) == 200, kind
        assert sum(verdicts) / len(verdicts) >= 0.7, (kind, sum(verdicts) / len(verdicts))


def test_false_and_wrong_proof_fractions() -> None:
    none = children(300, seed=1, false_fraction=0.0, wrong_proof_fraction=0.0)
    assert all(c.payload["mutation"] == "" for c in none)
    assert all(c.payload["tactic"] not in family_by_name(c.payload["family"]).wrong for c in none)
    assert all(is_plausibly_true(c.theorem) for c in none)
    every = children(300, seed=1, false_fraction=1.0, wrong_proof_fraction=1.0)
    mutated = [c for c in every if c.payload["mutation"]]
    assert len(mutated) >= 0.95 * len(every)
    assert {c.payload["mutation"] for c in mutated} == set(MUTATION_KINDS)
    assert sum(not is_plausibly_true(c.theorem) for c in mutated) >= 0.8 * len(mutated)
    wrong = [c for c in every if c.payload["tactic"] in family_by_name(c.payload["family"]).wrong]
    assert len(wrong) >= 0.9 * len(every)
    default = children(1000, seed=2)
    share = sum(bool(c.payload["mutation"]) for c in default) / len(default)
    assert 0.25 <= share <= 0.35


# -- steering ------------------------------------------------------------------------------------
def test_difficulty_steering_moves_the_mean() -> None:
    means = {}
    for target in (0.0, 1.0, 5.0):
        kids = children(600, seed=4, difficulty=target)
        means[target] = statistics.mean(c.payload["difficulty"] for c in kids)
    assert means[1.0] < 2.0 < 2.6 < means[0.0] < 3.4 < 4.0 < means[5.0]


def test_group_weights_steer_the_mix() -> None:
    kids = children(800, seed=7, group_lists=5.0)
    share = Counter(c.payload["group"] for c in kids)["lists"] / len(kids)
    assert 0.55 <= share <= 0.7  # 5 / 8 expected
    only = children(200, seed=7, group_nat_arith=0.0, group_int_arith=0.0, group_lists=0.0)
    assert {c.payload["group"] for c in only} == {"logic"}
    with pytest.raises(ValueError):
        children(1, **{f"group_{g}": 0.0 for g in GROUPS})


# -- payloads -----------------------------------------------------------------------------------
def test_payloads_are_plain_json_and_well_formed() -> None:
    for backend in ("coq", "lean4"):
        kids = children(600, seed=8, backend=backend)
        kids += MathGenerator(backend).reference_theorems(np.random.default_rng(8))
        for child in kids:
            payload = child.payload
            assert json.loads(json.dumps(payload)) == payload
            assert set(payload) == set(PAYLOAD_KEYS)
            for key, kind in PAYLOAD_KEYS.items():
                assert type(payload[key]) is kind, (key, payload)
            assert payload["backend"] == backend
            assert theorem_from_json(payload["ir"]) == child.theorem, "the ir is the statement"
            assert payload["imports"] == (list(COQ_IMPORTS) if backend == "coq" else [])
            assert re.fullmatch(rf"gen_{payload['family']}_[0-9a-f]{{8}}", payload["name"])
            assert child.parent_key == f"gen/{payload['family']}/ref"
            assert 1 <= payload["difficulty"] <= 5
            assert payload["tactic"] in TACTICS
            assert set(filter(None, payload["mutation"].split(","))) <= set(MUTATION_KINDS)
            assert payload["group"] == family_by_name(payload["family"]).group


def test_statements_and_proofs_are_safe_for_the_checkers() -> None:
    for backend in ("coq", "lean4"):
        kids = children(1000, seed=9, backend=backend)
        kids += MathGenerator(backend).reference_theorems(np.random.default_rng(9))
        for child in kids:
            statement, proof = child.payload["statement"], child.payload["proof"]
            assert not FORBIDDEN.search(statement), statement
            assert statement == render_statement(child.theorem, backend)
            if backend == "coq":
                assert proof.endswith(".") and not FORBIDDEN.search(proof[:-1]), proof
                assert "Proof" not in proof and "Qed" not in proof
            else:
                assert proof and not proof.endswith(".")
                for coq_only in ("forall", "%Z", "/\\", "nat", "negb", "@nil", "Nat.min"):
                    assert coq_only not in statement, statement
                for coq_tactic in ("lia", "ring", "reflexivity", "destruct"):
                    assert not re.search(rf"\b{coq_tactic}\b", proof), proof


def test_children_are_varied() -> None:
    kids = children(1000, seed=10)
    assert len({(c.payload["statement"], c.payload["proof"]) for c in kids}) >= 600
    assert len({c.payload["family"] for c in kids}) == len(FAMILIES)


# -- Coq ----------------------------------------------------------------------------------------
def _theorem(name: str, statement: str, proof: str) -> str:
    return f"Theorem {name} : {statement}.\nProof.\n{proof}\nQed.\n"


def _coqc(directory: Path, stem: str, body: str) -> tuple[bool, str, float]:
    path = directory / f"{stem}.v"
    path.write_text(HEADER + body)
    start = time.perf_counter()
    done = subprocess.run(
        ["coqc", "-q", path.name], cwd=directory, capture_output=True, text=True, timeout=300
    )
    return done.returncode == 0, done.stdout + done.stderr, time.perf_counter() - start


def _batch(directory: Path, items: Sequence[tuple[str, str]]) -> tuple[bool, str]:
    """All of them in one file: one coqc run, the imports loaded once."""
    body = "".join(_theorem(f"t_{i}", s, p) for i, (s, p) in enumerate(items))
    ok, output, _ = _coqc(directory, "batch", body)
    return ok, output


def _separately(directory: Path, items: Sequence[tuple[str, str]]) -> list[tuple[bool, str, float]]:
    """One file per theorem, two coqc at a time (a failure stops only its own file)."""
    with ThreadPoolExecutor(2) as pool:
        return list(
            pool.map(
                lambda job: _coqc(directory, f"one_{job[0]}", _theorem("t", *job[1])),
                enumerate(items),
            )
        )


@needs_coq
def test_reference_theorems_compile(tmp_path: Path) -> None:
    refs = MathGenerator("coq").reference_theorems(np.random.default_rng(0))
    body = "".join(
        _theorem(r.payload["name"], r.payload["statement"], r.payload["proof"]) for r in refs
    )
    ok, output, _ = _coqc(tmp_path, "references", body)
    assert ok, output[-2000:]


@needs_coq
def test_every_correct_template_proves_its_family(tmp_path: Path) -> None:
    """Every family, at every level, with each of its correct Coq templates."""
    rng = np.random.default_rng(12)
    items = []
    for family in FAMILIES:
        for d in family.levels:
            built = family.build(rng, d)
            statement = render_statement(built.theorem, "coq")
            items += [(statement, script) for _, script in family.tactics(built, "coq", False)]
    assert len(items) >= 300
    ok, output = _batch(tmp_path, items)
    assert ok, output[-2000:]


@needs_coq
def test_children_agree_with_brute_force(tmp_path: Path) -> None:
    """Of 100 children: the true, unmutated ones with a correct template are proved (together,
    in one file); no brute-force-false one is (each alone)."""
    kids = children(100, seed=13)
    expected, refuted = [], []
    for child in kids:
        job = (child.payload["statement"], child.payload["proof"])
        family = family_by_name(child.payload["family"])
        if not is_plausibly_true(child.theorem):
            refuted.append(job)
        elif not child.payload["mutation"] and child.payload["tactic"] not in family.wrong:
            expected.append(job)
    assert len(expected) >= 40 and len(refuted) >= 15
    ok, output = _batch(tmp_path, expected)
    assert ok, output[-2000:]
    results = _separately(tmp_path, refuted)
    proved = [job for job, (ok, _, _) in zip(refuted, results, strict=True) if ok]
    assert not proved, proved
    assert all("Error" in output for _, output, _ in results)


@pytest.mark.slow
@needs_coq
def test_acceptance_of_default_children(tmp_path: Path) -> None:
    """Measured: the share of 300 default children the domain's warm Coq checker accepts
    (the production checker: header, sentences, Qed, Print Assumptions), and its time."""
    from foundry.simulators.coq import CoqChecker

    kids = children(300, seed=14)
    checker = CoqChecker()
    accepted, seconds = [], []
    try:
        for c in kids:
            start = time.perf_counter()
            report = checker.check(c.payload["statement"], c.payload["proof"], COQ_IMPORTS)
            seconds.append(time.perf_counter() - start)
            assert report.status in ("proved", "failed"), (c.payload, report)
            accepted.append(report.status == "proved")
    finally:
        checker.close()
    share = sum(accepted) / len(accepted)
    print(
        f"\naccepted {share:.3f} of {len(kids)}; warm check median "
        f"{statistics.median(seconds):.3f} s, max {max(seconds):.3f} s"
    )
    assert 0.45 <= share <= 0.8
    for child, ok in zip(kids, accepted, strict=True):
        if ok:
            assert is_plausibly_true(child.theorem), child.payload
        family = family_by_name(child.payload["family"])
        if not child.payload["mutation"] and child.payload["tactic"] not in family.wrong:
            assert ok, child.payload
