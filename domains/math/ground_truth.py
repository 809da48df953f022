"""The math domain's ground truth: the record's backend checks the proof.

Coq (``foundry.simulators.coq``) runs warm: one ``coqidetop`` per verifier child with the
imports loaded once, returned to that state after every check. Lean 4
(``foundry.simulators.lean4``) runs ``lean`` (or ``lake env lean`` in a configured project)
per check. Both run inside the verifier child's bubblewrap sandbox (declared:
``isolation="bwrap"``, which a run may not weaken): proof scripts can run code at elaboration
time. The verdict is the checker's answer: ``proved``, or ``failed`` / ``rejected`` /
``timeout`` with the reason; a check the harness cannot decide is a recorded failure
(``SimulationFailed``), never a label.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from foundry.simulators.coq import SANDBOX_PATHS as COQ_PATHS
from foundry.simulators.coq import CoqChecker, CoqLimits
from foundry.simulators.lean4 import LeanChecker, LeanOptions
from foundry.simulators.lean4 import ProofReport as LeanReport

from foundry.contract import Candidate, GroundTruth, SimulationFailed, Verdict
from foundry.execution.resources import Resources

from .options import MathOptions
from .records import Obligation, obligation_of

__all__ = ["ProofGroundTruth"]


class ProofGroundTruth(GroundTruth):
    """Checks a record's proof with its backend; warm Coq, Lean per check."""

    name = "proof-checker"

    def __init__(self, options: MathOptions) -> None:
        self.options = options
        self.resources = Resources(
            threads=1,
            # the prover's address-space limit plus the verifier itself
            memory_mb=options.memory_mb + 1024,
            # the first check of a child also starts the prover and loads the imports
            timeout_s=options.timeout_s + 60.0,
            startup_timeout_s=120.0,
            expected_cost_s=0.05,
            isolation="bwrap",
            max_processes=64,
        )
        self.sandbox_paths = (*COQ_PATHS, *_lean_paths(options))
        if options.backend == "lean4":
            # elan's proxies live on the user's PATH and read ~/.elan (the sandbox's HOME is
            # its work dir): pass both through
            self.pass_env = ("PATH", "ELAN_HOME", "LEAN_PATH")
        self._coq: CoqChecker | None = None
        self._lean: LeanChecker | None = None
        self._last_coq_imports: tuple[str, ...] | None = None

    @property
    def version(self) -> str:
        parts = [self._coq_checker().version()]
        if self.options.backend == "lean4":
            parts.append(self._lean_checker().version())
        return "; ".join(parts)

    def _coq_checker(self) -> CoqChecker:
        if self._coq is None:
            limits = CoqLimits(
                timeout_s=self.options.timeout_s,
                memory_mb=self.options.memory_mb,
                allowed_axioms=self.options.coq_allowed_axioms,
            )
            self._coq = CoqChecker(limits)
        return self._coq

    def _lean_checker(self) -> LeanChecker:
        if self._lean is None:
            opts = self.options
            found = shutil.which(opts.lean_command[0]) or ""
            if "ELAN_HOME" not in os.environ and "/.elan/" in found:
                os.environ["ELAN_HOME"] = found[: found.index("/.elan/") + len("/.elan")]
            self._lean = LeanChecker(
                LeanOptions(
                    command=tuple(opts.lean_command),
                    project_dir=opts.lean_project_dir,
                    timeout_s=opts.timeout_s,
                    allowed_axioms=tuple(opts.lean_allowed_axioms),
                    allow_native_decide=opts.allow_native_decide,
                )
            )
        return self._lean

    def prepare(self, candidate: Candidate) -> Obligation:
        try:
            return obligation_of(candidate.payload)
        except ValueError as exc:
            raise SimulationFailed(f"not a proof record: {exc}") from None

    def execute(self, job: Obligation, workdir: str) -> Any:
        if job.backend == "coq":
            self._last_coq_imports = job.imports
            return self._coq_checker().check(job.statement, job.proof, job.imports)
        try:
            return self._lean_checker().check(job.statement, job.proof, job.imports, workdir)
        except ValueError as exc:  # imports the Lean checker does not accept as module names
            return LeanReport("failed", str(exc))

    def parse(self, raw: Any, candidate: Candidate) -> Verdict:
        if raw.status == "error":
            raise SimulationFailed(f"the checker could not decide: {raw.reason}")
        measurements = {"axioms": float(len(raw.axioms))}
        sentences = getattr(raw, "sentences", None)
        if sentences is not None:
            measurements["sentences"] = float(sentences)
        return Verdict(
            passed=raw.status == "proved",
            reason=f"{raw.status}: {raw.reason}",
            measurements=measurements,
        )

    def reset(self) -> None:
        # the checker returns to its imports' state itself after every check; the execution
        # plane sweeps what an item started - the first item's prover too - so start it
        # again here, between items, as part of the warm state the next sweep keeps
        if self._coq is not None and self._last_coq_imports is not None:
            self._coq.warm(self._last_coq_imports)

    def close(self) -> None:
        if self._coq is not None:
            self._coq.close()
            self._coq = None
        self._lean = None  # stateless between checks: nothing to stop


def _lean_paths(options: MathOptions) -> tuple[str, ...]:
    """Host paths Lean needs inside the sandbox: its toolchain (often under ``~/.elan``, which
    the sandbox does not show) and the configured project."""
    paths: list[str] = []
    found = shutil.which(options.lean_command[0])
    if found is not None:
        if "/.elan/" in found:  # elan's proxies read the toolchains under ~/.elan
            paths.append(found[: found.index("/.elan/") + len("/.elan")])
        real = os.path.realpath(found)
        # <toolchain>/bin/lean: the toolchain holds lib/lean (Init, Std, Lean)
        paths.append(os.path.dirname(os.path.dirname(real)))
        if os.path.realpath(os.path.dirname(found)) != os.path.dirname(real):
            paths.append(os.path.dirname(found))  # elan's proxy directory
    if options.lean_project_dir:
        paths.append(os.path.abspath(options.lean_project_dir))
    return tuple(paths)
