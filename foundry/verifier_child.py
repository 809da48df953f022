"""The child side of :mod:`foundry.verifier_host` (``python -m foundry.verifier_child``).

Protocol frames go over a private duplicate of stdout; fd 1 itself is pointed at stderr so a
tool that prints (ngspice does, from C) cannot corrupt the protocol.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import traceback

from foundry.contract import (
    Candidate,
    FoundryError,
    GroundTruth,
    PluginError,
    SetupError,
    SimulationFailed,
    Verdict,
)
from foundry.verifier_host import PLUGIN_ERROR, SIMULATION_FAILED, read_frame, write_frame


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


class GroundTruthRunner:
    """Loads a domain's ground truth once and turns every call into (verdict, kind, error)."""

    def __init__(self, domain_spec: str, fidelity: str | None) -> None:
        from foundry.registry import DomainNotFound, load_domain

        try:
            self.domain = load_domain(domain_spec)
        except DomainNotFound as exc:
            raise SetupError(f"worker cannot load domain: {exc}") from exc
        self.gt: GroundTruth = self.domain.ground_truth(fidelity)
        if not isinstance(self.gt, GroundTruth):
            raise SetupError(f"{domain_spec}.ground_truth() did not return a GroundTruth")
        self.simulator = str(getattr(self.gt, "name", type(self.gt).__name__))
        self.simulator_version = str(self.gt.version)
        self.recycle_after = self.gt.recycle_after
        self._root = tempfile.mkdtemp(prefix="foundry-gt-")
        self._workdir = os.path.join(self._root, "work")
        os.mkdir(self._workdir)

    def _clean_workdir(self) -> None:
        """Empty the scratch directory between candidates (cheap when nothing was written)."""
        with os.scandir(self._workdir) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def run(self, candidate: Candidate) -> tuple[Verdict | None, str, str, float]:
        workdir = self._workdir
        started = time.perf_counter()
        try:
            verdict = self.gt.verify(candidate, workdir)
            if not isinstance(verdict, Verdict):
                raise PluginError(f"verify returned {type(verdict).__name__}, not a Verdict")
            verdict.validate(self.domain.properties)
            verdict = Verdict(
                passed=bool(verdict.passed),
                properties={k: float(v) for k, v in verdict.properties.items()},
                reason=str(verdict.reason),
                measurements={k: float(v) for k, v in verdict.measurements.items()},
            )
            return verdict, "", "", time.perf_counter() - started
        except SetupError:
            raise
        except SimulationFailed as exc:
            return None, SIMULATION_FAILED, _short(exc), time.perf_counter() - started
        except FoundryError as exc:
            return None, PLUGIN_ERROR, _short(exc), time.perf_counter() - started
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1:]
            at = f" at {where[0].filename}:{where[0].lineno}" if where else ""
            return None, PLUGIN_ERROR, _short(exc) + at, time.perf_counter() - started
        finally:
            self._clean_workdir()

    def close(self) -> None:
        try:
            self.gt.close()
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


def main() -> None:
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    proto_in = sys.stdin.buffer.fileno()
    message = read_frame(proto_in)
    assert isinstance(message, tuple) and message[0] == "init"
    _, spec, fidelity = message
    try:
        runner = GroundTruthRunner(spec, fidelity)
    except Exception as exc:
        write_frame(proto_out, ("setup_error", _short(exc)))
        return
    write_frame(
        proto_out, ("ready", runner.simulator, runner.simulator_version, runner.recycle_after)
    )
    while True:
        try:
            message = read_frame(proto_in)
        except EOFError:
            break
        if message[0] == "stop":
            break
        for key, candidate in message[1]:
            try:
                verdict, kind, error, wall = runner.run(candidate)
            except SetupError as exc:
                verdict, kind, error, wall = None, "setup_error", _short(exc), 0.0
            try:
                write_frame(proto_out, ("result", key, verdict, kind, error, wall))
            except Exception as exc:  # unpicklable garbage inside a verdict
                write_frame(proto_out, ("result", key, None, PLUGIN_ERROR, _short(exc), wall))
    runner.close()


if __name__ == "__main__":
    main()
