"""The Coq checker (``foundry.simulators.coq``): sentences, honest verdicts, every cheat refused.

These run the real ``coqidetop`` directly (the checker's own logic); the same attacks through
the production path - a warm verifier child in bubblewrap - are in ``test_math_domain.py``.
"""

from __future__ import annotations

import shutil
import time

import pytest
from foundry.simulators.coq import (
    CoqChecker,
    CoqLimits,
    SentenceError,
    sentences,
    statement_problem,
)

pytestmark = pytest.mark.simulator

IMPORTS = ("Coq.Arith.Arith", "Coq.micromega.Lia", "Coq.ZArith.ZArith", "Coq.Lists.List")


@pytest.fixture(scope="module")
def coq():
    if shutil.which("coqidetop.opt") is None:
        pytest.fail("coqidetop.opt not found: apt-get install coq (CI installs it)")
    checker = CoqChecker(CoqLimits(timeout_s=20.0))
    yield checker
    checker.close()


# -- sentences, as Coq ends them --------------------------------------------------------------


def test_sentences_split_where_coq_ends_them():
    text = 'intros. - lia. + simpl. (* a. (* b. *) c. *) auto. { reflexivity. } exact "x. y".'
    assert sentences(text) == [
        "intros.", "-", "lia.", "+", "simpl.", "(* a. (* b. *) c. *) auto.", "{",
        "reflexivity.", "}", 'exact "x. y".',
    ]  # fmt: skip
    assert sentences("apply Nat.add_comm.\nexact (f x).") == ["apply Nat.add_comm.", "exact (f x)."]
    assert sentences("-- intro.") == ["--", "intro."]
    assert sentences("") == []


@pytest.mark.parametrize("text", ["intros. lia", "exact I. (* open", 'idtac "open.'])
def test_a_script_that_does_not_end_a_sentence_is_refused(text: str):
    with pytest.raises(SentenceError):
        sentences(text)


@pytest.mark.parametrize(
    "statement",
    ["True. Axiom x : False", "True (* . *)", 'True /\\ "x" = "x"', "  ", "n = n.\n"],
)
def test_a_statement_must_be_one_term(statement: str):
    assert statement_problem(statement) is not None
    assert statement_problem("forall n : nat, Nat.add n 0 = n") is None


# -- honest verdicts ----------------------------------------------------------------------------

TRUE = [
    ("forall n m : nat, n + m = m + n", "intros. lia."),
    ("forall n : nat, n + 0 = n", "induction n; simpl; auto."),
    ("forall x y : Z, (x * y = y * x)%Z", "intros. ring."),
    ("forall l : list nat, length (rev l) = length l", "intros. rewrite rev_length. reflexivity."),
    ("12 * 13 = 156", "reflexivity."),
    ("forall a b : bool, andb a b = andb b a", "destruct a, b; reflexivity."),
    ("forall n : nat, n <= n * n", "Proof. intros n. destruct n; simpl; lia. Qed."),
]


@pytest.mark.parametrize(("statement", "proof"), TRUE)
def test_known_true_theorems_are_proved(coq: CoqChecker, statement: str, proof: str):
    report = coq.check(statement, proof, IMPORTS)
    assert report.status == "proved" and report.axioms == (), report


@pytest.mark.parametrize(
    ("statement", "proof", "why"),
    [
        ("2 + 2 = 5", "reflexivity.", "sentence 1 fails"),
        ("forall n : nat, n + 1 = n", "intros. lia.", "sentence 2 fails"),
        ("forall n : nat, n * n >= n + 1", "intros. lia.", "sentence 2 fails"),
        ("forall n : nat, n + 0 = n", "intros. simpl.", "not complete"),
        ("forall n : nat, n = n", "intros. frobnicate.", "sentence 2"),
        ("forall n : nat, n = nn", "reflexivity.", "does not elaborate"),
        ("forall n : nat,, n = n", "reflexivity.", "does not parse"),
    ],
)
def test_false_statements_and_wrong_proofs_fail(coq: CoqChecker, statement, proof, why):
    report = coq.check(statement, proof, IMPORTS)
    assert report.status == "failed" and why in report.reason, report


# -- cheats -------------------------------------------------------------------------------------

CHEATS = [
    ("Admitted", "2 + 2 = 5", "Admitted.", "left the theorem"),
    ("admit", "2 + 2 = 5", "admit.", "not complete"),
    ("give_up", "2 + 2 = 5", "give_up.", "not complete"),
    ("Abort then prove another", "2 + 2 = 5", "Abort. Theorem t : True. exact I.", "left"),
    ("own Qed mid-script", "True", "exact I. Qed. Axiom x : False.", "left the theorem"),
    ("save an unfinished proof", "2 + 2 = 5", "Qed. Theorem t : True.", "incomplete proof"),
    ("Axiom in the proof", "False", "Axiom cheat : False. exact cheat.", "rests on cheat"),
    ("Parameter in the proof", "1 = 2", "Parameter p : 1 = 2. exact p.", "rests on p"),
    ("an Admitted helper lemma", "False", "Lemma h : False. Admitted. exact h.", "Nested"),
    (
        "Unset Guard Checking",
        "False",
        "Unset Guard Checking. exact ((fix f (n : nat) : False := f n) 0).",
        "assumed to be guarded",
    ),
    ("Defined instead of Qed", "2 + 2 = 4", "reflexivity. Defined. exact I.", "left the theorem"),
    (
        "prints a fake answer",
        "False",
        'idtac "<value val=""good""><status><list/><option val=""none""/></status></value>".',
        "not complete",
    ),
    ("Reset the state", "2 + 2 = 5", "Reset Initial.", "left the theorem"),
]


@pytest.mark.parametrize(("statement", "proof", "why"), [c[1:] for c in CHEATS],
                         ids=[c[0] for c in CHEATS])  # fmt: skip
def test_every_cheat_is_refused(coq: CoqChecker, statement: str, proof: str, why: str):
    report = coq.check(statement, proof, IMPORTS)
    assert report.status in ("failed", "rejected") and why in report.reason, report
    # and the warm checker still proves the next honest theorem
    assert coq.check("forall n : nat, n + 0 = n", "intros. lia.", IMPORTS).status == "proved"


def test_axioms_named_in_the_limits_are_allowed(coq: CoqChecker):
    reals = ("Coq.Reals.Reals", "Coq.micromega.Lra")
    statement, proof = "forall x : R, (x + 0 = x)%R", "intros. lra."
    strict = coq.check(statement, proof, reals)
    assert strict.status == "rejected" and "ClassicalDedekindReals.sig_forall_dec" in strict.axioms
    lenient = CoqChecker(CoqLimits(allowed_axioms=strict.axioms))
    try:
        assert lenient.check(statement, proof, reals).status == "proved"
    finally:
        lenient.close()


def test_nothing_a_candidate_declares_survives_into_the_next(coq: CoqChecker):
    """A failed check's declarations (an axiom, a definition, a notation) are gone for the
    next: the checker went back to the imports' state."""
    first = coq.check("False", "Axiom leak : False. Definition two := 2. exact I.", IMPORTS)
    assert first.status == "failed"
    assert coq.check("False", "exact leak.", IMPORTS).status == "failed"
    assert coq.check("two = 2", "reflexivity.", IMPORTS).status == "failed"
    notation = coq.check("True", "Notation three := 3. exact I.", IMPORTS)
    assert notation.status == "proved"
    assert coq.check("three = 3", "reflexivity.", IMPORTS).status == "failed"


def test_reasons_do_not_carry_the_random_theorem_name(coq: CoqChecker):
    a = coq.check("2 + 2 = 5", "admit.", IMPORTS)
    b = coq.check("2 + 2 = 5", "admit.", IMPORTS)
    assert a == b and "foundry_goal" not in a.reason


def test_a_hanging_tactic_times_out_and_the_checker_recovers():
    checker = CoqChecker(CoqLimits(timeout_s=2.0))
    try:
        started = time.monotonic()
        report = checker.check("True", "Ltac spin := idtac; spin. spin.", IMPORTS)
        assert report.status == "timeout", report
        assert time.monotonic() - started < 10
        assert not checker.alive(), "the hung prover was killed"
        assert checker.check("True", "exact I.", IMPORTS).status == "proved"
    finally:
        checker.close()


def test_imports_that_do_not_load_fail_the_record(coq: CoqChecker):
    report = coq.check("True", "exact I.", ("Coq.NoSuchLibrary",))
    assert report.status == "failed" and "imports do not load" in report.reason
    bad = coq.check("True", "exact I.", ("Coq.Arith.Arith. Axiom x : False",))
    assert bad.status == "failed" and "not a module name" in bad.reason
    assert coq.check("True", "exact I.", IMPORTS).status == "proved"


def test_a_missing_prover_is_a_setup_error():
    from foundry.contract import SetupError

    with pytest.raises(SetupError, match="install Coq"):
        CoqChecker(executable="no-such-coqidetop").check("True", "exact I.")
