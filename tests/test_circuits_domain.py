"""Circuits domain without ngspice: generator, rule layer, prepare/parse, features, graph."""

from __future__ import annotations

import copy
import math
from typing import Any

import jsonschema
import numpy as np
import pytest
from foundry.domains.circuits import CircuitsDomain
from foundry.domains.circuits.graph import (
    EDGE_DIM,
    GLOBAL_DIM,
    NODE_DIM,
    graph_arrays,
    to_graph,
)
from foundry.domains.circuits.ground_truth import (
    AcResponse,
    CircuitsGroundTruth,
    band_measurements,
    judge,
    operating_point_measurements,
)
from foundry.domains.circuits.measure import measure_response
from foundry.domains.circuits.netlist import TOPOLOGIES, to_netlist
from foundry.domains.circuits.templates import E24, snap

from foundry.contract import Candidate, Verdict
from foundry.testing import check_domain

DOMAIN = CircuitsDomain()


def _batch(n: int = 140, seed: int = 3, **steer: float) -> list[Candidate]:
    return DOMAIN.generate(n, np.random.default_rng(seed), {**DOMAIN.steering_defaults, **steer})


def _only(topology: str) -> dict[str, float]:
    return {f"weight_{t}": float(t == topology) for t in TOPOLOGIES}


def test_conformance_without_ground_truth() -> None:
    check_domain(DOMAIN, ground_truth=False)


def test_declared_properties_and_knobs() -> None:
    props = {p.name: p for p in DOMAIN.properties}
    assert props["gain_db"].abs_tol == 0.5 and props["gain_db"].unit == "dB"
    assert props["fc_hz"].rel_tol == 0.05 and props["fc_hz"].unit == "Hz"
    assert DOMAIN.has_pass_fail
    assert all(isinstance(v, float) for v in DOMAIN.steering_defaults.values())


def test_generate_is_deterministic_schema_valid_and_covers_topologies() -> None:
    a, b = _batch(seed=11), _batch(seed=11)
    assert [c.payload for c in a] == [c.payload for c in b]
    assert [c.payload for c in a] != [c.payload for c in _batch(seed=12)]
    for c in a:
        jsonschema.validate(c.payload, DOMAIN.payload_schema)
        assert DOMAIN.check(c) is None, (DOMAIN.check(c), c.payload)
    assert {c.payload["topology"] for c in a} == set(TOPOLOGIES)
    frac_marginal = np.mean([c.payload["meta"]["marginal"] for c in _batch(n=600)])
    assert 0.05 < frac_marginal < 0.16  # default marginal_fraction 0.1


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_topology_weights_steer(topology: str) -> None:
    batch = _batch(n=20, **_only(topology))
    assert {c.payload["topology"] for c in batch} == {topology}
    assert all(DOMAIN.check(c) is None for c in batch)


def test_frequency_range_steers_filters() -> None:
    batch = _batch(n=60, log10_fc_min_hz=3.0, log10_fc_max_hz=4.0, marginal_fraction=0.0,
                   **_only("rc_lowpass"))  # fmt: skip
    fcs = np.array([c.payload["target"]["fc_hz"] for c in batch])
    assert fcs.min() >= 1e3 * 0.999 and fcs.max() <= 1e4 * 1.001
    spec = batch[0].payload["spec"]
    assert spec["fc_hz_min"] < batch[0].payload["target"]["fc_hz"] < spec["fc_hz_max"]


def test_e_series_snap() -> None:
    assert snap(1.04e3, E24) == pytest.approx(1.0e3)
    assert snap(9.3e-7, E24) == pytest.approx(9.1e-7)
    assert snap(0.97, E24) == pytest.approx(1.0)


# -- rule layer ----------------------------------------------------------------------------


def _rc() -> dict[str, Any]:
    return {
        "topology": "rc_lowpass",
        "components": [
            {"name": "R1", "kind": "resistor", "nodes": ["in", "out"], "r_ohm": 1e3},
            {"name": "C1", "kind": "capacitor", "nodes": ["out", "0"], "c_farad": 1e-7},
        ],
        "input_node": "in",
        "output_node": "out",
        "target": {"gain_db": 0.0, "fc_hz": 1591.55},
        "spec": {"gain_db_min": -0.5, "gain_db_max": 0.5, "fc_hz_min": 1500.0, "fc_hz_max": 1700.0},
    }


def _reason(payload: dict[str, Any]) -> str | None:
    return DOMAIN.check(Candidate(payload=payload))


def test_check_accepts_a_good_circuit() -> None:
    assert _reason(_rc()) is None


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda p: p["components"].append(
            {"name": "R2", "kind": "resistor", "nodes": ["out", "dangling"], "r_ohm": 1e3}),
         "floating"),
        (lambda p: p["components"].extend([
            {"name": "C2", "kind": "capacitor", "nodes": ["out", "mid"], "c_farad": 1e-9},
            {"name": "C3", "kind": "capacitor", "nodes": ["mid", "0"], "c_farad": 1e-9}]),
         "no DC path"),
        (lambda p: p["components"][0].update(r_ohm=1e12), "physical range"),
        (lambda p: p["components"][1].update(c_farad=5.0), "physical range"),
        (lambda p: p["components"][0].update(r_ohm=-5.0), "schema"),
        (lambda p: p["components"][0].update(nodes=["in", "in"]), "shorted"),
        (lambda p: p["components"][1].update(name="R1"), "duplicate"),
        (lambda p: p.pop("spec"), "schema"),
        (lambda p: p.update(output_node="nowhere"), "not connected"),
        (lambda p: p["spec"].update(fc_hz_min=2000.0), "min"),
        (lambda p: p["components"].append(
            {"name": "Q1", "kind": "npn", "nodes": ["out", "in", "0"], "model": "BC547"}),
         "unknown npn model"),
        (lambda p: p["components"].append(
            {"name": "Q1", "kind": "npn", "nodes": ["out", "in", "0"]}),
         "unknown npn model"),
        (lambda p: p["components"].append(
            {"name": "Q1", "kind": "npn", "nodes": ["out", "in"], "model": "2N2222A"}),
         "needs 3 pins"),
        (lambda p: p["components"][0].pop("r_ohm"), "missing r_ohm"),
        (lambda p: p["components"][0].update(kind="transistor"), "schema"),
        (lambda p: p.update(extra=1), "schema"),
        (lambda p: p.update(topology="bjt_ce"), "without a transistor"),
    ],
)  # fmt: skip
def test_check_rejects(mutate: Any, expect: str) -> None:
    payload = _rc()
    mutate(payload)
    reason = _reason(payload)
    assert reason is not None and expect in reason, reason


def test_check_rejects_floating_opamp_input() -> None:
    payload = copy.deepcopy(
        next(c for c in DOMAIN.reservoir() if c.payload["topology"] == "opamp_noninverting").payload
    )
    # the non-inverting input behind a series capacitor has no DC bias path
    payload["components"].append(
        {"name": "CX", "kind": "capacitor", "nodes": ["in", "inp"], "c_farad": 1e-6}
    )
    payload["components"][4]["nodes"][0] = "inp"
    assert "no DC path" in (_reason(payload) or "")


# -- prepare / parse (pure) -----------------------------------------------------------------


def test_prepare_is_pure_and_builds_the_netlist() -> None:
    gt = CircuitsGroundTruth()
    ce = _batch(n=1, **_only("bjt_ce"))[0]
    before = copy.deepcopy(ce.payload)
    job = gt.prepare(ce)
    assert job == gt.prepare(ce) and ce.payload == before
    assert job.netlist.startswith("VSIG in 0 DC 0 AC 1")
    assert "Q1 c b e 2n2222a" in job.netlist and ".MODEL 2n2222a npn" in job.netlist
    assert (job.f_start_hz, job.f_stop_hz, job.response) == (1.0, 1e9, "amplifier")
    rc = gt.prepare(Candidate(payload=_rc()))
    assert rc.f_start_hz == pytest.approx(1.59155) and rc.f_stop_hz == pytest.approx(1591550)
    assert "R1 in out 1000" in rc.netlist and "C1 out 0 1e-07" in rc.netlist
    opamp = to_netlist(DOMAIN.reservoir()[-1].payload)
    assert "XU1 in inn vp vn out vp LMV981" in opamp and ".SUBCKT LMV981" in opamp


def _freqs(lo: float, hi: float, ppd: int = 100) -> np.ndarray:
    return np.logspace(math.log10(lo), math.log10(hi), round(ppd * math.log10(hi / lo)) + 1)


def test_measure_first_order_and_second_order_shapes() -> None:
    f = _freqs(1.0, 1e6)
    fc = 1234.0
    lp = 0.5 / (1 + 1j * f / fc)
    m = measure_response(f, lp, "lowpass")
    assert m.fc_hz == pytest.approx(fc, rel=1e-3)
    assert m.gain_db == pytest.approx(20 * math.log10(0.5), abs=1e-3)
    hp = (1j * f / fc) / (1 + 1j * f / fc)
    assert measure_response(f, hp, "highpass").fc_hz == pytest.approx(fc, rel=1e-3)
    f0, q = 5e3, 3.0
    s = 1j * f / f0
    bp = 0.8 * (s / q) / (1 + s / q + s * s)
    m_bp = measure_response(f, bp, "bandpass")
    assert m_bp.fc_hz == pytest.approx(f0, rel=1e-3)
    assert m_bp.gain_db == pytest.approx(20 * math.log10(0.8), abs=0.01)
    amp = -10 * (s / 1e-3) / (1 + s / 1e-3) / (1 + s)  # band 5 Hz .. 5 kHz
    m_amp = measure_response(f, amp, "amplifier")
    assert m_amp.gain_db == pytest.approx(20.0, abs=0.01)
    assert m_amp.fc_hz == pytest.approx(f0, rel=0.01)
    assert measure_response(f[:5], lp[:5], "lowpass").fc_hz is None  # corner outside sweep


def test_parse_judges_the_spec_and_keeps_measurements() -> None:
    gt = CircuitsGroundTruth()
    f = _freqs(1.0, 1e6)
    good = Candidate(payload=_rc())
    raw = AcResponse(frequency_hz=f, h=1 / (1 + 1j * f / 1600.0))
    v = gt.parse(raw, good)
    assert isinstance(v, Verdict) and v.passed
    assert v.properties["fc_hz"] == pytest.approx(1600.0, rel=1e-3)
    off = AcResponse(frequency_hz=f, h=1 / (1 + 1j * f / 2000.0))
    v_off = gt.parse(off, good)
    assert not v_off.passed and "above spec max" in v_off.reason
    assert v_off.properties["fc_hz"] == pytest.approx(2000.0, rel=1e-3)  # still measured
    low = AcResponse(frequency_hz=f, h=0.5 / (1 + 1j * f / 1600.0))
    v_low = gt.parse(low, good)
    assert not v_low.passed and "gain_db" in v_low.reason
    dead = gt.parse(AcResponse(frequency_hz=f, h=np.zeros_like(f, dtype=complex)), good)
    assert not dead.passed and dead.properties == {}
    flat = gt.parse(AcResponse(frequency_hz=f, h=np.ones_like(f, dtype=complex)), good)
    assert not flat.passed and set(flat.properties) == {"gain_db"}
    for verdict in (v, v_off, v_low, dead, flat):
        verdict.validate(DOMAIN.properties)


def test_band_and_operating_point_measurements() -> None:
    f = _freqs(1.0, 1e7)
    s = 1j * f
    # second-order band-pass, f0 = 10 kHz, Q = 5: edges f0 (sqrt(1 + 1/4Q^2) -+ 1/2Q)
    f0, q = 1e4, 5.0
    bp = (s / (q * f0)) / (1 + s / (q * f0) + (s / f0) ** 2)
    m = band_measurements(AcResponse(frequency_hz=f, h=bp), "bandpass")
    root = math.sqrt(1 + 1 / (4 * q * q))
    assert m["f_low_hz"] == pytest.approx(f0 * (root - 1 / (2 * q)), rel=0.005)
    assert m["f_high_hz"] == pytest.approx(f0 * (root + 1 / (2 * q)), rel=0.005)
    assert m["bandwidth_hz"] == pytest.approx(f0 / q, rel=0.01)
    dc_coupled = band_measurements(AcResponse(frequency_hz=f, h=10 / (1 + s / 1e5)), "amplifier")
    assert "f_low_hz" not in dc_coupled
    assert dc_coupled["bandwidth_hz"] == dc_coupled["f_high_hz"] == pytest.approx(1e5, rel=0.01)
    assert band_measurements(AcResponse(frequency_hz=f, h=1 / (1 + s)), "lowpass") == {}

    op = {"@q1[ic]": 1.5e-3, "@q1[ib]": 6e-6, "c": 6.0, "b": 1.9, "e": 1.25}
    got = operating_point_measurements((("q1", "c", "b", "e"), ("q2", "c", "b", "0")), op)
    assert got == pytest.approx(
        {"q1_ic_ma": 1.5, "q1_ib_ua": 6.0, "q1_vce_v": 4.75, "q1_vbe_v": 0.65}
    )  # q2 is left out: ngspice reported no currents for it
    assert operating_point_measurements((("q1", "c", "b", "missing"),), op) == {}


def test_judge_open_bounds() -> None:
    spec = {"gain_db_min": 10.0, "gain_db_max": None, "fc_hz_min": None, "fc_hz_max": None}
    assert judge(spec, 12.0, None) == (True, "spec met")
    assert judge(spec, 9.0, 1e3)[0] is False


# -- features and graph --------------------------------------------------------------------


def test_featurize_fixed_width_and_finite() -> None:
    batch = _batch(n=40) + DOMAIN.reservoir()
    x = DOMAIN.featurize(batch)
    assert x.shape == (len(batch), len(TOPOLOGIES) + 2 * 16 + 8)
    assert np.isfinite(x).all()
    assert np.array_equal(x[:3], DOMAIN.featurize(batch[:3]))


def test_graph_arrays_are_consistent() -> None:
    for cand in _batch(n=30) + DOMAIN.reservoir():
        x, ei, ea, _ = graph_arrays(cand.payload)
        sample = to_graph(cand)
        u = sample.global_features
        assert np.array_equal(sample.node_features, x)
        assert sample.baseline is not None and set(sample.baseline) <= {"gain_db", "fc_hz"}
        assert x.shape[1] == NODE_DIM and ea.shape == (ei.shape[1], EDGE_DIM)
        assert u.shape == (GLOBAL_DIM,)
        assert ei.min() >= 0 and ei.max() < x.shape[0]
        # every link appears in both directions
        pairs = set(map(tuple, ei.T.tolist()))
        assert all((b, a) in pairs for a, b in pairs)
        assert np.isfinite(x).all() and np.isfinite(ea).all() and np.isfinite(u).all()
        assert x[0, 0] == 1.0  # node 0 is ground


def test_surrogate_is_the_graph_ensemble() -> None:
    pytest.importorskip("torch")
    sur = DOMAIN.surrogate()
    assert type(sur).__name__ == "GraphEnsembleSurrogate"
    assert sur is not DOMAIN.surrogate()
