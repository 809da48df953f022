"""The circuits ground truth: an ngspice AC sweep, read as gain and corner, judged on the spec.

prepare (pure) -> :class:`SpiceJob`; execute -> :class:`AcResponse` (ngspice); parse (pure)
-> Verdict. prepare and parse run without ngspice, so they are unit-tested on synthetic
transfer functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from foundry.contract import Candidate, GroundTruth, SimulationFailed, Verdict

from .measure import measure_response
from .netlist import RESPONSE, to_netlist

#: Sweep span around the target for filters (decades each side) and points a decade.
FILTER_SPAN_DECADES = 3.0
FILTER_POINTS_PER_DECADE = 100
#: Amplifiers: a fixed wide sweep, since their corners are set by devices as much as by design.
AMPLIFIER_SWEEP_HZ = (1.0, 1e9)
AMPLIFIER_POINTS_PER_DECADE = 50


@dataclass(frozen=True)
class SpiceJob:
    """Everything execute needs; plain data so it pickles to a worker."""

    netlist: str
    f_start_hz: float
    f_stop_hz: float
    points_per_decade: int
    input_node: str
    output_node: str
    response: str


@dataclass(frozen=True)
class AcResponse:
    """Sampled transfer function v(out)/v(in) and what it cost."""

    frequency_hz: np.ndarray
    h: np.ndarray
    elapsed_s: float = 0.0


def sweep_for(payload: Mapping[str, Any]) -> tuple[float, float, int]:
    """AC sweep (start, stop, points/decade) wide enough to see the payload's corner(s)."""
    response = RESPONSE[payload["topology"]]
    fc = payload["target"]["fc_hz"]
    if response == "amplifier" or fc is None:
        return (*AMPLIFIER_SWEEP_HZ, AMPLIFIER_POINTS_PER_DECADE)
    span = 10.0**FILTER_SPAN_DECADES
    return (fc / span, fc * span, FILTER_POINTS_PER_DECADE)


def judge(
    spec: Mapping[str, float | None], gain_db: float, fc_hz: float | None
) -> tuple[bool, str]:
    """Pass when every bound of the spec holds; the reason names the first that does not."""
    checks = (
        ("gain_db", gain_db, spec.get("gain_db_min"), spec.get("gain_db_max")),
        ("fc_hz", fc_hz, spec.get("fc_hz_min"), spec.get("fc_hz_max")),
    )
    for name, value, lo, hi in checks:
        if lo is None and hi is None:
            continue
        if value is None or not math.isfinite(value):
            return False, f"{name} not measurable"
        if lo is not None and value < lo:
            return False, f"{name}={value:.6g} below spec min {lo:.6g}"
        if hi is not None and value > hi:
            return False, f"{name}={value:.6g} above spec max {hi:.6g}"
    return True, "spec met"


class CircuitsGroundTruth(GroundTruth):
    """ngspice (in-process, via PySpice) on one worker; the engine is started lazily and reused."""

    name: ClassVar[str] = "ngspice-ac"
    #: ngspice keeps a little state per run even after remcirc/destroy (measured < 1 KB a run,
    #: ~19 KB without the cleanup); a fresh worker process every 20k runs bounds it.
    recycle_after: ClassVar[int | None] = 20_000

    def __init__(self) -> None:
        self._runner: Any = None

    def _engine(self) -> Any:
        if self._runner is None:
            from foundry.simulators.ngspice import NgspiceRunner

            self._runner = NgspiceRunner()
        return self._runner

    @property
    def version(self) -> str:
        return str(self._engine().version)

    def prepare(self, candidate: Candidate) -> SpiceJob:
        payload = candidate.payload
        f_start, f_stop, ppd = sweep_for(payload)
        return SpiceJob(
            netlist=to_netlist(payload),
            f_start_hz=f_start,
            f_stop_hz=f_stop,
            points_per_decade=ppd,
            input_node=payload["input_node"],
            output_node=payload["output_node"],
            response=RESPONSE[payload["topology"]],
        )

    def execute(self, job: SpiceJob, workdir: str) -> AcResponse:
        from foundry.simulators.ngspice import AcSweep

        result = self._engine().run(
            job.netlist, [AcSweep(job.f_start_hz, job.f_stop_hz, job.points_per_decade)]
        )
        frequency = np.real(result.get("ac", "frequency"))
        v_in = result.get("ac", job.input_node)
        v_out = result.get("ac", job.output_node)
        if np.any(np.abs(v_in) == 0):
            raise SimulationFailed("input node carries no AC signal")
        return AcResponse(frequency_hz=frequency, h=v_out / v_in, elapsed_s=result.elapsed_s)

    def parse(self, raw: AcResponse, candidate: Candidate) -> Verdict:
        response = RESPONSE[candidate.payload["topology"]]
        m = measure_response(raw.frequency_hz, raw.h, response)
        if not math.isfinite(m.gain_db):
            return Verdict(passed=False, properties={}, reason=m.note or "no output signal")
        props: dict[str, float] = {"gain_db": float(m.gain_db)}
        if m.fc_hz is not None:
            props["fc_hz"] = float(m.fc_hz)
        passed, reason = judge(candidate.payload["spec"], m.gain_db, m.fc_hz)
        if passed and m.fc_hz is None:
            # a verdict that passes must carry every property; no corner means no pass
            passed, reason = False, m.note
        elif m.note and not passed:
            reason = f"{reason} ({m.note})"
        return Verdict(passed=passed, properties=props, reason=reason)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
        self._runner = None
