"""Run a Python program against its tests so that the program cannot fake the verdict.

Popular harnesses ``exec`` the program and its tests in one process and call it a pass when
nothing raised: a program that replaces ``check``, patches ``AssertionError``, returns an
object whose ``__eq__`` always says yes, calls ``os._exit(0)`` before the tests, or prints
"passed" fools them. Here the tests and the program never share a process:

* the **judge** (forked from the warm verifier per check) runs the *tests*. Each name the
  program defines is, in the judge, a proxy that sends the call's arguments to the runner and
  returns the runner's answer decoded as plain data (``None``, ``bool``, ``int``, ``float``,
  ``complex``, ``str``, ``bytes``, lists, tuples, sets, dicts - exact types, so no object of
  the program's is ever compared or called in the judge). Asserts are evaluated by the judge.
  It writes the report on a pipe only it holds and is not dumpable (no other process of its
  user can open its descriptors through /proc).
* the **runner** runs the *program*, forked for each check from a fresh fork server (its own
  interpreter, which has seen no candidate), as pid 1 of new user, PID, mount, network and
  IPC namespaces: a private tmpfs over /tmp, /dev/shm and the work dir, no capabilities, no
  network, rlimits on data memory, CPU time, file size, processes and open files. It cannot
  see the judge or the verifier (another PID namespace), and everything it starts dies with it.

This runs inside the verifier child, which the execution plane already keeps in a bubblewrap
sandbox (read-only system, no home directory, a pids cgroup where one can be made): the
namespaces here separate one check from the next and the program from its judge.

Verdict categories: ``pass``, ``fail`` (which test, why), ``timeout``, ``crash`` (the program
died or ended its process), ``resource`` (memory, CPU time, output, processes); ``error``
when the harness cannot decide (a test passes a function to the program), never a label.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from foundry.contract import SetupError

from . import pysandbox_server as server

_PR_SET_DUMPABLE = 4
#: recorded with every verdict (change it when what a verdict means changes)
HARNESS_VERSION = "1"
Status = Literal["pass", "fail", "timeout", "crash", "resource", "error"]
_SERVER_SOURCE = Path(server.__file__).read_text()


@dataclass(frozen=True)
class SandboxLimits:
    """Per-check limits of the runner. ``timeout_s``: wall time for loading the program and
    all its tests; ``memory_mb``: data memory above the warm interpreter's; ``output_kb``:
    bytes of any one file (stdout included); ``tmpfs_kb``: each private tmpfs."""

    timeout_s: float = 10.0
    cpu_time_s: float = 10.0
    memory_mb: int = 512
    max_processes: int = 32
    output_kb: int = 1024
    tmpfs_kb: int = 16 * 1024

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"sandbox limit {name} must be a number > 0, got {value!r}")


@dataclass(frozen=True)
class TestCase:
    """One test as the judge runs it: a statement (``assert f(2) == 4``, ``check(f)``)."""

    name: str
    source: str


@dataclass(frozen=True)
class Report:
    """What the judge found. ``failed_test`` names the first test that did not pass."""

    status: Status
    reason: str
    tests_total: int
    tests_passed: int
    failed_test: str = ""


class PythonSandbox:
    """Checks programs one at a time through a warm judge process started on first use."""

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self._judge: subprocess.Popen[bytes] | None = None
        self._task_w = -1
        self._report_r = -1

    def alive(self) -> bool:
        return self._judge is not None and self._judge.poll() is None

    def start(self) -> None:
        """Start the judge (which starts the spawner) and check that a runner works here.

        This process becomes non-dumpable first: it holds the verifier's pipes to its host,
        and a runner of the same user could otherwise open them through /proc/<pid>/fd."""
        self.close()
        if ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise SetupError("cannot make the verifier non-dumpable (prctl PR_SET_DUMPABLE)")
        task_r, task_w = os.pipe()
        report_r, report_w = os.pipe()
        try:
            self._judge = subprocess.Popen(
                [sys.executable, "-I", "-c", _SERVER_SOURCE, str(task_r), str(report_w)],
                pass_fds=(task_r, report_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        except OSError as exc:
            raise SetupError(f"cannot start the Python sandbox's judge: {exc}") from exc
        finally:
            os.close(task_r)
            os.close(report_w)
        self._task_w, self._report_r = task_w, report_r
        probe = self.run("def f():\n    return 1\n", "", (TestCase("probe", "assert f() == 1"),))
        if probe.status != "pass":
            self.close()
            raise SetupError(
                f"the Python sandbox cannot start a runner here ({probe.reason}); it needs "
                "unprivileged user namespaces (inside the bubblewrap sandbox, too)"
            )

    def close(self) -> None:
        for fd in (self._task_w, self._report_r):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._task_w = self._report_r = -1
        if self._judge is not None:
            try:  # its input closed, the judge stops its spawner and exits
                self._judge.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._judge.kill()
                with contextlib.suppress(Exception):
                    self._judge.wait(timeout=5)
            self._judge = None

    def run(
        self,
        program: str,
        setup: str,
        tests: tuple[TestCase, ...],
        workdir: str | None = None,
        entry_point: str = "",
        timeout_s: float | None = None,
        isolate_tests: bool = True,
    ) -> Report:
        """Load ``program`` in a fresh runner; in the judge run ``setup`` (test code defining
        helpers such as ``check``; may be empty), then each of ``tests`` in order. The
        program's functions are proxies in the judge, but for names of builtins (a program's
        ``abs`` must not answer the tests' ``abs``) - except ``entry_point``. ``timeout_s``
        lowers this check's wall and CPU limits (a task's own time limit). ``isolate_tests``
        (the default) runs the tests in a fork of the judge, so that test code from one
        record cannot change the judge for the next; trusted tests may skip it."""
        if not self.alive():
            self.start()
        limits = self.limits
        if timeout_s is not None and timeout_s < limits.timeout_s:
            cpu_s = min(limits.cpu_time_s, timeout_s)
            limits = dataclasses.replace(limits, timeout_s=timeout_s, cpu_time_s=cpu_s)
        request = {
            "limits": asdict(limits),
            "workdir": workdir or os.getcwd(),
            "isolate_tests": isolate_tests,
        }
        task = {
            "program": program,
            "setup": setup,
            "entry_point": entry_point,
            "tests": [{"name": t.name, "source": t.source} for t in tests],
        }
        try:
            server.send(self._task_w, request)
            server.send(self._task_w, task)
            fields = server.receive(self._report_r, time.monotonic() + limits.timeout_s + 10.0)
            return Report(**fields)
        except server.UnsupportedValue as exc:
            return Report("error", f"the task is too large to send: {exc}", len(tests), 0)
        except (OSError, EOFError, TimeoutError, ValueError, TypeError) as exc:
            self.close()  # a judge that missed its deadline or died is replaced
            what = "gave no report in time" if isinstance(exc, TimeoutError) else "died"
            return Report("error", f"the judge {what}", len(tests), 0)
