"""One domain's ground truth, loaded once, turning every call into a verdict or a failure.

Used inside the verifier child (``process`` and ``bwrap`` isolation), in the worker itself
(``none``), and by the conformance suite's order-independence check, so that all three
exercise the same reset/health/cleanup sequence between items.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass

from foundry.contract import (
    Candidate,
    Domain,
    FoundryError,
    GroundTruth,
    PluginError,
    SetupError,
    SimulationFailed,
    Verdict,
)
from foundry.execution.outcomes import PLUGIN_ERROR, RESOURCE_LIMIT, SIMULATION_FAILED
from foundry.execution.spec import VerifierSpec


def short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


@dataclass
class ItemOutcome:
    """A verdict, or the failure kind and error of an item that has none."""

    verdict: Verdict | None
    kind: str = ""
    error: str = ""
    walltime_s: float = 0.0


def clean_directory(path: str) -> None:
    """Empty ``path`` (cheap when nothing was written), keeping the directory itself."""
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _normalised(verdict: Verdict) -> Verdict:
    return Verdict(
        passed=bool(verdict.passed),
        properties={k: float(v) for k, v in verdict.properties.items()},
        reason=str(verdict.reason),
        measurements={k: float(v) for k, v in verdict.measurements.items()},
    )


class VerifierRunner:
    """Loads ``spec``'s domain and ground truth; :meth:`verify` never raises for a candidate.

    Only :class:`SetupError` escapes (the tool is missing: the run must stop rather than
    reject everything).
    """

    def __init__(self, spec: VerifierSpec, workdir: str | None = None) -> None:
        from foundry.options import OptionsError
        from foundry.registry import DomainNotFound, load_domain

        self.spec = spec
        try:
            self.domain = load_domain(spec.domain_spec, options=json.loads(spec.options_json))
        except (DomainNotFound, OptionsError) as exc:
            raise SetupError(f"worker cannot load domain: {exc}") from exc
        self.gt: GroundTruth = self.domain.ground_truth(spec.fidelity)
        if not isinstance(self.gt, GroundTruth):
            raise SetupError(f"{spec.domain_spec}.ground_truth() did not return a GroundTruth")
        self.simulator = str(getattr(self.gt, "name", type(self.gt).__name__))
        self.simulator_version = str(self.gt.version)
        self._own_root = workdir is None
        self.workdir = workdir if workdir is not None else tempfile.mkdtemp(prefix="foundry-gt-")
        self.items = 0

    def verify(self, candidate: Candidate) -> ItemOutcome:
        started = time.perf_counter()
        try:
            verdict = self.gt.verify(candidate, self.workdir)
            if not isinstance(verdict, Verdict):
                raise PluginError(f"verify returned {type(verdict).__name__}, not a Verdict")
            verdict.validate(self.domain.properties)
            return ItemOutcome(_normalised(verdict), walltime_s=time.perf_counter() - started)
        except SetupError:
            raise
        except SimulationFailed as exc:
            kind, error = SIMULATION_FAILED, short_error(exc)
        except FoundryError as exc:
            kind, error = PLUGIN_ERROR, short_error(exc)
        except MemoryError as exc:
            kind, error = RESOURCE_LIMIT, f"memory limit: {short_error(exc)}"
        except OSError as exc:
            if exc.errno == errno.EFBIG:
                kind, error = RESOURCE_LIMIT, f"output limit: {short_error(exc)}"
            else:
                kind, error = PLUGIN_ERROR, short_error(exc) + _where(exc)
        except Exception as exc:
            kind, error = PLUGIN_ERROR, short_error(exc) + _where(exc)
        return ItemOutcome(None, kind, error, time.perf_counter() - started)

    def check(self, candidate: Candidate) -> str | None:
        return rule_check(self.domain, candidate)

    def after_item(self) -> str:
        """Clean the work dir, reset warm state, check health and memory. Returns why the
        verifier should be replaced before the next item, or ``""``."""
        self.items += 1
        clean_directory(self.workdir)
        try:
            self.gt.reset()
            problem = self.gt.health()
        except Exception as exc:
            return f"reset/health raised {short_error(exc)}"
        if problem:
            return f"unhealthy: {problem}"
        resources = self.spec.resources
        if resources.recycle_after and self.items >= resources.recycle_after:
            return f"recycled after {self.items} items"
        if resources.recycle_above_mb:
            from foundry.execution.proctree import rss_mb

            rss = rss_mb([os.getpid()])
            if rss > resources.recycle_above_mb:
                return f"recycled at {rss:.0f} MB resident"
        return ""

    def close(self) -> None:
        try:
            self.gt.close()
        finally:
            if self._own_root:
                shutil.rmtree(self.workdir, ignore_errors=True)


def rule_check(domain: Domain, candidate: Candidate) -> str | None:
    """The domain's rule check; a raise or a malformed answer is itself the reason."""
    try:
        reason = domain.check(candidate)
    except Exception as exc:
        return f"rule check raised {short_error(exc)}"
    if reason is not None and (not isinstance(reason, str) or not reason):
        return f"rule check returned {reason!r} instead of None or a reason"
    return reason


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)[-1:]
    return f" at {frames[0].filename}:{frames[0].lineno}" if frames else ""
