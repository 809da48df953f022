"""The worker side of ground truth: a warm verifier child, watched, limited and killable.

Generated code, proofs and netlists are hostile: a verifier may hang, crash the interpreter,
fork, eat memory, print over the protocol or lie in it. A :class:`ChildHost` therefore keeps
one child process (or bubblewrap sandbox) per worker thread holding the domain's warm
``GroundTruth``, talks to it in JSON frames on private pipes, reads every frame with a
deadline, watches the child's process tree (memory, CPU time, process count) while an item
runs, and kills and replaces the child on any breach. Every outcome becomes a
:class:`GTResult`; nothing here raises for a bad candidate. Only a
:class:`~foundry.contract.SetupError` (the tool is missing) propagates.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from foundry.contract import Candidate, SetupError
from foundry.execution import proctree
from foundry.execution.cgroups import CHILD_OVERHEAD_PROCESSES, PidsCgroup
from foundry.execution.child import BOOTSTRAP
from foundry.execution.launchers import Launcher, Limits, launcher_for, module_paths
from foundry.execution.outcomes import (
    CRASH,
    PROTOCOL_ERROR,
    RESOURCE_LIMIT,
    TIMEOUT,
    CheckResult,
    GTResult,
)
from foundry.execution.protocol import (
    MAX_FRAME_BYTES,
    FrameReader,
    ProtocolError,
    candidate_to_wire,
    verdict_from_wire,
    write_frame,
)
from foundry.execution.runner import VerifierRunner
from foundry.execution.spec import VerifierSpec

#: seconds between looks at the child's process tree while an item runs (when limits ask)
WATCH_INTERVAL_S = 0.05
#: variables every child gets from the worker when set (libraries, GPUs, locale)
BASE_PASS_ENV = ("LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "CONDA_PREFIX", "TZ")
#: exit statuses of a child the kernel stopped at a CPU-time or file-size rlimit
_LIMIT_SIGNALS = {signal.SIGXCPU: "CPU-time", signal.SIGXFSZ: "file-size"}


class _Breach(Exception):
    """The watchdog found the child's tree over a limit."""


class _StartTimeout(Exception):
    pass


#: one item's answer from the child: key, frame (None when it failed), failure kind, error,
#: wall seconds, forks its pids cgroup refused while it ran
_Answer = tuple[int, dict[str, Any] | None, str, str, float, int]


def child_import_paths() -> list[str]:
    """The parent's import path, absolute, with the current directory moved to the end.

    The child runs in isolated mode, so nothing is added implicitly; a file in the current
    directory named like a module (``inspect.py``, ``json.py``) can then never shadow the
    standard library or an installed package, while code that is only importable from there
    (a plugin under development, a benchmark module) still is.
    """
    cwd = os.path.realpath(os.getcwd())
    first, last = [], []
    for entry in sys.path:
        absolute = os.path.abspath(entry or ".")
        if not os.path.isdir(absolute):
            continue
        (last if os.path.realpath(absolute) == cwd else first).append(absolute)
    return list(dict.fromkeys(first + last))


def child_environment(spec: VerifierSpec, workdir: str, tmpdir: str) -> dict[str, str]:
    """A clean environment: no credentials, no proxy settings, no Dask's ``OMP_NUM_THREADS=1``;
    the verifier's thread count instead."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": tmpdir,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        **spec.resources.thread_environment(),
    }
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = f"{bindir}:{env['PATH']}"
    for name in (*BASE_PASS_ENV, *spec.pass_env):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


class ChildHost:
    """One warm verifier child for ``spec``, used from a single thread."""

    def __init__(self, spec: VerifierSpec) -> None:
        self.spec = spec
        self.resources = spec.resources
        module = spec.domain_spec.partition(":")[0] if ":" in spec.domain_spec else ""
        read_paths = [*spec.sandbox_paths, *(module_paths(module) if module else [])]
        self.launcher: Launcher = launcher_for(spec.isolation, read_paths)
        self.host = socket.gethostname()
        self.simulator = ""
        self.simulator_version = ""
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: FrameReader | None = None
        self._to_child = -1
        self._root = ""
        self._log: Any = None
        #: the child's pids cgroup, where one can be made (see foundry.execution.cgroups)
        self._cgroup: PidsCgroup | None = None

    # -- process management -----------------------------------------------------------------
    def _start(self) -> None:
        self.launcher.check()
        self._root = tempfile.mkdtemp(prefix="foundry-gt-")
        workdir = os.path.join(self._root, "work")
        tmpdir = os.path.join(self._root, "tmp")
        os.mkdir(workdir)
        os.mkdir(tmpdir)
        if self.spec.isolation == "bwrap":
            tmpdir = "/tmp"  # the sandbox's own, private tmpfs
        self._log = open(os.path.join(self._root, "log"), "w+b")  # noqa: SIM115 - lives with the child
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        argv = [
            sys.executable,
            "-I",
            "-c",
            BOOTSTRAP,
            json.dumps(child_import_paths()),
            str(to_child_r),
            str(from_child_w),
        ]
        command = self.launcher.wrap(argv, workdir, Limits(gpus=self.resources.gpus))
        if self.resources.max_processes:
            self._cgroup = PidsCgroup.create(
                self.resources.max_processes + CHILD_OVERHEAD_PROCESSES
            )
            if self._cgroup is not None:
                command = self._cgroup.enter_prefix() + command
        try:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                pass_fds=(to_child_r, from_child_w),
                env=child_environment(self.spec, workdir, tmpdir),
                cwd=workdir,
                start_new_session=True,
            )
        except OSError as exc:
            raise SetupError(f"cannot start the verifier child ({command[0]}): {exc}") from exc
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._to_child = to_child_w
        self._reader = FrameReader(from_child_r, MAX_FRAME_BYTES)
        spec = self.spec
        init = {
            "op": "init",
            "workdir": workdir,
            "spec": {
                "domain_spec": spec.domain_spec,
                "options_json": spec.options_json,
                "fidelity": spec.fidelity,
                "resources": spec.resources.as_dict(),
                "isolation": spec.isolation,
            },
        }
        try:
            write_frame(self._to_child, init)
            reply = self._reader.read(self.resources.startup_timeout_s)
        except (OSError, EOFError, ProtocolError):
            reply = {"op": "died"}
        if reply is None:
            self._kill()
            raise _StartTimeout(
                f"verifier did not start within {self.resources.startup_timeout_s:g} s "
                "(startup_timeout_s)"
            )
        op = reply.get("op")
        if op == "ready":
            self.simulator = str(reply.get("simulator", ""))[:200]
            self.simulator_version = str(reply.get("simulator_version", ""))[:200]
            return
        tail = self._log_tail()
        self._kill()
        if op == "setup_error":
            raise SetupError(str(reply.get("error", "verifier setup failed"))[:2000])
        raise SetupError(f"verifier for {spec.domain_spec!r} did not start: {tail}")

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _tree(self) -> list[int]:
        if self._proc is None:
            return []
        return [self._proc.pid, *proctree.descendants(self._proc.pid)]

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proctree.kill_all(proctree.descendants(proc.pid))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
            self.restarts += 1
        if self._reader is not None:
            with contextlib.suppress(OSError):
                os.close(self._reader.fd)
            self._reader = None
        if self._to_child >= 0:
            with contextlib.suppress(OSError):
                os.close(self._to_child)
            self._to_child = -1
        if self._log is not None:
            with contextlib.suppress(Exception):
                self._log.close()
            self._log = None
        if self._root:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = ""
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None

    def _log_tail(self, n_chars: int = 600) -> str:
        if self._log is None:
            return "(no log)"
        with contextlib.suppress(OSError, ValueError):
            self._log.flush()
            size = os.fstat(self._log.fileno()).st_size
            self._log.seek(max(size - 4 * n_chars, 0))
            text = self._log.read().decode(errors="replace").strip()
            return text[-n_chars:] if text else "(no output)"
        return "(log unavailable)"

    def close(self) -> None:
        tree = self._tree()[1:]
        if self._alive() and self._to_child >= 0:
            with contextlib.suppress(Exception):
                write_frame(self._to_child, {"op": "stop"})
                assert self._proc is not None
                self._proc.wait(timeout=2)
        proctree.kill_all(tree)  # in case the child could not sweep its own
        self._kill()

    # -- one item ----------------------------------------------------------------------------
    def _watchdog(self) -> Any:
        """A poll callback that raises :class:`_Breach` when the tree is over a limit."""
        res = self.resources
        if not (res.memory_mb or res.cpu_time_s or res.max_processes):
            return None
        baseline: list[float] = []

        # a pids cgroup makes forks past the limit fail in the kernel: the verifier sees that
        # (and answers), and the sampled count would only race it
        count_processes = res.max_processes and self._cgroup is None

        def poll() -> None:
            tree = self._tree()
            if count_processes and len(tree) - 1 > res.max_processes + _overhead(self):
                raise _Breach(f"process limit: {len(tree) - 1} processes > {res.max_processes}")
            if res.memory_mb:
                rss = proctree.rss_mb(tree)
                if rss > res.memory_mb:
                    raise _Breach(f"memory limit: {rss:.0f} MB resident > {res.memory_mb} MB")
            if res.cpu_time_s:
                used = proctree.cpu_s(tree)
                if not baseline:
                    baseline.append(used)
                elif used - baseline[0] > res.cpu_time_s:
                    raise _Breach(
                        f"CPU-time limit: {used - baseline[0]:.1f} s > {res.cpu_time_s:g} s"
                    )

        return poll

    def _await(self, timeout_s: float) -> tuple[dict[str, Any] | None, str, str]:
        """(frame, failure kind, error) for the item in progress."""
        assert self._reader is not None
        poll = self._watchdog()
        try:
            frame = self._reader.read(
                timeout_s, poll_s=WATCH_INTERVAL_S if poll else None, on_poll=poll
            )
        except _Breach as exc:
            return None, RESOURCE_LIMIT, f"{exc}; process killed"
        except ProtocolError as exc:
            return None, PROTOCOL_ERROR, f"{exc}; process killed"
        except (EOFError, OSError):
            return None, *self._death()
        if frame is None:
            return None, TIMEOUT, f"no verdict within {timeout_s:g} s; process killed"
        return frame, "", ""

    def _death(self) -> tuple[str, str]:
        code = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._proc.wait(timeout=5)
        for sig, what in _LIMIT_SIGNALS.items():
            if code in (-sig, 128 + sig):
                return RESOURCE_LIMIT, f"{what} limit: verifier process killed by {sig.name}"
        return CRASH, f"verifier process died (exit code {code}): {self._log_tail()}"

    def _run(
        self, op: str, items: Sequence[tuple[int, Candidate]], timeout_s: float
    ) -> list[_Answer]:
        """Send ``items`` for ``op``; (key, frame, kind, error, wall, forks refused) for each,
        in order (forks refused: by the child's pids cgroup while the item ran)."""
        out: list[_Answer] = []
        pending = list(items)
        while pending:
            if not self._alive():
                self._kill()
                try:
                    self._start()
                except _StartTimeout as exc:
                    out.extend((key, None, CRASH, str(exc), 0.0, 0) for key, _ in pending)
                    return out
            try:
                wire = [[key, candidate_to_wire(c)] for key, c in pending]
                write_frame(self._to_child, {"op": op, "items": wire})
            except (BrokenPipeError, OSError):
                self._kill()
                continue
            sent, pending = pending, []
            refused = self._cgroup.refusals() if self._cgroup is not None else 0
            for position, (key, _) in enumerate(sent):
                started = time.perf_counter()
                frame, kind, error = self._await(timeout_s)
                wall = time.perf_counter() - started
                forks_refused = 0
                if self._cgroup is not None:
                    now = self._cgroup.refusals()
                    forks_refused, refused = now - refused, now
                if frame is not None and frame.get("op") == "setup_error":
                    self._kill()
                    raise SetupError(str(frame.get("error", "setup error"))[:2000])
                if frame is not None and frame.get("key") != key:
                    frame, kind, error = None, PROTOCOL_ERROR, "verifier protocol out of step"
                if frame is None:
                    self._kill()
                    out.append((key, None, kind, error, wall, forks_refused))
                    pending = list(sent[position + 1 :])
                    break
                out.append((key, frame, "", "", wall, forks_refused))
                if frame.get("recycle"):
                    self._retire()
                    pending = list(sent[position + 1 :])
                    break
        return out

    def _retire(self) -> None:
        """The child asked to be replaced (count, memory, health): let it exit, then reap."""
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        self._kill()

    def verify_many(self, items: Sequence[tuple[int, Candidate]]) -> list[GTResult]:
        """Verify ``items`` in order, each within the verifier's ``timeout_s``."""
        results = []
        answers = self._run("verify", items, self.resources.timeout_s)
        for key, frame, kind, error, wall, refused in answers:
            if frame is None:
                results.append(self._result(key, None, kind, error, wall))
                continue
            try:
                if frame.get("op") != "result":
                    raise ProtocolError(f"expected a result frame, got {frame.get('op')!r}")
                raw = frame.get("verdict")
                verdict = verdict_from_wire(raw) if raw is not None else None
                kind = str(frame.get("kind", ""))[:64]
                error = str(frame.get("error", ""))[:2000]
                child_wall = frame.get("walltime_s", wall)
                wall = float(child_wall) if isinstance(child_wall, int | float) else wall
            except ProtocolError as exc:
                self._kill()
                results.append(self._result(key, None, PROTOCOL_ERROR, str(exc), wall))
                continue
            if verdict is None and not kind:
                kind, error = PROTOCOL_ERROR, "result frame without verdict or failure"
            if verdict is None and refused:
                kind = RESOURCE_LIMIT
                error = (
                    f"process limit: {refused} fork(s) refused at {self.resources.max_processes} "
                    f"processes (max_processes); {error}"
                )[:2000]
            results.append(self._result(key, verdict, kind, error, wall))
        return results

    def check_many(
        self, items: Sequence[tuple[int, Candidate]], timeout_s: float
    ) -> list[CheckResult]:
        """The domain's rule check on ``items``, each within ``timeout_s``: a hang, a crash or
        a garbled answer is itself the reason the candidate is invalid."""
        out = []
        for key, frame, kind, error, _, _ in self._run("check", items, timeout_s):
            if frame is None:
                what = "timed out" if kind == TIMEOUT else "failed"
                out.append(CheckResult(key, f"rule check {what}: {error}"))
                continue
            reason = frame.get("reason")
            if frame.get("op") != "checked" or not (reason is None or isinstance(reason, str)):
                self._kill()
                out.append(CheckResult(key, "rule check failed: garbled answer from the checker"))
                continue
            out.append(CheckResult(key, reason[:2000] if reason is not None else None))
        return out

    def _result(self, key: int, verdict: Any, kind: str, error: str, wall: float) -> GTResult:
        return GTResult(
            key, verdict, kind, error, wall, self.host, self.simulator, self.simulator_version
        )


def _overhead(host: ChildHost) -> int:
    """Processes of the sandbox itself (bwrap's monitor and init) besides the child."""
    return 2 if host.spec.isolation == "bwrap" else 0


class InProcessHost:
    """The ground truth in the calling process: no timeout, no isolation, no limits.

    Only for trusted, instantaneous verifiers (analytic test domains, overhead benchmarks).
    """

    def __init__(self, spec: VerifierSpec) -> None:
        self.spec = spec
        self.host = socket.gethostname()
        self.restarts = 0
        self._runner: VerifierRunner | None = None

    @property
    def runner(self) -> VerifierRunner:
        if self._runner is None:
            # best effort: libraries that read these at start-up and load after this see them
            os.environ.update(self.spec.resources.thread_environment())
            self._runner = VerifierRunner(self.spec)
        return self._runner

    def verify_many(self, items: Sequence[tuple[int, Candidate]]) -> list[GTResult]:
        out = []
        for key, candidate in items:
            runner = self.runner
            outcome = runner.verify(candidate)
            out.append(
                GTResult(
                    key,
                    outcome.verdict,
                    outcome.kind,
                    outcome.error,
                    outcome.walltime_s,
                    self.host,
                    runner.simulator,
                    runner.simulator_version,
                )
            )
            if runner.after_item():
                self.close()
        return out

    def check_many(
        self, items: Sequence[tuple[int, Candidate]], timeout_s: float
    ) -> list[CheckResult]:
        return [CheckResult(key, self.runner.check(c)) for key, c in items]

    def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()
            self.restarts += 1


def host_for(spec: VerifierSpec) -> ChildHost | InProcessHost:
    return InProcessHost(spec) if spec.isolation == "none" else ChildHost(spec)
