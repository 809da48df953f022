"""The code domain's ground truth: the program and its tests in the Python sandbox.

It runs in the verifier child, which the execution plane keeps in a bubblewrap sandbox
(declared: ``isolation="bwrap"``, which a run may not weaken): read-only system, no home
directory, no network, a pids cgroup where one can be made. Inside, each check gets a fresh
runner in its own namespaces and a judge that runs the tests (``foundry.simulators.pysandbox``).
The verdict is the judge's report: ``pass``, or ``fail`` / ``timeout`` / ``crash`` /
``resource`` with the reason; a check the harness cannot decide is a recorded failure
(``SimulationFailed``), never a label.
"""

from __future__ import annotations

import dataclasses
import platform
from typing import Any

from foundry.simulators.pysandbox import HARNESS_VERSION, PythonSandbox, Report

from foundry.contract import Candidate, GroundTruth, SimulationFailed, Verdict
from foundry.execution.resources import Resources

from .options import CodeOptions
from .tasks import CodeTask, task_of

__all__ = ["SandboxGroundTruth"]

#: candidate sources whose tests the judge may run unforked (see ``SandboxGroundTruth.prepare``)
TRUSTED_SOURCES = ("synthetic", "real")
#: processes of the judge, its spawner and their helpers, above the program's own
_HARNESS_PROCESSES = 8


class SandboxGroundTruth(GroundTruth):
    """Runs a record's tests against its program; warm: one judge per verifier child."""

    name = "python-sandbox"

    def __init__(self, options: CodeOptions) -> None:
        self.options = options
        self.limits = options.sandbox_limits()
        self.resources = Resources(
            threads=1,
            # the whole tree: verifier, judge, spawner, runner; a backstop to the runner's own
            memory_mb=2 * options.memory_mb + 1024,
            timeout_s=options.timeout_s + 20.0,
            startup_timeout_s=120.0,
            expected_cost_s=0.005,
            isolation="bwrap",
            max_processes=options.max_processes + _HARNESS_PROCESSES,
            output_mb=max(1.0, 4 * options.output_kb / 1024),
        )
        self._sandbox: PythonSandbox | None = None

    @property
    def version(self) -> str:
        return f"pysandbox {HARNESS_VERSION} / Python {platform.python_version()}"

    def prepare(self, candidate: Candidate) -> CodeTask:
        try:
            task = task_of(candidate.payload)
        except ValueError as exc:
            raise SimulationFailed(f"not a code task: {exc}") from None
        # generated tasks' tests come from the domain's reference solutions, the reservoir's
        # from HumanEval; a user's records (source "injected") bring tests of their own
        return dataclasses.replace(task, trusted_tests=candidate.source in TRUSTED_SOURCES)

    def execute(self, job: CodeTask, workdir: str) -> Report:
        if self._sandbox is None:
            self._sandbox = PythonSandbox(self.limits)
        timeout_s = self.limits.timeout_s
        if job.time_limit_s is not None:
            timeout_s = min(timeout_s, job.time_limit_s)
        return self._sandbox.run(
            job.program,
            job.setup,
            job.tests,
            workdir,
            job.entry_point,
            timeout_s=timeout_s,
            isolate_tests=not job.trusted_tests,
        )

    def parse(self, raw: Report, candidate: Candidate) -> Verdict:
        if raw.status == "error":
            raise SimulationFailed(f"the sandbox could not decide: {raw.reason}")
        measurements: dict[str, Any] = {
            "tests_total": float(raw.tests_total),
            "tests_passed": float(raw.tests_passed),
        }
        return Verdict(
            passed=raw.status == "pass",
            reason=f"{raw.status}: {raw.reason}",
            measurements=measurements,
        )

    def reset(self) -> None:
        # the execution plane sweeps what an item started - the first item's judge too,
        # since it was not running before that item: start it again between items, so that
        # it is part of the warm state the next sweep keeps
        if self._sandbox is not None and not self._sandbox.alive():
            self._sandbox.start()

    def health(self) -> str | None:
        if self._sandbox is not None and not self._sandbox.alive():
            return "the sandbox's judge is not running"
        return None

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.close()
            self._sandbox = None
