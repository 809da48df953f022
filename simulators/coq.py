"""A warm Coq checker that decides from Coq's own answers, not from what a proof prints.

It drives ``coqidetop`` - the process CoqIDE talks to - over its XML protocol: every answer
is a structured ``<value val="good|fail">`` element, and whatever a proof prints (``idtac``,
``Print``, ``Show``) arrives escaped inside a message element, so it can never pose as an
answer. The checker, not the candidate, writes the theorem:

1. ``Theorem <name> : <statement>.`` at the state where the imports are loaded. ``<name>`` is
   a fresh random identifier per check, so a proof cannot refer to it or re-declare it.
2. ``Proof.`` and the candidate's tactic script (a leading ``Proof.`` and a trailing ``Qed.``
   of its own dropped), one sentence at a time (split by :func:`sentences`, as CoqIDE
   splits them). After each sentence Coq's status must name
   ``<name>`` as the open proof: a script that ends, aborts or admits the theorem
   (``Qed``/``Admitted``/``Abort``/``Defined``), or opens another one, is rejected there.
3. ``Qed.`` - the kernel checks the whole proof term against the statement elaborated in
   step 1; a proof with given-up goals (``admit``) cannot be saved.
4. ``Print Assumptions <name>`` must say "Closed under the global context", or list only
   axioms the options allow (``Axiom``/``Parameter`` in the script, ``Admitted`` lemmas,
   ``Unset Guard Checking`` - "assumed to be guarded" - all show up here).
5. ``Edit_at`` back to the imports' state: nothing the candidate declared survives.

Scripts may still run vernacular commands inside the proof (``Cd``, ``Redirect``, ``Load``);
the domain's rule layer refuses the known ones and the sandbox the checker runs in (read-only
system, private work dir, no network) holds for the rest. Cost: ``Print Assumptions`` walks
every lemma the proof uses and Coq does not memoise it across calls - ~0.26 s for a ``lia``
proof (Micromega's reflection lemmas), ~0 s for ``simpl``/``induction`` proofs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape

from foundry.contract import SetupError

__all__ = [
    "SANDBOX_PATHS",
    "CoqChecker",
    "CoqLimits",
    "ProofReport",
    "SentenceError",
    "sentences",
    "statement_problem",
]

Status = Literal["proved", "failed", "rejected", "timeout", "error"]
#: what ``Print Assumptions`` says of a theorem that rests on nothing but the kernel
CLOSED = "Closed under the global context"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_']*(\.[A-Za-z_][A-Za-z0-9_']*)*\Z")
#: host files the prover reads besides its installation: findlib's configuration, through
#: which Coq finds its plugins (without it ``coqidetop`` dies at start-up in a sandbox)
SANDBOX_PATHS: tuple[str, ...] = ("/etc/ocamlfind.conf", "/etc/ocamlfind.conf.d")
#: answers larger than this are a hostile proof's doing (a goal printed for ever)
_MAX_ANSWER_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ProofReport:
    """What the checker found. ``failed``: Coq refused the statement or the proof;
    ``rejected``: it checks but cheats (an axiom, a proof that left the theorem);
    ``timeout``; ``error``: the harness could not decide (a record, never a label)."""

    status: Status
    reason: str
    axioms: tuple[str, ...] = ()
    sentences: int = 0


@dataclass(frozen=True)
class CoqLimits:
    """``timeout_s``: wall time of one check (statement, proof, ``Qed``, assumptions);
    ``memory_mb``: address space of the Coq process; ``allowed_axioms``: axioms a proof may
    rest on (fully qualified, as ``Print Assumptions`` names them)."""

    timeout_s: float = 30.0
    memory_mb: int = 4096
    allowed_axioms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.timeout_s > 0 or self.memory_mb < 256:
            raise ValueError("timeout_s must be > 0 and memory_mb >= 256")


class SentenceError(ValueError):
    """A script that cannot be split into sentences (an unterminated comment or string)."""


def sentences(text: str) -> list[str]:
    """Split a Coq script into sentences the way Coq's lexer ends them.

    A sentence ends at a ``.`` followed by white space or the end of the text, outside
    comments (nested) and strings (``""`` escapes a quote); a bullet (``-``, ``+``, ``*``,
    repeated) or a brace at the start of a sentence is a sentence by itself. A text that does
    not end where a sentence ends raises :class:`SentenceError`: Coq would wait for more."""
    out: list[str] = []
    i, n = 0, len(text)
    start = None
    while i < n:
        ch = text[i]
        if start is None:
            if ch.isspace():
                i += 1
                continue
            if ch in "-+*" and not text.startswith("*)", i):
                j = i
                while j < n and text[j] == ch:
                    j += 1
                out.append(text[i:j])
                i = j
                continue
            if ch in "{}":
                out.append(ch)
                i += 1
                continue
            start = i
        if text.startswith("(*", i):
            i = _skip_comment(text, i)
        elif ch == '"':
            i = _skip_string(text, i)
        elif ch == "." and text.startswith("..", i):
            i += 2
        elif ch == "." and (i + 1 == n or text[i + 1].isspace()):
            out.append(text[start : i + 1])
            start = None
            i += 1
        else:
            i += 1
    if start is not None and text[start:].strip():
        raise SentenceError("the script's last sentence does not end with a period")
    return out


def _skip_comment(text: str, i: int) -> int:
    depth, i = 0, i
    while i < len(text):
        if text.startswith("(*", i):
            depth += 1
            i += 2
        elif text.startswith("*)", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        elif text[i] == '"':
            i = _skip_string(text, i)
        else:
            i += 1
    raise SentenceError("unterminated comment")


def _skip_string(text: str, i: int) -> int:
    i += 1
    while i < len(text):
        if text[i] == '"':
            if text.startswith('""', i):
                i += 2
                continue
            return i + 1
        i += 1
    raise SentenceError("unterminated string")


def statement_problem(statement: str) -> str | None:
    """``None`` when ``statement`` can only be read as one term, else why not: it must not
    end a sentence (``.`` then space), open or close a comment, or hold a string - so that
    the header the checker writes around it is exactly one sentence for Coq and for us."""
    if not statement.strip():
        return "the statement is empty"
    if re.search(r"\.(\s|\Z)", statement):
        return "the statement ends a sentence ('.' followed by space): it must be one term"
    for bad, what in (("(*", "a comment"), ("*)", "a comment end"), ('"', "a string")):
        if bad in statement:
            return f"the statement contains {what} ({bad!r})"
    return None


def import_problem(name: str) -> str | None:
    """``None`` for a dotted module name (``Coq.micromega.Lia``), else why it is not one."""
    if not _IDENT.match(name):
        return f"import {name!r} is not a module name (letters, digits, '_', dots)"
    return None


class _CoqProcess:
    """One ``coqidetop`` and its XML stream; every read has a deadline."""

    def __init__(self, argv: list[str], memory_mb: int, cwd: str) -> None:
        def limit() -> None:
            import resource

            os.setsid()
            size = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

        # its stderr goes to a file, read only to say why it died (never for a verdict)
        self._stderr = tempfile.TemporaryFile(dir=cwd)  # noqa: SIM115 - lives with the process
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=cwd,
                preexec_fn=limit,  # only setsid and rlimits, before exec
            )
        except OSError as exc:
            raise SetupError(f"cannot start {argv[0]}: {exc}") from exc
        self._buffer = b""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def last_words(self) -> str:
        """The end of what the process wrote to stderr, for an error message."""
        with contextlib.suppress(OSError, ValueError):
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - 300))
            text = self._stderr.read().decode(errors="replace").strip()
            return f" ({' '.join(text.split())})" if text else ""
        return ""

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self._stderr):
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]

    def call(self, xml: str, deadline: float) -> tuple[ET.Element, list[ET.Element]]:
        """Send one call; return its ``<value>`` and the ``<feedback>`` before it."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(xml.encode())
        self.proc.stdin.flush()
        feedback: list[ET.Element] = []
        fd = self.proc.stdout.fileno()
        while True:
            element = self._next_element()
            if element is not None:
                if element.tag == "value":
                    return element, feedback
                if element.tag == "feedback":
                    feedback.append(element)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError(f"coqidetop closed its output{self.last_words()}")
            self._buffer += chunk
            if len(self._buffer) > _MAX_ANSWER_BYTES:
                raise OSError("coqidetop's answer is too large")

    def _next_element(self) -> ET.Element | None:
        """The next complete top-level element in the buffer, if there is one."""
        buf = self._buffer.lstrip()
        for tag in (b"value", b"feedback", b"message"):
            if buf.startswith(b"<" + tag):
                end = _element_end(buf, tag)
                if end < 0:
                    self._buffer = buf
                    return None
                raw, self._buffer = buf[:end], buf[end:]
                return ET.fromstring(raw.replace(b"&nbsp;", b"&#160;"))
        if buf:
            # anything else at top level is not the protocol: stop trusting the stream
            raise ValueError(f"unexpected output from coqidetop: {buf[:60]!r}")
        self._buffer = buf
        return None


def _element_end(buf: bytes, tag: bytes) -> int:
    """End offset of the element ``tag`` that starts ``buf`` (nesting counted), or -1."""
    depth, pos = 0, 0
    open_re = re.compile(rb"<(/?)" + tag + rb"(?=[\s>/])([^>]*)>")
    for match in open_re.finditer(buf, pos):
        closing, attrs = match.group(1), match.group(2)
        if closing:
            depth -= 1
        elif not attrs.endswith(b"/"):
            depth += 1
        else:
            if depth == 0:
                return match.end()
            continue
        if depth == 0:
            return match.end()
    return -1


def _text(element: ET.Element | None) -> str:
    """The plain text of a rich-printed message, spaces restored."""
    if element is None:
        return ""
    return "".join(element.itertext()).replace("\xa0", " ").strip()


def _add(sentence: str, state: int) -> str:
    return (
        '<call val="Add"><pair><pair><pair><pair>'
        f"<string>{escape(sentence)}</string><int>-1</int></pair>"
        f'<pair><state_id val="{state}"/><bool val="false"/></pair></pair>'
        "<int>0</int></pair><pair><int>0</int><int>0</int></pair></pair></call>"
    )


_STATUS = '<call val="Status"><bool val="true"/></call>'


class CoqChecker:
    """Checks (statement, proof, imports) one at a time in a warm ``coqidetop``.

    The process and its imports' state live across checks (``Require Import`` takes ~0.5 s,
    a small proof milliseconds); each check starts from that state and returns to it."""

    def __init__(self, limits: CoqLimits | None = None, executable: str = "coqidetop.opt") -> None:
        self.limits = limits or CoqLimits()
        self.executable = executable
        self._proc: _CoqProcess | None = None
        self._imports: tuple[str, ...] | None = None
        self._base = 0
        self._version = ""

    # -- life cycle ---------------------------------------------------------------------------
    def version(self) -> str:
        if not self._version:
            path = self._which()
            try:
                done = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SetupError(f"cannot run {path} -v: {exc}") from exc
            match = re.search(r"version (\S+)", done.stdout + done.stderr)
            self._version = f"Coq {match.group(1) if match else 'unknown'} (coqidetop)"
        return self._version

    def _which(self) -> str:
        path = shutil.which(self.executable)
        if path is None:
            raise SetupError(
                f"{self.executable} not found: install Coq (Debian/Ubuntu: apt-get install coq; "
                "conda: conda install -c conda-forge coq)"
            )
        return path

    def alive(self) -> bool:
        return self._proc is not None and self._proc.alive()

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
        self._proc = None
        self._imports = None

    def warm(self, imports: tuple[str, ...]) -> None:
        """Start the process with ``imports`` loaded now, if it is not (between items)."""
        if not self.alive() or self._imports != imports:
            try:
                self._start(imports, time.monotonic() + self.limits.timeout_s)
            except (_ImportFailed, TimeoutError, OSError, EOFError, ValueError, ET.ParseError):
                self.close()  # the next check starts it again and reports what fails

    def _start(self, imports: tuple[str, ...], deadline: float) -> None:
        """A fresh process with ``imports`` loaded; its state is the base of every check.
        It runs in the temporary directory, not an item's work dir (which goes away)."""
        self.close()
        argv = [self._which(), "-main-channel", "stdfds", "-async-proofs", "off", "-q"]
        self._proc = _CoqProcess(argv, self.limits.memory_mb, tempfile.gettempdir())
        value, _ = self._proc.call('<call val="Init"><option val="none"/></call>', deadline)
        state = _state_of(value)
        if state is None:
            raise SetupError(f"coqidetop did not start: {_text(value)}")
        if imports:
            require = f"Require Import {' '.join(imports)}."
            value, _ = self._proc.call(_add(require, state), deadline)
            state = _state_of(value)
            status, _ = self._proc.call(_STATUS, deadline)
            if state is None or status.get("val") != "good":
                self.close()
                raise _ImportFailed(_text(value if state is None else status))
        self._imports = imports
        self._base = state

    # -- one check ----------------------------------------------------------------------------
    def check(self, statement: str, proof: str, imports: tuple[str, ...] = ()) -> ProofReport:
        """Check ``proof`` of ``statement`` with ``imports`` loaded (see the module doc)."""
        problem = statement_problem(statement)
        for name in imports:
            problem = problem or import_problem(name)
        if problem is not None:
            return ProofReport("failed", problem)
        try:
            body = sentences(proof)
        except SentenceError as exc:
            return ProofReport("failed", f"the proof does not parse: {exc}")
        # records copied from .v files often carry the theorem's own Proof./Qed.: the
        # checker writes both, so a script's own are dropped (only these two, only there)
        if body[:1] == ["Proof."]:
            body = body[1:]
        if body[-1:] == ["Qed."]:
            body = body[:-1]
        script = ["Proof.", *body]
        deadline = time.monotonic() + self.limits.timeout_s
        name = "foundry_goal_" + secrets.token_hex(8)
        try:
            if not self.alive() or self._imports != imports:
                self._start(imports, deadline)
            report = self._check(name, statement, script, deadline)
            return _anonymous(report, name)
        except _ImportFailed as exc:
            return ProofReport("failed", f"the imports do not load: {exc}")
        except TimeoutError:
            self.close()
            return ProofReport("timeout", f"no answer within {self.limits.timeout_s:g} s")
        except (OSError, EOFError, ValueError, ET.ParseError) as exc:
            self.close()
            return ProofReport("error", f"the checker died or broke its protocol: {exc}")
        finally:
            self._reset(deadline)

    def _check(self, name: str, statement: str, script: list[str], deadline: float) -> ProofReport:
        proc = self._proc
        assert proc is not None
        state = self._base
        header = f"Theorem {name} : {statement}."
        value, _ = proc.call(_add(header, state), deadline)
        state_or_none = _state_of(value)
        if state_or_none is None:
            return ProofReport("failed", f"the statement does not parse: {_text(value)}")
        state = state_or_none
        status, _ = proc.call(_STATUS, deadline)
        if status.get("val") != "good":
            return ProofReport("failed", f"the statement does not elaborate: {_text(status)}")
        for k, sentence in enumerate(script):
            value, _ = proc.call(_add(sentence, state), deadline)
            next_state = _state_of(value)
            if next_state is None:
                return ProofReport("failed", f"sentence {k} does not parse: {_text(value)}", (), k)
            state = next_state
            status, _ = proc.call(_STATUS, deadline)
            if status.get("val") != "good":
                return ProofReport("failed", f"sentence {k} fails: {_text(status)}", (), k)
            if _open_proof(status) != name:
                return ProofReport(
                    "rejected", f"the proof left the theorem at sentence {k}: {sentence[:80]!r}"
                )
        value, _ = proc.call(_add("Qed.", state), deadline)
        state_or_none = _state_of(value)
        status, _ = proc.call(_STATUS, deadline)
        if state_or_none is None or status.get("val") != "good":
            why = _text(value if state_or_none is None else status)
            return ProofReport("failed", f"the proof is not complete: {why}", (), len(script))
        if _open_proof(status) is not None:
            return ProofReport("rejected", "a proof is still open after Qed", (), len(script))
        axioms, answer = self._assumptions(proc, name, state_or_none, deadline)
        if axioms is None:
            return ProofReport("error", f"Print Assumptions gave no answer: {answer[:200]}")
        bad = tuple(a for a in axioms if a not in self.limits.allowed_axioms)
        if bad:
            return ProofReport("rejected", f"the proof rests on {', '.join(bad)}", axioms)
        return ProofReport(
            "proved", "closed" if not axioms else "allowed axioms", axioms, len(script)
        )

    def _assumptions(
        self, proc: _CoqProcess, name: str, state: int, deadline: float
    ) -> tuple[tuple[str, ...] | None, str]:
        """The axioms ``name`` rests on, read from the answer to our own query (its route)."""
        route = secrets.randbelow(1 << 30) + 1
        query = (
            f'<call val="Query"><pair><route_id val="{route}"/><pair>'
            f"<string>Print Assumptions {name}.</string>"
            f'<state_id val="{state}"/></pair></pair></call>'
        )
        value, feedback = proc.call(query, deadline)
        if value.get("val") != "good":
            return None, _text(value)
        # notices on our route only: Coq's own progress ("Fetching opaque proofs") is info
        texts = [
            _text(fb.find("./feedback_content/message/richpp"))
            for fb in feedback
            if fb.get("route") == str(route)
            and fb.find("./feedback_content/message/message_level[@val='notice']") is not None
        ]
        answer = "\n".join(t for t in texts if t)
        if answer.strip() == CLOSED:
            return (), answer
        return _axioms_of(answer), answer

    def _reset(self, deadline: float) -> None:
        """Back to the imports' state; a checker that cannot get there is replaced."""
        if self._proc is None or not self.alive():
            return
        try:
            value, _ = self._proc.call(
                f'<call val="Edit_at"><state_id val="{self._base}"/></call>',
                max(deadline, time.monotonic() + 5.0),
            )
            status, _ = self._proc.call(_STATUS, time.monotonic() + 5.0)
            if value.get("val") != "good" or _open_proof(status) is not None:
                self.close()
        except (TimeoutError, OSError, EOFError, ValueError, ET.ParseError):
            self.close()


class _ImportFailed(Exception):
    pass


def _anonymous(report: ProofReport, name: str) -> ProofReport:
    """The report with the check's random theorem name replaced: a verdict's reason must
    not differ between two checks of the same candidate."""
    if name not in report.reason and not any(name in a for a in report.axioms):
        return report
    return dataclasses.replace(
        report,
        reason=report.reason.replace(name, "the theorem"),
        axioms=tuple(a.replace(name, "the theorem") for a in report.axioms),
    )


def _state_of(value: ET.Element) -> int | None:
    """The new state of a good answer to ``Init``/``Add``; ``None`` for a failure."""
    if value.get("val") != "good":
        return None
    state = value.find(".//state_id")
    return int(state.get("val", "0")) if state is not None else None


def _open_proof(status: ET.Element) -> str | None:
    """The name of the open proof in a ``Status`` answer, ``None`` outside proofs."""
    option = status.find("./status/option")
    if option is None or option.get("val") != "some":
        return None
    name = option.find("./string")
    return name.text if name is not None else ""


def _axioms_of(answer: str) -> tuple[str, ...] | None:
    """Axiom names in a ``Print Assumptions`` answer ("Axioms:" then ``name : type`` blocks,
    "<name> is assumed to be guarded", ...); ``None`` when it is not such an answer."""
    lines = answer.splitlines()
    if not lines:
        return None
    found: list[str] = []
    for line in lines:
        if not line.strip() or line.startswith((" ", "\t")) or line.rstrip().endswith(":"):
            continue
        head = line.split(" : ", 1)[0].strip()
        if " is assumed" in line or " relies on" in line or " is positive" in line:
            found.append(line.strip())
        elif _IDENT.match(head):
            found.append(head)
        else:
            found.append(line.strip())
    return tuple(found) if found else None
