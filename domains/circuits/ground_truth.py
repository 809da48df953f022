"""The circuits ground truth: an ngspice AC sweep, read as gain and corner, judged on the spec.

prepare (pure) -> :class:`SpiceJob`; execute -> :class:`AcResponse` (ngspice); parse (pure)
-> Verdict. prepare and parse run without ngspice, so they are unit-tested on synthetic
transfer functions.

Besides the judged properties (gain, corner) every verdict records what the same simulation
yields for free as ``Verdict.measurements``: the -3 dB band edges and bandwidth of band-pass
and amplifier responses, and the DC operating point of every transistor (collector current,
V_CE, V_BE), taken from a ``.op`` run in the same ngspice call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from foundry.contract import Candidate, GroundTruth, SimulationFailed, Verdict
from foundry.execution.resources import Resources

from .measure import band_edges_hz, measure_response
from .netlist import GROUND, RESPONSE, spice_ref, to_netlist

#: Sweep span around the target for filters (decades each side) and points a decade.
FILTER_SPAN_DECADES = 3.0
FILTER_POINTS_PER_DECADE = 100
#: Amplifiers: a fixed wide sweep, since their corners are set by devices as much as by design.
AMPLIFIER_SWEEP_HZ = (1.0, 1e9)
AMPLIFIER_POINTS_PER_DECADE = 50
#: Component kinds whose DC operating point is recorded (ngspice device parameters read).
BIPOLAR_KINDS = ("npn",)
#: Device currents read from ngspice; terminal voltages come from the node voltages (the
#: device's own vbe/vbc are junction voltages inside its series resistances).
_BJT_PARAMS = ("ic", "ib")


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
    #: transistors whose operating point is read: (SPICE name lower case, c, b, e nodes)
    bipolars: tuple[tuple[str, str, str, str], ...] = ()


@dataclass(frozen=True)
class AcResponse:
    """Sampled transfer function v(out)/v(in), the DC operating point, and what it cost.

    ``operating_point`` maps ngspice's vector names (``@q1[ic]``, node names) to values; it is
    empty when no ``.op`` was run.
    """

    frequency_hz: np.ndarray
    h: np.ndarray
    elapsed_s: float = 0.0
    operating_point: Mapping[str, float] = field(default_factory=dict)


def operating_point_measurements(
    bipolars: tuple[tuple[str, str, str, str], ...], op: Mapping[str, float]
) -> dict[str, float]:
    """Collector and base current (mA, uA) and terminal V_CE, V_BE (V) of each transistor:
    ``q1_ic_ma``, ``q1_ib_ua``, ``q1_vce_v``, ``q1_vbe_v``. A transistor whose values ngspice
    did not report is left out."""

    def volt(node: str) -> float:
        return 0.0 if node == GROUND else op.get(node.lower(), math.nan)

    out: dict[str, float] = {}
    for ref, c, b, e in bipolars:
        values = [op.get(f"@{ref}[{p}]", math.nan) for p in _BJT_PARAMS]
        values += [volt(c) - volt(e), volt(b) - volt(e)]
        if not all(math.isfinite(v) for v in values):
            continue
        ic, ib, vce, vbe = values
        out[f"{ref}_ic_ma"] = 1e3 * ic
        out[f"{ref}_ib_ua"] = 1e6 * ib
        out[f"{ref}_vce_v"] = vce
        out[f"{ref}_vbe_v"] = vbe
    return out


def band_measurements(raw: AcResponse, response: str) -> dict[str, float]:
    """-3 dB band of a band-pass or amplifier response: ``f_high_hz``, ``f_low_hz`` (when the
    response falls 3 dB below its peak inside the sweep) and ``bandwidth_hz`` = high - low,
    with low = 0 for a response flat down to the sweep start (a DC-coupled stage)."""
    if response not in ("bandpass", "amplifier"):
        return {}
    lo, hi = band_edges_hz(raw.frequency_hz, raw.h)
    if hi is None:
        return {}
    out = {"f_high_hz": hi, "bandwidth_hz": hi - (lo or 0.0)}
    if lo is not None:
        out["f_low_hz"] = lo
    return out


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
    #: ngspice runs in-process and can take the interpreter down with it: a child process at
    #: least. It keeps a little state per run even after remcirc/destroy (measured < 1 KB a
    #: run, ~19 KB without the cleanup); a fresh child every 20k runs bounds it.
    resources = Resources(
        isolation="process",
        timeout_s=60.0,
        expected_cost_s=0.002,
        memory_mb=2048,
        recycle_after=20_000,
    )

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
            bipolars=self._bipolars(candidate),
        )

    def execute(self, job: SpiceJob, workdir: str) -> AcResponse:
        from foundry.simulators.ngspice import AcSweep, Analysis, OperatingPoint

        netlist = job.netlist
        analyses: list[Analysis] = [AcSweep(job.f_start_hz, job.f_stop_hz, job.points_per_decade)]
        if job.bipolars:
            # device currents are not saved by default; node voltages stay saved with "all"
            wanted = " ".join(f"@{b[0]}[{p}]" for b in job.bipolars for p in _BJT_PARAMS)
            netlist = f"{netlist}\n.save all {wanted}"
            analyses.insert(0, OperatingPoint())
        result = self._engine().run(netlist, analyses)
        frequency = np.real(result.get("ac", "frequency"))
        v_in = result.get("ac", job.input_node)
        v_out = result.get("ac", job.output_node)
        if np.any(np.abs(v_in) == 0):
            raise SimulationFailed("input node carries no AC signal")
        op = {
            name: float(np.real(values[0]))
            for name, values in result.vectors.get("op", {}).items()
            if values.size
        }
        return AcResponse(
            frequency_hz=frequency, h=v_out / v_in, elapsed_s=result.elapsed_s, operating_point=op
        )

    def parse(self, raw: AcResponse, candidate: Candidate) -> Verdict:
        response = RESPONSE[candidate.payload["topology"]]
        m = measure_response(raw.frequency_hz, raw.h, response)
        measurements = operating_point_measurements(self._bipolars(candidate), raw.operating_point)
        if not math.isfinite(m.gain_db):
            return Verdict(
                passed=False,
                properties={},
                reason=m.note or "no output signal",
                measurements=measurements,
            )
        measurements.update(band_measurements(raw, response))
        props: dict[str, float] = {"gain_db": float(m.gain_db)}
        if m.fc_hz is not None:
            props["fc_hz"] = float(m.fc_hz)
        passed, reason = judge(candidate.payload["spec"], m.gain_db, m.fc_hz)
        if passed and m.fc_hz is None:
            # a verdict that passes must carry every property; no corner means no pass
            passed, reason = False, m.note
        elif m.note and not passed:
            reason = f"{reason} ({m.note})"
        return Verdict(passed=passed, properties=props, reason=reason, measurements=measurements)

    @staticmethod
    def _bipolars(candidate: Candidate) -> tuple[tuple[str, str, str, str], ...]:
        return tuple(
            (spice_ref(c).lower(), *c["nodes"])
            for c in candidate.payload["components"]
            if c["kind"] in BIPOLAR_KINDS
        )
