"""The code domain: record formats, the rule layer, identity, slices, the reservoir, the
surrogate, the conformance suite and ``foundry verify`` on both formats.

The sandbox's security is tested in ``test_code_sandbox.py``; the generator in
``test_code_generator.py``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from foundry.domains.code import CodeDomain, CodeOptions
from foundry.domains.code.reservoir import PROVENANCE
from foundry.domains.code.surrogate import ProgramMemorySurrogate, fit_concentration, program_key
from foundry.domains.code.tasks import identity_key, task_of

from foundry.cli import main
from foundry.contract import Candidate, Verdict, canonical_json, example_id
from foundry.testing import check_domain

ADD = {
    "task_id": "demo/add",
    "prompt": 'def add(a, b):\n    """The sum of a and b."""\n',
    "entry_point": "add",
    "completion": "    return a + b\n",
    "test": "def check(candidate):\n"
    "    assert candidate(1, 2) == 3\n"
    "    assert candidate(-1, 1) == 0\n",
}
# MBPP task 2, as the dataset ships it (Austin et al. 2021, arXiv:2108.07732)
SIMILAR = {
    "task_id": 2,
    "text": "Write a function to find the similar elements from the given two tuple lists.",
    "code": "def similar_elements(test_tup1, test_tup2):\r\n  res = tuple(set(test_tup1) & "
    "set(test_tup2))\r\n  return (res) ",
    "test_list": [
        "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
        "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
        "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
    ],
    "test_setup_code": "",
    "challenge_test_list": [],
}


# -- formats ---------------------------------------------------------------------------------


def test_a_humaneval_record_is_prompt_plus_completion_checked_by_check():
    task = task_of(ADD)
    assert task.style == "humaneval" and task.entry_point == "add"
    assert task.program == ADD["prompt"] + ADD["completion"]
    assert task.setup == ADD["test"] and [t.source for t in task.tests] == ["check(add)"]
    canonical = {k: v for k, v in ADD.items() if k != "completion"}
    canonical["canonical_solution"] = "    return b + a\n"
    assert task_of(canonical).program.endswith("return b + a\n")
    both = {**ADD, "canonical_solution": "    return 0\n"}
    assert task_of(both).program.endswith("return a + b\n"), "the completion is the candidate"


def test_an_mbpp_record_runs_each_assert_as_a_test():
    task = task_of(SIMILAR)
    assert task.style == "mbpp" and task.program == SIMILAR["code"] and task.setup == ""
    assert [t.name for t in task.tests] == ["test 1", "test 2", "test 3"]
    assert task.entry_point == "similar_elements"


def test_an_mbpp_entry_point_is_never_a_builtin_the_program_redefines():
    record = {
        "code": "def set(x):\n    return x\ndef common(a, b):\n    return a\n",
        "test_list": ["assert set(common((1,), (1,))) == {1}"],
    }
    assert task_of(record).entry_point == "common"


def test_metadata_does_not_change_the_example():
    domain = CodeDomain()
    again = {**ADD, "task_id": "another/name", "model": "some-model", "temperature": 0.2}
    assert identity_key(again) == identity_key(ADD)
    ids = [example_id("code", p, canonical_json(p), domain.identity) for p in (ADD, again)]
    assert ids[0] == ids[1]
    other = {**ADD, "completion": "    return a - b\n"}
    assert identity_key(other) != identity_key(ADD)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"completion": "    return a +\n"}, "does not parse"),
        ({"completion": "    return a\x00\n"}, "NUL"),
        ({"test": "def verify(candidate):\n    assert True\n"}, "no check(candidate)"),
        ({"completion": "    import socket\n    return a + b\n"}, "'socket' is not allowed"),
        ({"completion": "    import numpy\n    return a + b\n"}, "not in the standard library"),
        ({"completion": "    from . import x\n    return x\n"}, "relative imports"),
        ({"completion": "    " + "x = 1\n    " * 30_000 + "return a\n"}, "max_program_chars"),
        ({"time_limit_s": -1}, "time_limit_s"),
        ({"entry_point": None}, "entry_point"),
    ],
)
def test_the_rule_layer_says_why(change, reason):
    record = {k: v for k, v in {**ADD, **change}.items() if v is not None}
    problem = CodeDomain().check(Candidate(record))
    assert problem is not None and reason in problem, problem


def test_the_rule_layer_names_missing_fields_in_words():
    domain = CodeDomain()
    assert "needs entry_point, test" in domain.check(Candidate({"prompt": "def f(): pass"}))
    assert "needs test_list" in domain.check(Candidate({"code": "x = 1"}))
    assert "not a HumanEval-style" in domain.check(Candidate({"smiles": "CCO"}))


def test_the_import_policy_is_an_option():
    record = Candidate({**ADD, "completion": "    import json\n    return a + b\n"})
    assert CodeDomain().check(record) is None
    assert "imports 'none'" in CodeDomain(CodeOptions(imports="none")).check(record)
    numpy_record = Candidate({**ADD, "completion": "    import numpy\n    return a + b\n"})
    assert CodeDomain(CodeOptions(imports="any")).check(numpy_record) is None
    with pytest.raises(ValueError, match="imports must be"):
        CodeOptions(imports="some")


def test_slices_are_task_groups_or_the_record_format():
    domain = CodeDomain()
    generated = domain.generate(40, np.random.default_rng(0), domain.steering_defaults)
    assert {domain.slice_of(c) for c in generated} <= {"arithmetic", "strings", "lists", "dicts"}
    assert domain.slice_of(Candidate(ADD)) == "humaneval"
    assert domain.slice_of(Candidate(SIMILAR)) == "mbpp"
    assert set(CodeDomain.slices or ()) >= {domain.slice_of(c) for c in generated}


def test_generated_tasks_name_reference_parents_that_exist():
    domain = CodeDomain()
    parents = set(domain._references().values())
    children = domain.generate(60, np.random.default_rng(3), domain.steering_defaults)
    assert all(len(c.parent_ids) == 1 and c.parent_ids[0] in parents for c in children)
    assert all(domain.check(c) is None for c in children)


# -- the reservoir -----------------------------------------------------------------------------


def test_the_reservoir_is_humaneval_and_every_canonical_solution_passes_in_the_sandbox():
    from foundry.execution.host import ChildHost
    from foundry.execution.spec import VerifierSpec

    domain = CodeDomain()
    real = domain.reservoir()
    assert len(real) == 164 and all(c.source == "real" for c in real)
    assert real[0].payload["task_id"] == "HumanEval/0" and real[0].payload["source"] == PROVENANCE
    assert len({c.id for c in real}) == 164 and all(domain.check(c) is None for c in real)
    gt = domain.ground_truth()
    spec = VerifierSpec("foundry.domains.code:CodeDomain", "{}", None, gt.resources, "bwrap")
    host = ChildHost(spec)
    try:
        results = host.verify_many(list(enumerate(real)))
    finally:
        host.close()
    failed = [
        real[r.key].payload["task_id"] for r in results if not (r.verdict and r.verdict.passed)
    ]
    assert failed == []


# -- the surrogate -----------------------------------------------------------------------------


def test_the_prior_concentration_is_recovered_from_beta_binomial_records():
    """500 programs, 12 labels each, pass rates from Beta(a, b): the fitted a + b lands near
    the truth for a bimodal (0.5) and a concentrated (20) population (fixed seeds; the
    bounds are wide enough for sampling noise at this size, narrow enough to tell apart)."""
    rng = np.random.default_rng(11)
    for (a, b), (lo, hi) in (((0.3, 0.2), (0.3, 0.9)), ((12.0, 8.0), (10.0, 45.0))):
        rates = rng.beta(a, b, size=500)
        records = [(12, int(rng.binomial(12, r))) for r in rates]
        fitted = fit_concentration(records)
        assert fitted is not None and lo < fitted < hi, (a + b, fitted)
    assert fit_concentration([(3, 3)] * 5) is None  # too few programs to fit


def _verdict(passed: bool) -> Verdict:
    return Verdict(passed=passed, reason="pass" if passed else "fail")


def test_the_surrogate_remembers_programs_and_ignores_their_spacing():
    domain = CodeDomain()
    right = Candidate(ADD)
    wrong = Candidate({**ADD, "completion": "    return a - b\n"})
    spaced = Candidate({**ADD, "completion": "    return (a+b)   # the sum\n"})
    assert program_key(spaced) == program_key(right) != program_key(wrong)
    others = domain.generate(300, np.random.default_rng(5), domain.steering_defaults)
    train = [right] * 30 + [wrong] * 30 + others
    labels = [_verdict(True)] * 30 + [_verdict(False)] * 30
    labels += [_verdict(not c.payload["mutation"]) for c in others]
    model = ProgramMemorySurrogate(n_members=2)
    model.fit(train, labels)
    p = model.predict([right, wrong, spaced]).p_pass
    assert p[0] > 0.97 and p[2] > 0.97 and p[1] < 0.03, p


# -- the whole domain ------------------------------------------------------------------------


def test_the_domain_passes_the_conformance_suite():
    check_domain(CodeDomain(CodeOptions(timeout_s=5.0)), n=8)


def test_verify_answers_every_line_of_both_formats(tmp_path: Path):
    lines = [
        json.dumps({**ADD, "model": "m1"}),  # 1: passes
        json.dumps({**ADD, "task_id": "demo/wrong", "completion": "    return a - b\n"}),  # 2
        json.dumps(SIMILAR),  # 3: MBPP, passes
        json.dumps({**SIMILAR, "code": "def similar_elements(a, b):\n  return tuple(a)\n"}),  # 4
        json.dumps({**ADD, "task_id": "demo/again", "model": "m2"}),  # 5: line 1 again
        json.dumps({**ADD, "completion": "    return a +\n"}),  # 6: does not parse
        "not json",  # 7
        json.dumps({**ADD, "completion": "    while True:\n        pass\n", "time_limit_s": 0.5}),
    ]
    inp = tmp_path / "tasks.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    run_dir = tmp_path / "v"
    code = main(["verify", str(inp), "--domain", "code", "--run-dir", str(run_dir),
                 "--n-workers", "2", "--no-progress"])  # fmt: skip
    assert code == 0
    verdicts = [json.loads(x) for x in (run_dir / "verdicts.jsonl").read_text().splitlines()]
    by_line = {v["line"]: v for v in verdicts}
    assert sorted(by_line) == list(range(1, 9))
    for line in (1, 3):
        assert by_line[line]["decision"] == "accepted", by_line[line]
        assert by_line[line]["gt_reason"].startswith("pass:")
    assert by_line[2]["decision"] == "rejected"
    assert "assert candidate(1, 2) == 3" in by_line[2]["gt_reason"]
    assert "add returned -1" in by_line[2]["gt_reason"]
    assert by_line[4]["decision"] == "rejected" and "test 1 failed" in by_line[4]["gt_reason"]
    assert by_line[5]["decision"] == "duplicate" and by_line[5]["duplicate_of"] == 1
    assert by_line[6]["decision"] == "invalid" and "does not parse" in by_line[6]["reason"]
    assert by_line[7]["decision"] == "invalid"
    assert by_line[8]["decision"] == "rejected" and by_line[8]["gt_reason"].startswith("timeout:")
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    try:
        (payload,) = db.execute("SELECT payload FROM examples WHERE input_line = 1").fetchone()
    finally:
        db.close()
    assert json.loads(payload)["model"] == "m1", "other fields are kept with the example"
