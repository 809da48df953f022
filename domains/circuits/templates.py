"""Topology templates: design a circuit for a target, then build it from real parts.

Each template turns a target (gain in dB, characteristic frequency in Hz) into ideal component
values with textbook design equations, and then *realises* them as a technician would: snap to
the E24 (resistors) or E12 (capacitors, inductors) series and draw each part within its
tolerance band. The spec is a window around the target, so rounding, part tolerance and the
approximations of the amplifier design equations decide pass or fail, as on a real bench.

A fraction of candidates is made deliberately marginal: the target is moved so the circuit's
closed-form estimate sits on the edge of the spec window, where pass and fail are both likely.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .netlist import TOPOLOGIES

TWO_PI = 2.0 * math.pi
#: Thermal voltage kT/q at ngspice's default 27 C.
VT_VOLT = 0.025865
#: Gain-bandwidth product of the LMV981 macro-model as simulated (the datasheet says 1.5 MHz).
LMV981_GBW_HZ = 1.45e6
#: Base-emitter voltage of the 2N2222A model near 1 mA.
VBE_VOLT = 0.68
#: Current gain assumed by the bias design (the model's BF is higher; stiff dividers cover it).
BETA_DESIGN = 150.0

E12 = (1.0, 1.2, 1.5, 1.8, 2.2, 2.7, 3.3, 3.9, 4.7, 5.6, 6.8, 8.2)
E24 = (1.0, 1.1, 1.2, 1.3, 1.5, 1.6, 1.8, 2.0, 2.2, 2.4, 2.7, 3.0,
       3.3, 3.6, 3.9, 4.3, 4.7, 5.1, 5.6, 6.2, 6.8, 7.5, 8.2, 9.1)  # fmt: skip

STEERING_DEFAULTS: dict[str, float] = {
    **{f"weight_{t}": 1.0 for t in TOPOLOGIES},
    "log10_fc_min_hz": 1.0,
    "log10_fc_max_hz": 6.0,
    "component_tolerance": 0.05,
    "spec_fc_tol_rel": 0.05,
    "spec_gain_tol_db": 0.5,
    "marginal_fraction": 0.1,
}


def snap(value: float, series: tuple[float, ...]) -> float:
    """Nearest preferred value (in log distance) of an E-series."""
    exponent = math.floor(math.log10(value))
    mantissa = value / 10.0**exponent
    # candidates: the series members around the mantissa, and the next decade's 1.0
    i = bisect.bisect_left(series, mantissa)
    lower = series[i - 1] if i > 0 else series[-1] / 10.0
    upper = series[i] if i < len(series) else 10.0
    best = lower if mantissa * mantissa < lower * upper else upper  # geometric midpoint
    return best * 10.0**exponent


def _sig(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


@dataclass
class _Ctx:
    rng: np.random.Generator
    tolerance: float

    def part(self, ideal: float, series: tuple[float, ...]) -> float:
        """A real part for an ideal value: preferred value, then a draw within tolerance."""
        nominal = snap(ideal, series)
        return _sig(nominal * (1.0 + self.rng.uniform(-self.tolerance, self.tolerance)))

    def r(self, ideal: float) -> float:
        return self.part(ideal, E24)

    def c(self, ideal: float) -> float:
        return self.part(ideal, E12)

    def ind(self, ideal: float) -> float:
        return self.part(ideal, E12)

    def logu(self, lo: float, hi: float) -> float:
        return float(10.0 ** self.rng.uniform(math.log10(lo), math.log10(hi)))


def _res(name: str, a: str, b: str, r_ohm: float) -> dict[str, Any]:
    return {"name": name, "kind": "resistor", "nodes": [a, b], "r_ohm": r_ohm}


def _cap(name: str, a: str, b: str, c_farad: float) -> dict[str, Any]:
    return {"name": name, "kind": "capacitor", "nodes": [a, b], "c_farad": c_farad}


def _ind(name: str, a: str, b: str, l_henry: float) -> dict[str, Any]:
    return {"name": name, "kind": "inductor", "nodes": [a, b], "l_henry": l_henry}


def _vdc(name: str, plus: str, minus: str, v_volt: float) -> dict[str, Any]:
    return {"name": name, "kind": "dc_voltage", "nodes": [plus, minus], "v_volt": v_volt}


def _value(components: list[dict[str, Any]], name: str) -> float:
    for c in components:
        if c["name"] == name:
            for key in ("r_ohm", "c_farad", "l_henry", "v_volt"):
                if key in c:
                    return float(c[key])
    raise KeyError(name)


def rlc_lowpass_corner_ratio(q: float) -> float:
    """fc / f0 of the second-order low-pass with quality factor ``q`` (-3 dB from DC gain)."""
    a = 1.0 - 1.0 / (2.0 * q * q)
    return math.sqrt(a + math.sqrt(a * a + 1.0))


@dataclass(frozen=True)
class Design:
    """A realised circuit: components, nodes, the designer's target and the estimate of what
    the realised parts give (closed form; used to place marginal candidates)."""

    components: list[dict[str, Any]]
    input_node: str
    output_node: str
    target_gain_db: float
    target_fc_hz: float
    estimate_gain_db: float
    estimate_fc_hz: float


# -- templates ---------------------------------------------------------------------------------


def _rc_lowpass(ctx: _Ctx, fc_hz: float) -> Design:
    r_eff = ctx.logu(300.0, 30e3)  # R1 || RL
    c_nom = snap(1.0 / (TWO_PI * fc_hz * r_eff), E12)
    r_eff = 1.0 / (TWO_PI * fc_hz * c_nom)
    load_ratio = ctx.logu(2.0, 100.0)  # RL / (R1 || RL)
    r_load = load_ratio * r_eff
    r_series = r_eff * load_ratio / (load_ratio - 1.0)
    comps = [
        _res("R1", "in", "out", ctx.r(r_series)),
        _cap("C1", "out", "0", ctx.c(c_nom)),
        _res("RL", "out", "0", ctx.r(r_load)),
    ]
    r1, c1, rl = (_value(comps, n) for n in ("R1", "C1", "RL"))
    return Design(
        comps, "in", "out",
        target_gain_db=20 * math.log10((load_ratio - 1.0) / load_ratio),
        target_fc_hz=fc_hz,
        estimate_gain_db=20 * math.log10(rl / (r1 + rl)),
        estimate_fc_hz=1.0 / (TWO_PI * (r1 * rl / (r1 + rl)) * c1),
    )  # fmt: skip


def _rc_highpass(ctx: _Ctx, fc_hz: float) -> Design:
    r_total = ctx.logu(1e3, 100e3)  # source + shunt resistance
    c_nom = snap(1.0 / (TWO_PI * fc_hz * r_total), E12)
    r_total = 1.0 / (TWO_PI * fc_hz * c_nom)
    ratio = ctx.logu(2.0, 100.0)  # R1 / RS
    comps = [
        _res("RS", "in", "a", ctx.r(r_total / (ratio + 1.0))),
        _cap("C1", "a", "out", ctx.c(c_nom)),
        _res("R1", "out", "0", ctx.r(r_total * ratio / (ratio + 1.0))),
    ]
    rs, c1, r1 = (_value(comps, n) for n in ("RS", "C1", "R1"))
    return Design(
        comps, "in", "out",
        target_gain_db=20 * math.log10(ratio / (ratio + 1.0)),
        target_fc_hz=fc_hz,
        estimate_gain_db=20 * math.log10(r1 / (rs + r1)),
        estimate_fc_hz=1.0 / (TWO_PI * (rs + r1) * c1),
    )  # fmt: skip


def _z0_for(ctx: _Ctx, f0_hz: float) -> float:
    """Characteristic impedance sqrt(L/C), kept where L <= 10 H and C >= 10 pF."""
    z0 = ctx.logu(30.0, 3000.0)
    return min(z0, 10.0 * TWO_PI * f0_hz, 1.0 / (TWO_PI * f0_hz * 1e-11))


def _rlc_lowpass(ctx: _Ctx, fc_hz: float) -> Design:
    q = float(ctx.rng.uniform(0.5, 1.2))
    f0 = fc_hz / rlc_lowpass_corner_ratio(q)
    z0 = _z0_for(ctx, f0)
    comps = [
        _res("R1", "in", "a", ctx.r(z0 / q)),
        _ind("L1", "a", "out", ctx.ind(z0 / (TWO_PI * f0))),
        _cap("C1", "out", "0", ctx.c(1.0 / (TWO_PI * f0 * z0))),
    ]
    r1, l1, c1 = (_value(comps, n) for n in ("R1", "L1", "C1"))
    q_real = math.sqrt(l1 / c1) / r1
    return Design(
        comps, "in", "out",
        target_gain_db=0.0,
        target_fc_hz=fc_hz,
        estimate_gain_db=0.0,
        estimate_fc_hz=rlc_lowpass_corner_ratio(q_real) / (TWO_PI * math.sqrt(l1 * c1)),
    )  # fmt: skip


def _rlc_bandpass(ctx: _Ctx, fc_hz: float) -> Design:
    q = ctx.logu(1.0, 10.0)
    z0 = _z0_for(ctx, fc_hz)
    r_total = z0 / q
    ratio = ctx.logu(2.0, 50.0)  # R1 / RS
    comps = [
        _res("RS", "in", "a", ctx.r(r_total / (ratio + 1.0))),
        _ind("L1", "a", "b", ctx.ind(z0 / (TWO_PI * fc_hz))),
        _cap("C1", "b", "out", ctx.c(1.0 / (TWO_PI * fc_hz * z0))),
        _res("R1", "out", "0", ctx.r(r_total * ratio / (ratio + 1.0))),
    ]
    rs, l1, c1, r1 = (_value(comps, n) for n in ("RS", "L1", "C1", "R1"))
    return Design(
        comps, "in", "out",
        target_gain_db=20 * math.log10(ratio / (ratio + 1.0)),
        target_fc_hz=fc_hz,
        estimate_gain_db=20 * math.log10(r1 / (rs + r1)),
        estimate_fc_hz=1.0 / (TWO_PI * math.sqrt(l1 * c1)),
    )  # fmt: skip


def _bjt_ce(ctx: _Ctx, fc_hz: float) -> Design:
    """Voltage-divider biased 2N2222A stage, emitter partly bypassed, load capacitor sets fc.

    Midband gain ~ (Rc || RL) / (re + Re1) times the source divider; fc ~ 1/(2 pi (Rc||RL) CL).
    """
    gain_db = float(ctx.rng.uniform(12.0, 26.0))
    vcc = float(ctx.rng.choice([9.0, 12.0, 15.0]))
    ic = ctx.logu(0.5e-3, 3e-3)
    rc = 0.45 * vcc / ic
    rl = rc * ctx.logu(1.0, 10.0)
    rp = rc * rl / (rc + rl)
    re_total = 0.15 * vcc / ic
    re_small = VT_VOLT / ic
    vb = 0.15 * vcc + VBE_VOLT
    i_div = ic / 10.0
    rb2 = vb / i_div
    rb1 = (vcc - vb) / (i_div + ic / BETA_DESIGN)
    rs = ctx.logu(50.0, 600.0)
    av = 10.0 ** (gain_db / 20.0)
    # source divider with the base input resistance estimated at BETA_DESIGN
    for _ in range(3):
        re1 = max(rp / av - re_small, 1.0)
        rin = 1.0 / (1.0 / rb1 + 1.0 / rb2 + 1.0 / (BETA_DESIGN * (re_small + re1)))
        av = 10.0 ** (gain_db / 20.0) * (rs + rin) / rin
    re1 = max(rp / av - re_small, 1.0)
    comps = [
        _vdc("VCC", "vcc", "0", vcc),
        _res("RS", "in", "s", ctx.r(rs)),
        _cap("CIN", "s", "b", ctx.c(10e-6)),
        _res("RB1", "vcc", "b", ctx.r(rb1)),
        _res("RB2", "b", "0", ctx.r(rb2)),
        {"name": "Q1", "kind": "npn", "nodes": ["c", "b", "e"], "model": "2N2222A"},
        _res("RC", "vcc", "c", ctx.r(rc)),
        _res("RE1", "e", "e2", ctx.r(re1)),
        _res("RE2", "e2", "0", ctx.r(max(re_total - re1, 1.0))),
        _cap("CE", "e2", "0", ctx.c(470e-6)),
        _cap("COUT", "c", "out", ctx.c(10e-6)),
        _res("RL", "out", "0", ctx.r(rl)),
        _cap("CL", "out", "0", ctx.c(1.0 / (TWO_PI * fc_hz * rp))),
    ]
    v = {n: _value(comps, n) for n in ("RS", "RB1", "RB2", "RC", "RE1", "RE2", "RL", "CL")}
    vb_real = vcc * v["RB2"] / (v["RB1"] + v["RB2"])
    ic_real = max((vb_real - VBE_VOLT) / (v["RE1"] + v["RE2"]), 1e-6)
    rp_real = v["RC"] * v["RL"] / (v["RC"] + v["RL"])
    re_real = VT_VOLT / ic_real
    rin_real = 1.0 / (1.0 / v["RB1"] + 1.0 / v["RB2"] + 1.0 / (BETA_DESIGN * (re_real + v["RE1"])))
    est = rp_real / (re_real + v["RE1"]) * rin_real / (rin_real + v["RS"])
    return Design(
        comps, "in", "out",
        target_gain_db=gain_db,
        target_fc_hz=fc_hz,
        estimate_gain_db=20 * math.log10(est),
        estimate_fc_hz=1.0 / (TWO_PI * rp_real * v["CL"]),
    )  # fmt: skip


def _feedback_pole_hz(noise_gain: float, fc_hz: float) -> float:
    """Feedback-capacitor pole needed so that it and the op-amp's closed-loop pole
    (GBW / noise gain) together give ``fc_hz`` (two real poles: 1/fc^2 ~ 1/f1^2 + 1/f2^2)."""
    f_amp = LMV981_GBW_HZ / noise_gain
    return 1.0 / math.sqrt(max(1.0 / fc_hz**2 - 1.0 / f_amp**2, 1e-30))


def _clip_opamp_fc(gain: float, fc_hz: float) -> float:
    """Keep the target corner below the op-amp's own closed-loop pole, and above 10 Hz."""
    return max(min(fc_hz, LMV981_GBW_HZ / (1.0 + gain) / 1.5), 10.0)


def _supplies() -> list[dict[str, Any]]:
    return [_vdc("VP", "vp", "0", 2.5), _vdc("VN", "vn", "0", -2.5)]


def _opamp_inverting(ctx: _Ctx, fc_hz: float) -> Design:
    gain_db = float(ctx.rng.uniform(0.0, 30.0))
    gain = 10.0 ** (gain_db / 20.0)
    fc_hz = _clip_opamp_fc(gain, fc_hz)
    r_in = ctx.logu(1e3, 20e3)
    r_f = gain * r_in
    f_cap = _feedback_pole_hz(1.0 + gain, fc_hz)
    comps = [
        *_supplies(),
        _res("RIN", "in", "inn", ctx.r(r_in)),
        _res("RF", "inn", "out", ctx.r(r_f)),
        _cap("CF", "inn", "out", ctx.c(1.0 / (TWO_PI * r_f * f_cap))),
        {"name": "U1", "kind": "opamp", "nodes": ["0", "inn", "vp", "vn", "out"],
         "model": "LMV981"},
        _res("RL", "out", "0", ctx.r(10e3)),
    ]  # fmt: skip
    rin, rf, cf = (_value(comps, n) for n in ("RIN", "RF", "CF"))
    g_real = rf / rin
    f1 = 1.0 / (TWO_PI * rf * cf)
    f2 = LMV981_GBW_HZ / (1.0 + g_real)
    return Design(
        comps, "in", "out",
        target_gain_db=gain_db,
        target_fc_hz=fc_hz,
        estimate_gain_db=20 * math.log10(g_real),
        estimate_fc_hz=1.0 / math.sqrt(1.0 / f1**2 + 1.0 / f2**2),
    )  # fmt: skip


def _noninv_corner_factor(gain: float) -> float:
    """For H = (G + s tau)/(1 + s tau) the -3 dB point is at x = G / sqrt(G^2 - 2) / tau."""
    return gain / math.sqrt(gain * gain - 2.0)


def _opamp_noninverting(ctx: _Ctx, fc_hz: float) -> Design:
    gain_db = float(ctx.rng.uniform(8.0, 30.0))
    gain = 10.0 ** (gain_db / 20.0)
    fc_hz = _clip_opamp_fc(gain, fc_hz)
    r_g = ctx.logu(1e3, 20e3)
    r_f = (gain - 1.0) * r_g
    f_cap = _feedback_pole_hz(gain, fc_hz) / _noninv_corner_factor(gain)
    comps = [
        *_supplies(),
        _res("RG", "inn", "0", ctx.r(r_g)),
        _res("RF", "inn", "out", ctx.r(r_f)),
        _cap("CF", "inn", "out", ctx.c(1.0 / (TWO_PI * r_f * f_cap))),
        {"name": "U1", "kind": "opamp", "nodes": ["in", "inn", "vp", "vn", "out"],
         "model": "LMV981"},
        _res("RL", "out", "0", ctx.r(10e3)),
    ]  # fmt: skip
    rg, rf, cf = (_value(comps, n) for n in ("RG", "RF", "CF"))
    g_real = 1.0 + rf / rg
    f1 = _noninv_corner_factor(g_real) / (TWO_PI * rf * cf)
    f2 = LMV981_GBW_HZ / g_real
    return Design(
        comps, "in", "out",
        target_gain_db=gain_db,
        target_fc_hz=fc_hz,
        estimate_gain_db=20 * math.log10(g_real),
        estimate_fc_hz=1.0 / math.sqrt(1.0 / f1**2 + 1.0 / f2**2),
    )  # fmt: skip


TEMPLATES: dict[str, Callable[[_Ctx, float], Design]] = {
    "rc_lowpass": _rc_lowpass,
    "rc_highpass": _rc_highpass,
    "rlc_lowpass": _rlc_lowpass,
    "rlc_bandpass": _rlc_bandpass,
    "bjt_ce": _bjt_ce,
    "opamp_inverting": _opamp_inverting,
    "opamp_noninverting": _opamp_noninverting,
}

#: Where each topology's characteristic frequency can sensibly lie (log10 Hz).
FC_LIMITS_LOG10: dict[str, tuple[float, float]] = {
    "rc_lowpass": (0.0, 7.0),
    "rc_highpass": (0.0, 7.0),
    "rlc_lowpass": (1.0, 7.0),
    "rlc_bandpass": (1.0, 7.0),
    "bjt_ce": (4.0, 6.0),
    "opamp_inverting": (2.0, 5.0),
    "opamp_noninverting": (2.0, 5.0),
}


def steering_value(steering: Mapping[str, float], key: str) -> float:
    return float(steering.get(key, STEERING_DEFAULTS[key]))


@dataclass(frozen=True)
class _Plan:
    """The steering knobs resolved once per batch (they do not change within one)."""

    topology_cdf: np.ndarray
    fc_ranges_log10: dict[str, tuple[float, float]]
    tolerance: float
    fc_tol: float
    gain_tol: float
    marginal_fraction: float

    @classmethod
    def of(cls, steering: Mapping[str, float]) -> _Plan:
        weights = np.array([max(steering_value(steering, f"weight_{t}"), 0.0) for t in TOPOLOGIES])
        if weights.sum() <= 0:
            raise ValueError("all topology weights are zero")
        cdf = np.cumsum(weights / weights.sum())
        lo = steering_value(steering, "log10_fc_min_hz")
        hi = steering_value(steering, "log10_fc_max_hz")
        ranges = {}
        for topology in TOPOLOGIES:
            t_lo, t_hi = FC_LIMITS_LOG10[topology]
            a, b = min(max(lo, t_lo), t_hi), max(min(hi, t_hi), t_lo)
            ranges[topology] = (b, a) if b < a else (a, b)
        return cls(
            topology_cdf=cdf / cdf[-1],
            fc_ranges_log10=ranges,
            tolerance=max(steering_value(steering, "component_tolerance"), 0.0),
            fc_tol=max(steering_value(steering, "spec_fc_tol_rel"), 1e-3),
            gain_tol=max(steering_value(steering, "spec_gain_tol_db"), 1e-3),
            marginal_fraction=steering_value(steering, "marginal_fraction"),
        )


def generate_payloads(
    n: int, rng: np.random.Generator, steering: Mapping[str, float]
) -> list[dict[str, Any]]:
    """``n`` candidate payloads; the same as ``n`` calls of :func:`generate_payload`."""
    plan = _Plan.of(steering)
    return [_payload(rng, plan) for _ in range(n)]


def generate_payload(rng: np.random.Generator, steering: Mapping[str, float]) -> dict[str, Any]:
    """One candidate payload. Consumes ``rng`` in a fixed order (deterministic)."""
    return _payload(rng, _Plan.of(steering))


#: a mutation's nominal step of the design frequency, in decades (mutation_scale 1)
MUTATION_FC_DECADES = 0.15
#: above mutation_scale 1, the chance a mutation also redraws the topology grows this much
#: per unit of scale (capped at one half): exploration the monitors can turn up
TOPOLOGY_SWITCH_PER_SCALE = 0.1


def mutate_payloads(
    parents: list[dict[str, Any]],
    rng: np.random.Generator,
    steering: Mapping[str, float],
    mutation_scale: float,
) -> list[dict[str, Any]]:
    """One child per parent payload: the parent's topology redesigned for a design frequency
    moved by ``10 ** N(0, MUTATION_FC_DECADES * mutation_scale)`` (kept inside the steering's
    and the topology's range), and - for a raised scale - now and then a new topology. The
    child is designed afresh, so it is as well-formed as any generated circuit."""
    plan = _Plan.of(steering)
    switch = min(max(mutation_scale - 1.0, 0.0) * TOPOLOGY_SWITCH_PER_SCALE, 0.5)
    out = []
    for parent in parents:
        topology = parent["topology"]
        if topology not in TEMPLATES or rng.random() < switch:
            topology = TOPOLOGIES[int(plan.topology_cdf.searchsorted(rng.random(), side="right"))]
        lo, hi = plan.fc_ranges_log10[topology]
        fc0 = parent.get("target", {}).get("fc_hz") or 10.0 ** ((lo + hi) / 2)
        log_fc = math.log10(fc0) + rng.normal(0.0, MUTATION_FC_DECADES * mutation_scale)
        out.append(_payload(rng, plan, topology, float(10.0 ** min(max(log_fc, lo), hi))))
    return out


def _payload(
    rng: np.random.Generator,
    plan: _Plan,
    topology: str | None = None,
    fc_hz: float | None = None,
) -> dict[str, Any]:
    if topology is None:
        # the draw Generator.choice(p=...) makes, without its per-call argument checks
        topology = TOPOLOGIES[int(plan.topology_cdf.searchsorted(rng.random(), side="right"))]
    if fc_hz is None:
        lo, hi = plan.fc_ranges_log10[topology]
        fc_hz = float(10.0 ** rng.uniform(lo, hi))
    ctx = _Ctx(rng=rng, tolerance=plan.tolerance)
    design = TEMPLATES[topology](ctx, fc_hz)

    fc_tol, gain_tol = plan.fc_tol, plan.gain_tol
    target_fc, target_gain = design.target_fc_hz, design.target_gain_db
    marginal = bool(rng.uniform() < plan.marginal_fraction)
    if marginal:
        # put the closed-form estimate on an edge of the frequency window
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        target_fc = design.estimate_fc_hz / (1.0 + side * fc_tol * rng.uniform(0.9, 1.1))
        target_gain = design.estimate_gain_db
    return {
        "topology": topology,
        "components": design.components,
        "input_node": design.input_node,
        "output_node": design.output_node,
        "target": {"gain_db": _sig(target_gain, 6), "fc_hz": _sig(target_fc, 6)},
        "spec": {
            "gain_db_min": _sig(target_gain - gain_tol, 6),
            "gain_db_max": _sig(target_gain + gain_tol, 6),
            "fc_hz_min": _sig(target_fc * (1.0 - fc_tol), 6),
            "fc_hz_max": _sig(target_fc * (1.0 + fc_tol), 6),
        },
        "meta": {"marginal": marginal},
    }
