"""The math domain: records, the rule layer, identity, slices, the reservoir, the conformance
suite, cheats through the production path (a warm verifier child in bubblewrap) and
``foundry verify`` on a file of records.

The Coq checker's own logic is tested in ``test_math_coq.py``, the Lean backend in
``test_math_lean.py``, the generator in ``test_math_generator.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from foundry.domains.math import MathDomain, MathOptions
from foundry.domains.math.records import identity_key, obligation_of
from foundry.domains.math.reservoir import PROVENANCE

from foundry.cli import main
from foundry.contract import Candidate, Verdict
from foundry.execution.host import ChildHost
from foundry.execution.spec import VerifierSpec
from foundry.testing import check_domain

pytestmark = pytest.mark.simulator

IMPORTS = ["Coq.Arith.Arith", "Coq.micromega.Lia"]


def coq(statement: str, proof: str, imports: list[str] | None = None, **extra) -> dict:
    return {"backend": "coq", "statement": statement, "proof": proof,
            "imports": IMPORTS if imports is None else imports, **extra}  # fmt: skip


# -- records and the rule layer -------------------------------------------------------------------


def test_a_record_names_what_it_lacks_in_words():
    with pytest.raises(ValueError, match="no statement / proof field"):
        obligation_of({"backend": "coq"})
    with pytest.raises(ValueError, match="backend must be one of coq, lean4"):
        obligation_of({"backend": "isabelle", "statement": "x", "proof": "y"})
    job = obligation_of(coq("True", "exact I."))
    assert job.imports == tuple(IMPORTS) and job.backend == "coq"


def test_metadata_does_not_change_the_example():
    a = coq("True", "exact I.", name="a", model="m1")
    b = coq("True", "exact I.\n", name="b")
    assert identity_key(a) == identity_key(b)
    assert identity_key(a) != identity_key(coq("True", "exact I.", imports=[]))
    domain = MathDomain()
    assert domain._example_id(a) == domain._example_id(b)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"statement": "True. Axiom cheat : False"}, "one term"),
        ({"statement": "True (* x *)"}, "comment"),
        ({"proof": "exact I"}, "does not end with a period"),
        ({"proof": "   "}, "the proof is empty"),
        ({"proof": "exact I. (* open"}, "unterminated comment"),
        ({"proof": 'Load "evil". exact I.'}, "'Load'"),
        ({"proof": 'Cd "/". exact I.'}, "'Cd'"),
        ({"proof": 'Redirect "out" Print nat. exact I.'}, "'Redirect'"),
        ({"proof": 'Declare   ML Module "x". exact I.'}, "'Declare ML Module'"),
        ({"proof": "Unset Guard Checking. exact I."}, "'Unset Guard Checking'"),
        ({"proof": "native_compute. exact I."}, "'native_compute'"),
        ({"proof": "timeout 1 auto."}, "'timeout'"),
        ({"imports": ["Coq.Arith.Arith. Axiom x : False"]}, "not a module name"),
        ({"statement": "True\x00"}, "NUL"),
        ({"statement": "x" * 5000}, "max_statement_chars"),
    ],
)
def test_the_rule_layer_says_why(change: dict, reason: str):
    record = {**coq("True", "exact I."), **change}
    problem = MathDomain().check(Candidate(record))
    assert problem is not None and reason in problem, problem


def test_the_rule_layer_passes_honest_records_of_both_backends():
    domain = MathDomain()
    assert domain.check(Candidate(coq("forall n : nat, n + 0 = n", "intros. lia."))) is None
    lean = {"backend": "lean4", "statement": "∀ n : Nat, n + 0 = n", "proof": "intro n\nsimp"}
    assert domain.check(Candidate(lean)) is None
    native = {**lean, "proof": "native_decide"}
    assert "trusts the compiler" in domain.check(Candidate(native))
    lenient = MathDomain(MathOptions(allow_native_decide=True))
    assert lenient.check(Candidate(native)) is None


def test_slices_are_theorem_groups_or_the_backend():
    domain = MathDomain()
    generated = domain.generate(40, np.random.default_rng(0), domain.steering_defaults)
    assert {domain.slice_of(c) for c in generated} <= set(domain.slices)
    assert domain.slice_of(Candidate(coq("True", "exact I."))) == "coq"
    assert domain.slice_of(Candidate({**coq("True", "exact I."), "backend": "lean4"})) == "lean4"


def test_generated_theorems_name_reference_parents_that_exist():
    domain = MathDomain()
    children = domain.generate(60, np.random.default_rng(3), domain.steering_defaults)
    parents = set(domain._references().values())
    assert all(len(c.parent_ids) == 1 and c.parent_ids[0] in parents for c in children)
    assert all(domain.check(c) is None for c in children)


# -- features and the surrogate --------------------------------------------------------------------


def test_the_ir_round_trips_and_a_hostile_ir_is_refused():
    from foundry.domains.math.ir_json import theorem_from_json, theorem_to_json

    domain = MathDomain()
    for cand in domain.generate(200, np.random.default_rng(4), domain.steering_defaults):
        thm = theorem_from_json(json.loads(json.dumps(cand.payload["ir"])))
        assert theorem_to_json(thm) == cand.payload["ir"]
    bad = [
        None,
        {"variables": [["n", "real"]], "hypotheses": [], "conclusion": ["nil"]},
        {"variables": [], "hypotheses": [], "conclusion": ["cmp", "=", ["lit", True, "nat"],
                                                          ["lit", 1, "nat"]]},
        {"variables": [], "hypotheses": [], "conclusion": ["eval", "os.system"]},
        {"variables": [["n", "nat"]], "hypotheses": [], "conclusion": ["cmp", "=", ["var", "m",
                                                         "nat"], ["lit", 1, "nat"]]},
    ]  # fmt: skip
    deep: list = ["cmp", "=", ["nil"], ["nil"]]
    for _ in range(1000):
        deep = ["not", deep]
    bad.append({"variables": [], "hypotheses": [], "conclusion": deep})
    for data in bad:
        with pytest.raises(ValueError):
            theorem_from_json(data)


def test_the_search_feature_reads_only_an_ir_that_is_its_statement():
    """A false generated statement is flagged by the brute-force search; an ``ir`` that does
    not render to the record's statement (edited, or another theorem's) is ignored."""
    from foundry.domains.math.features import math_features

    domain = MathDomain()
    cands = domain.generate(300, np.random.default_rng(9), {"false_fraction": 1.0})
    x = math_features(cands)
    assert x[:, -3].all(), "every generated candidate's ir is usable"
    assert x[:, -2].mean() > 0.7, "most mutants are refuted by the search"
    true_one = next(c for c, row in zip(cands, x, strict=True) if row[-1] == 1.0)
    false_one = next(c for c, row in zip(cands, x, strict=True) if row[-2] == 1.0)
    forged = Candidate({**false_one.payload, "ir": true_one.payload["ir"]})
    assert list(math_features([forged])[0, -3:]) == [0.0, 0.0, 0.0]
    record = Candidate(coq("forall n : nat, n + 1 = n", "intros. lia."))
    assert list(math_features([record])[0, -3:]) == [0.0, 0.0, 0.0]


@pytest.mark.slow
def test_the_surrogate_ranks_proofs_by_what_coq_says():
    """Labels from the real checker for 900 generated candidates (default steering); trained
    on 600, the surrogate separates the other 300 (AUC > 0.97) and is confident and right on
    a good share of them - what certified release needs (measured: AUC 0.999, half accepted
    at risk < 1 % with no error, on 3,000 labels)."""
    from foundry.simulators.coq import CoqChecker

    domain = MathDomain()
    cands = domain.generate(900, np.random.default_rng(21), domain.steering_defaults)
    checker = CoqChecker()
    try:
        labels = np.array(
            [
                checker.check(c.payload["statement"], c.payload["proof"],
                              tuple(c.payload["imports"])).status == "proved"
                for c in cands
            ]
        )  # fmt: skip
    finally:
        checker.close()
    model = domain.surrogate()
    model.fit(cands[:600], [Verdict(bool(v)) for v in labels[:600]])
    p = model.predict(cands[600:]).p_pass
    test = labels[600:]
    pos, neg = p[test], p[~test]
    auc = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auc > 0.97, auc
    confident = (p > 0.99) | (p < 0.01)
    assert confident.mean() > 0.3, confident.mean()
    assert ((p[confident] > 0.5) == test[confident]).mean() > 0.97


# -- the production path: a warm verifier child in bubblewrap ------------------------------------


@pytest.fixture(scope="module")
def host():
    options = {"timeout_s": 20.0}
    gt = MathDomain(MathOptions(**options)).ground_truth()
    spec = VerifierSpec(
        "foundry.domains.math:MathDomain",
        json.dumps(options),
        None,
        gt.resources,
        "bwrap",
        sandbox_paths=gt.sandbox_paths,
        pass_env=gt.pass_env,
    )
    h = ChildHost(spec)
    yield h
    h.close()


def verdicts_of(host: ChildHost, *records: dict) -> list[Verdict]:
    results = host.verify_many([(i, Candidate(r)) for i, r in enumerate(records)])
    out = []
    for r in results:
        assert r.verdict is not None, f"no verdict: {r.failure_kind} {r.error}"
        out.append(r.verdict)
    return out


def test_cheats_are_refused_in_the_sandbox_and_the_warm_checker_lives_on(host: ChildHost):
    honest = coq("forall n m : nat, n + m = m + n", "intros. lia.")
    cheats = [
        coq("2 + 2 = 5", "Admitted."),
        coq("2 + 2 = 5", "admit."),
        coq("False", "Axiom cheat : False. exact cheat."),
        coq("2 + 2 = 5", "Abort. Theorem t : True. exact I."),
        coq("False", "Unset Guard Checking. exact ((fix f (n : nat) : False := f n) 0)."),
        coq("False", 'idtac "<value val=""good""/>". exact I.'),
    ]
    got = verdicts_of(host, honest, *cheats, honest)
    assert got[0].passed and got[-1].passed, (got[0].reason, got[-1].reason)
    for record, verdict in zip(cheats, got[1:-1], strict=True):
        assert not verdict.passed, (record["proof"], verdict.reason)
    assert host.restarts == 0, "a cheat cost the warm checker its process"


def test_file_commands_cannot_reach_the_host(host: ChildHost, tmp_path: Path):
    """Past the rule layer (the host checks whatever it is given), ``Redirect`` and ``Cd``
    run inside the sandbox: the system is read-only there and the host's files are not
    visible; the proof's verdict is still Coq's."""
    target = tmp_path / "escaped"
    (verdict,) = verdicts_of(host, coq("True", f'Redirect "{target}" Print nat. Cd "/". exact I.'))
    assert not target.exists() and not Path(str(target) + ".out").exists()
    assert not verdict.passed or verdict.reason.startswith("proved")


def test_the_reservoir_is_minif2f_and_judged_like_any_record(host: ChildHost):
    domain = MathDomain()
    real = domain.reservoir()
    assert len(real) == 12 and all(c.source == "real" for c in real)
    assert all(PROVENANCE and c.payload["source"].startswith("itp-interface") for c in real)
    assert len({c.id for c in real}) == 12 and all(domain.check(c) is None for c in real)
    got = verdicts_of(host, *[c.payload for c in real])
    proved = {c.payload["name"] for c, v in zip(real, got, strict=True) if v.passed}
    # the four files whose proofs end in Qed and check with Coq 8.16's library; the rest end
    # in Admitted or do not elaborate (as the files do with coqc)
    assert proved == {
        "mathd_algebra_44", "mathd_algebra_141", "mathd_algebra_478", "mathd_numbertheory_207"
    }  # fmt: skip


# -- the whole domain ------------------------------------------------------------------------------


def test_the_domain_passes_the_conformance_suite():
    check_domain(MathDomain(MathOptions(timeout_s=20.0)), n=8)


def test_verify_answers_every_line(tmp_path: Path):
    lines = [
        json.dumps(coq("forall n : nat, n + 0 = n", "induction n; simpl; auto.", name="a")),
        json.dumps(coq("forall n : nat, n + 1 = n", "intros. lia.")),  # 2: false
        json.dumps(coq("2 + 2 = 5", "Admitted.")),  # 3: cheat
        json.dumps(coq("forall n : nat, n + 0 = n", "induction n; simpl; auto.", name="b")),
        json.dumps(coq("True. Axiom x : False", "exact I.")),  # 5: statement injection
        "not json",  # 6
        json.dumps({"backend": "coq", "proof": "exact I."}),  # 7: no statement
        json.dumps(coq("True", "Proof.\n  exact I.\nQed.")),  # 8: Proof./Qed. of its own
    ]
    inp = tmp_path / "proofs.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    run_dir = tmp_path / "v"
    code = main(["verify", str(inp), "--domain", "math", "--run-dir", str(run_dir),
                 "--n-workers", "1", "--no-progress"])  # fmt: skip
    assert code == 0
    verdicts = [json.loads(x) for x in (run_dir / "verdicts.jsonl").read_text().splitlines()]
    by_line = {v["line"]: v for v in verdicts}
    assert sorted(by_line) == list(range(1, 9))
    assert by_line[1]["decision"] == "accepted" and by_line[1]["gt_reason"].startswith("proved")
    assert by_line[2]["decision"] == "rejected" and "failed" in by_line[2]["gt_reason"]
    assert by_line[3]["decision"] == "rejected" and "left the theorem" in by_line[3]["gt_reason"]
    assert by_line[4]["decision"] == "duplicate" and by_line[4]["duplicate_of"] == 1
    assert by_line[5]["decision"] == "invalid" and "one term" in by_line[5]["reason"]
    assert by_line[6]["decision"] == "invalid"
    assert by_line[7]["decision"] == "invalid" and "statement" in by_line[7]["reason"]
    assert by_line[8]["decision"] == "accepted", by_line[8]
    assert os.path.exists(run_dir / "ledger.sqlite")
