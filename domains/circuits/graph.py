"""A circuit as a graph for the GNN surrogate: nets are nodes, components are typed edges.

Why this shape: a circuit's behaviour is set by which nets each part joins and by its value,
so message passing along components (with the log-scaled value on the edge) sees the same
structure the simulator solves. Multi-pin devices become several typed edges (a transistor's
B-E, B-C and C-E paths; an op-amp's input pair, its gain paths and its supplies). Edges appear
once in each direction with a direction flag, so polarity (source +/-, input +/-) survives.
The spec and target travel as global features: pass/fail depends on them, not on the circuit
alone. Features are roughly unit-scaled here; the surrogate standardises them again.

Only numpy is needed here; the surrogate class (torch) is imported by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from foundry.contract import Candidate

from .ground_truth import sweep_for
from .netlist import GROUND, TOPOLOGIES
from .small_signal import estimate_many

#: Edge types; a component contributes one or more of them.
EDGE_TYPES: tuple[str, ...] = (
    "resistor",
    "capacitor",
    "inductor",
    "dc_voltage",
    "signal_source",
    "npn_base_emitter",
    "npn_base_collector",
    "npn_collector_emitter",
    "diode",
    "opamp_inputs",
    "opamp_in_p_out",
    "opamp_in_n_out",
    "opamp_supply_out",
)
_EDGE_INDEX = {t: i for i, t in enumerate(EDGE_TYPES)}

#: Per-kind centring of log10(value), so values of every kind land near [-2, 2].
_LOG_CENTRE = {"r_ohm": (3.0, 2.0), "c_farad": (-7.0, 3.0), "l_henry": (-3.0, 2.0)}

NODE_DIM = 6
EDGE_DIM = len(EDGE_TYPES) + 3  # type one-hot, scaled value, has-value flag, direction
GLOBAL_DIM = len(TOPOLOGIES) + 9 + 4


def _scaled_value(component: Mapping[str, Any]) -> tuple[float, float]:
    """(scaled value, 1) for valued parts; (0, 0) for model-only devices."""
    for key, (centre, scale) in _LOG_CENTRE.items():
        if key in component:
            return (math.log10(float(component[key])) - centre) / scale, 1.0
    if "v_volt" in component:
        return float(component["v_volt"]) / 10.0, 1.0
    return 0.0, 0.0


def _component_edges(component: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(edge type, from node, to node) for one component; 'from' is the positive side."""
    kind = component["kind"]
    nodes = component["nodes"]
    if kind in ("resistor", "capacitor", "inductor", "dc_voltage", "diode"):
        return [(kind, nodes[0], nodes[1])]
    if kind == "npn":
        c, b, e = nodes
        return [
            ("npn_base_emitter", b, e),
            ("npn_base_collector", b, c),
            ("npn_collector_emitter", c, e),
        ]
    if kind == "opamp":
        in_p, in_n, v_pos, v_neg, out = nodes
        return [
            ("opamp_inputs", in_p, in_n),
            ("opamp_in_p_out", in_p, out),
            ("opamp_in_n_out", in_n, out),
            ("opamp_supply_out", v_pos, out),
            ("opamp_supply_out", v_neg, out),
        ]
    raise ValueError(f"unknown component kind {kind!r}")


def _bound(value: float | None, log: bool) -> tuple[float, float]:
    """(feature, present flag) of an optional spec bound."""
    if value is None:
        return 0.0, 0.0
    return (math.log10(value) if log else value / 20.0), 1.0


def global_features(payload: Mapping[str, Any]) -> np.ndarray:
    """Topology one-hot, target and spec window (log10 Hz, dB/20) with presence flags."""
    one_hot = [1.0 if payload["topology"] == t else 0.0 for t in TOPOLOGIES]
    target, spec = payload["target"], payload["spec"]
    fc = target["fc_hz"]
    g_lo, g_lo_on = _bound(spec["gain_db_min"], log=False)
    g_hi, g_hi_on = _bound(spec["gain_db_max"], log=False)
    f_lo, f_lo_on = _bound(spec["fc_hz_min"], log=True)
    f_hi, f_hi_on = _bound(spec["fc_hz_max"], log=True)
    return np.array(
        [
            *one_hot,
            target["gain_db"] / 20.0,
            math.log10(fc) if fc is not None else 0.0,
            g_lo,
            g_hi,
            f_lo,
            f_hi,
            # window widths: a narrow window is harder to meet
            (g_hi - g_lo) * g_lo_on * g_hi_on * 20.0,
            (f_hi - f_lo) * f_lo_on * f_hi_on * 10.0,
            (g_lo_on + g_hi_on + f_lo_on + f_hi_on) / 4.0,
        ],
        dtype=np.float32,
    )


def hand_estimates(payloads: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """Gain and corner by hand analysis (``small_signal``), on the ground truth's own sweep;
    empty where the analysis does not apply (diodes, no corner in the sweep)."""
    measured = estimate_many(payloads, [sweep_for(p) for p in payloads])
    out: list[dict[str, float]] = []
    for m in measured:
        est: dict[str, float] = {}
        if m is not None and math.isfinite(m.gain_db):
            est["gain_db"] = float(m.gain_db)
            if m.fc_hz is not None and m.fc_hz > 0:
                est["fc_hz"] = float(m.fc_hz)
        out.append(est)
    return out


def to_graphs(candidates: Sequence[Candidate]) -> list[Any]:
    """:class:`foundry.surrogates.graph.GraphSample` of circuit candidates, with the hand
    analysis as their baseline (the network learns what ngspice adds to it)."""
    from foundry.surrogates.graph import GraphSample

    out = []
    for cand, est in zip(candidates, hand_estimates([c.payload for c in candidates]), strict=True):
        x, edge_index, edge_attr, u = graph_arrays(cand.payload)
        u = np.concatenate([u, _estimate_features(est)])
        out.append(GraphSample(x, edge_index, edge_attr, u, baseline=est or None))
    return out


def to_graph(candidate: Candidate) -> Any:
    """One candidate's graph (see :func:`to_graphs`)."""
    return to_graphs([candidate])[0]


def _estimate_features(est: Mapping[str, float]) -> np.ndarray:
    gain, fc = est.get("gain_db"), est.get("fc_hz")
    return np.array(
        [
            gain / 20.0 if gain is not None else 0.0,
            math.log10(fc) if fc is not None else 0.0,
            float(gain is not None),
            float(fc is not None),
        ],
        dtype=np.float32,
    )


def graph_arrays(
    payload: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(node_features, edge_index, edge_features, global_features) as numpy arrays; the
    global features here exclude the hand estimate, which :func:`to_graph` appends."""
    inp, out = payload["input_node"], payload["output_node"]
    edges: list[tuple[str, str, str, float, float]] = [("signal_source", inp, GROUND, 0.0, 1.0)]
    for comp in payload["components"]:
        value, has_value = _scaled_value(comp)
        for etype, a, b in _component_edges(comp):
            edges.append((etype, a, b, value, has_value))

    nets: dict[str, int] = {GROUND: 0}
    for _, a, b, _, _ in edges:
        for node in (a, b):
            nets.setdefault(node, len(nets))
    supply_nets = {c["nodes"][0] for c in payload["components"] if c["kind"] == "dc_voltage"} | {
        c["nodes"][1] for c in payload["components"] if c["kind"] == "dc_voltage"
    }
    degree = np.zeros(len(nets), dtype=np.float32)

    src, dst, feats = [], [], []
    for etype, a, b, value, has_value in edges:
        ia, ib = nets[a], nets[b]
        one_hot = [0.0] * len(EDGE_TYPES)
        one_hot[_EDGE_INDEX[etype]] = 1.0
        for u, v, direction in ((ia, ib, 1.0), (ib, ia, -1.0)):
            src.append(u)
            dst.append(v)
            feats.append([*one_hot, value, has_value, direction])
        degree[ia] += 1
        degree[ib] += 1

    node_features = np.zeros((len(nets), NODE_DIM), dtype=np.float32)
    for name, i in nets.items():
        node_features[i] = [
            name == GROUND,
            name == inp,
            name == out,
            name in supply_nets and name != GROUND,
            degree[i] / 4.0,
            1.0,
        ]
    edge_index = np.array([src, dst], dtype=np.int64)
    edge_features = np.array(feats, dtype=np.float32).reshape(-1, EDGE_DIM)
    return node_features, edge_index, edge_features, global_features(payload)
