"""Test domains for the execution plane: a verifier that does what its payload says.

``ProbeDomain``'s ground truth runs a named probe inside the verifier child - exactly where a
hostile candidate's code would run - and reports what happened as measurements: whether a
socket reached the host, whether a write outside the work dir landed, what the environment
holds. Tests then check the host side (nothing received, nothing written, nothing left
running). ``StatefulDomain`` is deliberately order-dependent, for the conformance check.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from foundry.contract import Candidate, Domain, GroundTruth, Predictions, Verdict
from foundry.execution.resources import Resources


def _flag(ok: bool) -> float:
    return 1.0 if ok else 0.0


class _Surrogate:
    def fit(self, candidates: Sequence[Candidate], verdicts: Sequence[Verdict]) -> None:
        return None

    def predict(self, candidates: Sequence[Candidate]) -> Predictions:
        return Predictions(n=len(candidates), p_pass=np.full(len(candidates), 0.5))


class ProbeTruth(GroundTruth):
    name = "probe"

    def __init__(self, resources: Resources, scale: float) -> None:
        self.resources = resources
        self.scale = scale

    @property
    def version(self) -> str:
        return "1"

    def prepare(self, candidate: Candidate) -> dict[str, Any]:
        return dict(candidate.payload)

    def execute(self, job: dict[str, Any], workdir: str) -> dict[str, float]:
        probe = job["probe"]
        arg = job.get("arg")
        out: dict[str, float] = {"scale": self.scale}
        if probe == "ok":
            pass
        elif probe == "sleep":
            time.sleep(float(arg))
        elif probe == "env":
            out["omp_threads"] = float(os.environ.get("OMP_NUM_THREADS", "-1"))
            out["mkl_threads"] = float(os.environ.get("MKL_NUM_THREADS", "-1"))
            out["secret_visible"] = _flag("FOUNDRY_TEST_SECRET" in os.environ)
            out["cwd_is_workdir"] = _flag(
                os.path.realpath(os.getcwd()) == os.path.realpath(workdir)
            )
        elif probe == "connect":
            host, port = arg
            try:
                with socket.create_connection((host, int(port)), timeout=2) as sock:
                    sock.sendall(b"escaped")
                out["connected"] = 1.0
            except OSError:
                out["connected"] = 0.0
        elif probe == "write":
            wrote = 0
            for path in arg:
                try:
                    with open(path, "w") as fh:
                        fh.write("escaped")
                    wrote += 1
                except OSError:
                    pass
            out["wrote"] = float(wrote)
            with open(os.path.join(workdir, "inside.txt"), "w") as fh:
                fh.write("fine")
            out["wrote_workdir"] = 1.0
        elif probe == "read":
            try:
                with open(arg) as fh:
                    fh.read()
                out["read"] = 1.0
            except OSError:
                out["read"] = 0.0
        elif probe == "listdir_workdir":
            out["files"] = float(len(os.listdir(workdir)))
        elif probe == "daemon":
            # double fork + setsid: the classic way to outlive whoever started you
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import os,sys,time\nif os.fork(): sys.exit(0)\nos.setsid()\n"
                    f"time.sleep({float(arg)})",
                ],
                start_new_session=True,
            )
            time.sleep(0.2)
        elif probe == "memory":
            block = bytearray(int(arg) * 1024 * 1024)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(1.0)
        elif probe == "cpu_child":
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import signal\n"
                    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                    "while True: pass",
                ]
            )
            time.sleep(float(arg))
        elif probe == "fork_many":
            procs = [subprocess.Popen(["sleep", "30"]) for _ in range(int(arg))]
            time.sleep(2.0)
            out["spawned"] = float(len(procs))
        elif probe == "print":
            chunk = "x" * (1024 * 1024)
            for _ in range(int(arg)):
                sys.stderr.write(chunk)
            sys.stderr.flush()
        elif probe in ("garbage_frame", "half_frame", "oversized_frame"):
            import struct

            from foundry.execution import child

            fd = child.PROTOCOL_OUT
            assert fd is not None, "not running in a verifier child"
            if probe == "garbage_frame":
                os.write(fd, struct.pack("!I", 5) + b"\xff{no}")
            elif probe == "half_frame":
                os.write(fd, struct.pack("!I", 100) + b'{"op": "res')
                time.sleep(60)
            else:
                os.write(fd, struct.pack("!I", 2**31))
                time.sleep(60)
        elif probe == "fds":
            # what a program the verifier runs inherits: never the protocol pipes
            done = subprocess.run(
                [sys.executable, "-c", "import os; print(len(os.listdir('/proc/self/fd')))"],
                capture_output=True,
                text=True,
                close_fds=False,
                check=True,
            )
            out["child_fds"] = float(done.stdout.strip())
        elif probe == "exit":
            os._exit(int(arg))
        else:
            raise ValueError(f"unknown probe {probe!r}")
        return out

    def parse(self, raw: dict[str, float], candidate: Candidate) -> Verdict:
        return Verdict(passed=True, measurements=raw)


@dataclass(frozen=True)
class ProbeOptions:
    scale: float = 1.0
    label: str = "default"
    threads: int = 1
    timeout_s: float = 20.0
    expected_cost_s: float | None = None
    isolation: str = "none"


class ProbeDomain(Domain):
    name: ClassVar[str] = "probe"
    version: ClassVar[str] = "1"
    payload_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "required": ["probe"],
        "properties": {"probe": {"type": "string"}},
    }
    Options = ProbeOptions

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        return [Candidate({"probe": "ok", "i": int(rng.integers(1 << 30))}) for _ in range(n)]

    def check(self, candidate: Candidate) -> str | None:
        return None

    def featurize(self, candidates: Sequence[Candidate]) -> np.ndarray:
        return np.zeros((len(candidates), 1))

    def surrogate(self) -> _Surrogate:
        return _Surrogate()

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        opts = self.options
        resources = Resources(
            threads=opts.threads,
            timeout_s=opts.timeout_s,
            expected_cost_s=opts.expected_cost_s,
            isolation=opts.isolation,  # type: ignore[arg-type]
        )
        return ProbeTruth(resources, opts.scale)


class UntrustedProbeDomain(ProbeDomain):
    """Its rule check parses "hostile" input: some payloads hang it, some kill it."""

    name: ClassVar[str] = "untrusted_probe"
    untrusted_check: ClassVar[bool] = True

    def check(self, candidate: Candidate) -> str | None:
        probe = candidate.payload["probe"]
        if probe == "hang_check":
            while True:
                pass
        if probe == "crash_check":
            os._exit(9)
        if probe == "reject_check":
            return "rejected by the rules"
        return None


class StatefulTruth(ProbeTruth):
    """Wrong on purpose: the verdict depends on how many items this instance saw before."""

    def execute(self, job: dict[str, Any], workdir: str) -> dict[str, float]:
        self.seen = getattr(self, "seen", 0) + 1
        return {"seen": float(self.seen), "x": float(job.get("i", 0) % 7)}

    def parse(self, raw: dict[str, float], candidate: Candidate) -> Verdict:
        return Verdict(passed=raw["seen"] <= 1, measurements=raw)


class StatefulDomain(ProbeDomain):
    name: ClassVar[str] = "stateful"

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return StatefulTruth(Resources(), 1.0)


class ResettingStatefulTruth(StatefulTruth):
    """The same state, undone by ``reset``: order-independent again."""

    def reset(self) -> None:
        self.seen = 0


class ResettingStatefulDomain(ProbeDomain):
    name: ClassVar[str] = "resetting"

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return ResettingStatefulTruth(Resources(), 1.0)


class SickTruth(StatefulTruth):
    """Reports itself unfit after every item: the host must replace it each time."""

    def health(self) -> str | None:
        return "lost its checker process"


class SickDomain(ProbeDomain):
    name: ClassVar[str] = "sick"

    def ground_truth(self, fidelity: str | None = None) -> GroundTruth:
        return SickTruth(Resources(), 1.0)
