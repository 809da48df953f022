"""Ground truth in a warm, killable child process.

Generated code, proofs and netlists are hostile: a verifier may hang, crash the interpreter,
leak memory or print over our protocol. Each worker therefore keeps one child process that
holds the domain's warm ``GroundTruth`` (a loaded library, a started checker) and talks to it
over a private pipe. The host enforces a per-item timeout by killing the child, restarts it
lazily, and recycles it after ``GroundTruth.recycle_after`` evaluations.

Every outcome becomes a :class:`GTResult`; nothing here raises for a bad candidate. Only a
:class:`~foundry.contract.SetupError` (the tool is missing) propagates: a run must stop rather
than reject everything.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from foundry.contract import Candidate, SetupError, Verdict

_HEADER = struct.Struct("!Q")
_EOF = ("__eof__",)

#: failure kinds recorded in the ledger
SIMULATION_FAILED = "simulation_failed"
TIMEOUT = "timeout"
PLUGIN_ERROR = "plugin_error"
CRASH = "crash"


@dataclass
class GTResult:
    """The outcome of one ground-truth evaluation (a verdict or a recorded failure)."""

    key: int
    verdict: Verdict | None
    failure_kind: str = ""
    error: str = ""
    walltime_s: float = 0.0
    host: str = ""
    simulator: str = ""
    simulator_version: str = ""


def write_frame(stream, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> object:
    (size,) = _HEADER.unpack(read_exact(fd, _HEADER.size))
    return pickle.loads(read_exact(fd, size))


def _child_pythonpath() -> str:
    """Whatever the parent can import, the child can import (plugins under tests/, etc.)."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    old = os.environ.get("PYTHONPATH")
    if old:
        paths.append(old)
    return os.pathsep.join(dict.fromkeys(paths))


class VerifierHost:
    """One warm verifier child for ``(domain_spec, fidelity)``, used from a single thread."""

    def __init__(
        self,
        domain_spec: str,
        fidelity: str | None = None,
        *,
        memory_limit_mb: int | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        self.domain_spec = domain_spec
        self.fidelity = fidelity
        self.memory_limit_mb = memory_limit_mb
        self.startup_timeout_s = startup_timeout_s
        self.host = socket.gethostname()
        self.simulator = ""
        self.simulator_version = ""
        self.recycle_after: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._uses = 0
        # lives as long as the host (closed in close()); the child's stderr goes here
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.restarts = 0

    # -- process management -----------------------------------------------------------------
    def _preexec(self) -> None:
        os.setsid()
        if self.memory_limit_mb:
            import resource

            limit = self.memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def _start(self) -> None:
        env = dict(os.environ, PYTHONPATH=_child_pythonpath(), PYTHONUNBUFFERED="1")
        self._stderr.seek(0)
        self._stderr.truncate()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "foundry.verifier_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            preexec_fn=self._preexec,
        )
        self._uses = 0
        assert self._proc.stdin is not None
        write_frame(self._proc.stdin, ("init", self.domain_spec, self.fidelity))
        reply = self._read(self.startup_timeout_s)
        if reply is None or reply is _EOF:
            tail = self._stderr_tail()
            self._kill()
            raise SetupError(f"verifier for {self.domain_spec!r} did not start: {tail}")
        kind = reply[0]
        if kind == "setup_error":
            self._kill()
            raise SetupError(str(reply[1]))
        if kind != "ready":
            self._kill()
            raise SetupError(f"verifier child sent {kind!r} instead of 'ready'")
        _, self.simulator, self.simulator_version, self.recycle_after = reply

    def _stderr_tail(self, n_chars: int = 600) -> str:
        with contextlib.suppress(OSError):
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace").strip()
            return text[-n_chars:] if text else "(no stderr)"
        return "(stderr unavailable)"

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()
        self.restarts += 1

    def _read(self, timeout_s: float) -> tuple | None:
        """Next frame from the child; None on timeout; ``_EOF`` when the child died."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], max(timeout_s, 0.0))
        if not ready:
            return None
        try:
            return read_frame(fd)  # type: ignore[return-value]
        except (EOFError, pickle.UnpicklingError, OSError):
            return _EOF

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(Exception):
                assert self._proc.stdin is not None
                write_frame(self._proc.stdin, ("stop",))
                self._proc.wait(timeout=2)
        self._kill()
        self._stderr.close()

    # -- work -----------------------------------------------------------------------------------
    def _result(self, key: int, verdict: Verdict | None, kind: str, error: str, wall: float):
        return GTResult(
            key, verdict, kind, error, wall, self.host, self.simulator, self.simulator_version
        )

    def verify_many(
        self, items: Sequence[tuple[int, Candidate]], timeout_s: float
    ) -> list[GTResult]:
        """Verify ``items`` in order; each gets ``timeout_s`` of wall time at most."""
        results: list[GTResult] = []
        pending = list(items)
        while pending:
            if self._proc is None or self._proc.poll() is not None:
                self._kill()
                self._start()
            budget = len(pending)
            if self.recycle_after:
                budget = min(budget, max(self.recycle_after - self._uses, 1))
            batch, pending = pending[:budget], pending[budget:]
            assert self._proc is not None and self._proc.stdin is not None
            try:
                write_frame(self._proc.stdin, ("verify", batch))
            except (BrokenPipeError, OSError):
                self._kill()
                pending = batch + pending
                continue
            for position, (key, _candidate) in enumerate(batch):
                started = time.perf_counter()
                reply = self._read(timeout_s)
                wall = time.perf_counter() - started
                if reply is None or reply is _EOF:
                    if reply is None:
                        kind, error = TIMEOUT, f"no verdict within {timeout_s:g} s; process killed"
                    else:
                        code = None
                        if self._proc is not None:
                            with contextlib.suppress(subprocess.TimeoutExpired):
                                code = self._proc.wait(timeout=5)
                        kind = CRASH
                        error = f"verifier process died (exit code {code}): {self._stderr_tail()}"
                    self._kill()
                    results.append(self._result(key, None, kind, error, wall))
                    pending = batch[position + 1 :] + pending
                    break
                _, reply_key, verdict, kind, error, child_wall = reply
                if reply_key != key:
                    self._kill()
                    results.append(
                        self._result(key, None, CRASH, "verifier protocol out of step", wall)
                    )
                    pending = batch[position + 1 :] + pending
                    break
                if kind == "setup_error":
                    raise SetupError(error)
                self._uses += 1
                results.append(self._result(key, verdict, kind, error, child_wall))
            else:
                if self.recycle_after and self._uses >= self.recycle_after:
                    self.close_child_gracefully()
        return results

    def close_child_gracefully(self) -> None:
        """Replace the child at the next use (memory hygiene for leaky tools)."""
        if self._proc is not None:
            with contextlib.suppress(Exception):
                assert self._proc.stdin is not None
                write_frame(self._proc.stdin, ("stop",))
                self._proc.wait(timeout=5)
        self._kill()


class InProcessHost:
    """Runs the ground truth in the calling process: no timeout, no isolation.

    Only for trusted, instantaneous verifiers (analytic test domains, overhead benchmarks).
    """

    def __init__(self, domain_spec: str, fidelity: str | None = None) -> None:
        from foundry.verifier_child import GroundTruthRunner

        self.runner = GroundTruthRunner(domain_spec, fidelity)
        self.host = socket.gethostname()
        self.restarts = 0

    def verify_many(
        self, items: Sequence[tuple[int, Candidate]], timeout_s: float
    ) -> list[GTResult]:
        out = []
        for key, candidate in items:
            verdict, kind, error, wall = self.runner.run(candidate)
            out.append(
                GTResult(
                    key,
                    verdict,
                    kind,
                    error,
                    wall,
                    self.host,
                    self.runner.simulator,
                    self.runner.simulator_version,
                )
            )
        return out

    def close(self) -> None:
        self.runner.close()
