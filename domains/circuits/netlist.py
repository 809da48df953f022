"""Circuit payloads: the JSON schema, the SPICE netlist they become, and the structural rules.

A payload lists its components explicitly (kind, pins, value in SI units), so the rule layer can
check the actual netlist (floating nodes, DC paths, value ranges) rather than trusting the
template that produced it. The signal source is implicit: an ideal AC source of 1 V from
``input_node`` to ground, so the output voltage *is* the transfer function.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from typing import Any

GROUND = "0"

TOPOLOGIES: tuple[str, ...] = (
    "rc_lowpass",
    "rc_highpass",
    "rlc_lowpass",
    "rlc_bandpass",
    "bjt_ce",
    "opamp_inverting",
    "opamp_noninverting",
)

#: How the response of each topology is measured (see ``measure.py``).
RESPONSE: dict[str, str] = {
    "rc_lowpass": "lowpass",
    "rlc_lowpass": "lowpass",
    "rc_highpass": "highpass",
    "rlc_bandpass": "bandpass",
    "bjt_ce": "amplifier",
    "opamp_inverting": "amplifier",
    "opamp_noninverting": "amplifier",
}

#: Component kinds: SPICE letter, pin names, the payload field holding the value (with unit).
KINDS: dict[str, dict[str, Any]] = {
    "resistor": {"letter": "R", "pins": ("a", "b"), "value": "r_ohm"},
    "capacitor": {"letter": "C", "pins": ("a", "b"), "value": "c_farad"},
    "inductor": {"letter": "L", "pins": ("a", "b"), "value": "l_henry"},
    "dc_voltage": {"letter": "V", "pins": ("plus", "minus"), "value": "v_volt"},
    "npn": {"letter": "Q", "pins": ("collector", "base", "emitter"), "value": None},
    "diode": {"letter": "X", "pins": ("anode", "cathode"), "value": None},
    "opamp": {"letter": "X", "pins": ("in_p", "in_n", "v_pos", "v_neg", "out"), "value": None},
}
KIND_NAMES: tuple[str, ...] = tuple(KINDS)

#: Device models shipped in ``data/`` (see data/PROVENANCE): kind -> model -> (file, card name).
MODELS: dict[str, dict[str, tuple[str, str]]] = {
    "npn": {"2N2222A": ("2N2222A.lib", "2n2222a")},
    "diode": {"1N4148": ("1N4148.lib", "1N4148")},
    "opamp": {"LMV981": ("LMV981.lib", "LMV981")},
}

#: Physical ranges, SI units: outside them a value is a typo or a unit slip, not a design.
VALUE_RANGES: dict[str, tuple[float, float]] = {
    "r_ohm": (0.01, 1e9),
    "c_farad": (1e-15, 1.0),
    "l_henry": (1e-12, 100.0),
    "v_volt": (-100.0, 100.0),
}

_NODE = r"^(0|[a-z][a-z0-9_]{0,31})$"
_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,15}$"
_BOUND = {"type": ["number", "null"]}

#: Draft 7, and shallow on purpose: it runs on every candidate (see ``foundry.schema``). The
#: per-kind rules (which value field or model, how many pins) are checked in Python by
#: :func:`structural_problem`, which gives the clearer message anyway.
PAYLOAD_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "circuits candidate",
    "type": "object",
    "required": ["topology", "components", "input_node", "output_node", "target", "spec"],
    "additionalProperties": False,
    "properties": {
        "topology": {"enum": list(TOPOLOGIES)},
        "components": {
            "type": "array",
            "minItems": 2,
            "maxItems": 32,
            "items": {
                "type": "object",
                "required": ["name", "kind", "nodes"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": _NAME},
                    "kind": {"enum": list(KIND_NAMES)},
                    "nodes": {
                        "type": "array",
                        "items": {"type": "string", "pattern": _NODE},
                        "minItems": 2,
                        "maxItems": 5,
                    },
                    "r_ohm": {"type": "number", "exclusiveMinimum": 0},
                    "c_farad": {"type": "number", "exclusiveMinimum": 0},
                    "l_henry": {"type": "number", "exclusiveMinimum": 0},
                    "v_volt": {"type": "number"},
                    "model": {"type": "string"},
                },
            },
        },
        "input_node": {"type": "string", "pattern": _NODE},
        "output_node": {"type": "string", "pattern": _NODE},
        "target": {
            "type": "object",
            "required": ["gain_db", "fc_hz"],
            "additionalProperties": False,
            "properties": {"gain_db": {"type": "number"}, "fc_hz": _BOUND},
        },
        "spec": {
            "type": "object",
            "required": ["gain_db_min", "gain_db_max", "fc_hz_min", "fc_hz_max"],
            "additionalProperties": False,
            "properties": {
                "gain_db_min": _BOUND,
                "gain_db_max": _BOUND,
                "fc_hz_min": _BOUND,
                "fc_hz_max": _BOUND,
            },
        },
        "meta": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "marginal": {"type": "boolean"},
                "reference": {"type": "string"},
            },
        },
    },
}


@functools.cache
def model_card(filename: str) -> str:
    """Text of a shipped model file (read once per process)."""
    return resources.files(__package__).joinpath("data", filename).read_text(encoding="utf-8")


def component_value(component: Mapping[str, Any]) -> float | None:
    """The numeric value of a component in SI units (``None`` for model-only devices)."""
    field = KINDS[component["kind"]]["value"]
    return None if field is None else float(component[field])


def spice_ref(component: Mapping[str, Any]) -> str:
    """SPICE element name: the kind's letter, then the payload name if it does not start so."""
    letter = KINDS[component["kind"]]["letter"]
    name = str(component["name"])
    return name if name[0].upper() == letter else f"{letter}{name}"


def to_netlist(payload: Mapping[str, Any]) -> str:
    """SPICE netlist body (no title, analyses or ``.end``): the implicit source, the
    components, then the model cards they use. Pure and deterministic."""
    lines = [f"VSIG {payload['input_node']} {GROUND} DC 0 AC 1"]
    used: dict[str, None] = {}
    for comp in payload["components"]:
        kind = comp["kind"]
        ref = spice_ref(comp)
        nodes = " ".join(comp["nodes"])
        if kind == "resistor":
            lines.append(f"{ref} {nodes} {comp['r_ohm']:.9g}")
        elif kind == "capacitor":
            lines.append(f"{ref} {nodes} {comp['c_farad']:.9g}")
        elif kind == "inductor":
            lines.append(f"{ref} {nodes} {comp['l_henry']:.9g}")
        elif kind == "dc_voltage":
            lines.append(f"{ref} {nodes} DC {comp['v_volt']:.9g}")
        elif kind == "npn":
            filename, card = MODELS["npn"][comp["model"]]
            lines.append(f"{ref} {nodes} {card}")
            used[filename] = None
        elif kind == "diode":
            filename, card = MODELS["diode"][comp["model"]]
            lines.append(f"{ref} {nodes} {card}")
            used[filename] = None
        elif kind == "opamp":
            filename, card = MODELS["opamp"][comp["model"]]
            in_p, in_n, v_pos, v_neg, out = comp["nodes"]
            # LMV981 pin order: +IN -IN V+ V- OUT SHDN; shutdown tied to V+ keeps it enabled.
            lines.append(f"{ref} {in_p} {in_n} {v_pos} {v_neg} {out} {v_pos} {card}")
            used[filename] = None
        else:  # pragma: no cover - schema forbids it
            raise ValueError(f"unknown kind {kind!r}")
    for filename in used:
        lines.append(model_card(filename).strip())
    return "\n".join(lines)


# -- structural rules -----------------------------------------------------------------------


class _DisjointSet:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def _dc_links(component: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Pin pairs joined by a DC path through this component.

    Capacitors block DC; an op-amp's inputs draw (almost) no bias current, so each input needs
    an external DC path, while its output is driven from the supplies.
    """
    kind = component["kind"]
    nodes = component["nodes"]
    if kind == "capacitor":
        return []
    if kind == "opamp":
        _in_p, _in_n, v_pos, v_neg, out = nodes
        return [(out, v_pos), (out, v_neg), (out, GROUND)]
    return [(nodes[0], other) for other in nodes[1:]]


def structural_problem(payload: Mapping[str, Any]) -> str | None:
    """The first structural or range problem of a schema-valid payload, or ``None``."""
    comps = payload["components"]
    names = [str(c["name"]).upper() for c in comps]
    if len(set(names)) != len(names):
        return "duplicate component names"
    refs = [spice_ref(c).upper() for c in comps]
    if len(set(refs)) != len(refs):
        return "duplicate SPICE element names"
    for comp in comps:
        kind = comp["kind"]
        pins = KINDS[kind]["pins"]
        if len(comp["nodes"]) != len(pins):
            return f"{comp['name']}: {kind} needs {len(pins)} pins, got {len(comp['nodes'])}"
        if len(set(comp["nodes"])) < len(comp["nodes"]):
            return f"{comp['name']}: pins shorted together {comp['nodes']}"
        field = KINDS[kind]["value"]
        if field is not None:
            value = comp.get(field)
            if value is None:
                return f"{comp['name']}: missing {field}"
            lo, hi = VALUE_RANGES[field]
            if not (lo <= float(value) <= hi) or (field != "v_volt" and value <= 0):
                return f"{comp['name']}: {field}={value:g} outside physical range [{lo:g}, {hi:g}]"
        elif kind in MODELS and comp.get("model") not in MODELS[kind]:
            return f"{comp['name']}: unknown {kind} model {comp.get('model')!r}"

    # connection counts, the implicit source included
    count: dict[str, int] = {}
    for comp in comps:
        for node in comp["nodes"]:
            count[node] = count.get(node, 0) + 1
    inp, out = payload["input_node"], payload["output_node"]
    if inp == GROUND or out == GROUND:
        return "input and output must not be ground"
    if inp == out:
        return "input node equals output node"
    count[inp] = count.get(inp, 0) + 1
    count[GROUND] = count.get(GROUND, 0) + 1
    if out not in count:
        return f"output node {out!r} is not connected to any component"
    floating = sorted(n for n, k in count.items() if k < 2)
    if floating:
        return f"floating node(s) {floating}: fewer than two connections"

    # every node needs a DC path to ground, or the operating point is undefined
    dsu = _DisjointSet()
    dsu.union(inp, GROUND)  # the ideal source
    for comp in comps:
        for a, b in _dc_links(comp):
            dsu.union(a, b)
    no_dc = sorted(n for n in count if dsu.find(n) != dsu.find(GROUND))
    if no_dc:
        return f"node(s) {no_dc} have no DC path to ground"

    topology = payload["topology"]
    kinds = {c["kind"] for c in comps}
    if topology == "bjt_ce" and "npn" not in kinds:
        return "bjt_ce without a transistor"
    if topology.startswith("opamp") and "opamp" not in kinds:
        return f"{topology} without an op-amp"
    return _spec_problem(payload)


def _spec_problem(payload: Mapping[str, Any]) -> str | None:
    spec = payload["spec"]
    for prop in ("gain_db", "fc_hz"):
        lo, hi = spec[f"{prop}_min"], spec[f"{prop}_max"]
        if lo is not None and hi is not None and lo > hi:
            return f"spec {prop}: min {lo} > max {hi}"
    for key in ("fc_hz_min", "fc_hz_max"):
        value = spec[key]
        if value is not None and not (1e-3 <= value <= 1e10):
            return f"spec {key}={value:g} outside [1e-3, 1e10] Hz"
    fc = payload["target"]["fc_hz"]
    if fc is not None and not (1e-3 <= fc <= 1e10):
        return f"target fc_hz={fc:g} outside [1e-3, 1e10] Hz"
    if not -200 <= payload["target"]["gain_db"] <= 200:
        return "target gain_db outside [-200, 200] dB"
    return None
