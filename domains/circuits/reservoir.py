"""Real circuits (provenance ``real``): published example topologies and values.

Values come from the example netlists of the PySpice 1.5 source distribution (themselves
classic SPICE3/textbook circuits; paths and hashes in data/PROVENANCE) and from the textbook
op-amp gain stages, built with the vendor device models shipped in data/. Where an example used
a generic transistor model, the vendor 2N2222A card replaces it (said in ``meta.reference``).
Targets are the closed-form textbook values; the spec windows (+-1 dB, +-10 %) are a bench
tolerance, wide enough that a correct simulation of a correct textbook circuit passes.
"""

from __future__ import annotations

import math
from typing import Any

from foundry.contract import Candidate

from .templates import _cap as _c
from .templates import _ind as _l
from .templates import _res as _r
from .templates import _vdc as _v
from .templates import rlc_lowpass_corner_ratio

_SDIST = "PySpice 1.5 sdist, "
#: Gain-bandwidth of the LMV981 as published by its vendor (typical), used for textbook targets.
LMV981_DATASHEET_GBW_HZ = 1.5e6
GAIN_TOL_DB = 1.0
FC_TOL_REL = 0.10


def _payload(
    topology: str,
    components: list[dict[str, Any]],
    output: str,
    gain_db: float,
    fc_hz: float | None,
    reference: str,
) -> dict[str, Any]:
    return {
        "topology": topology,
        "components": components,
        "input_node": "in",
        "output_node": output,
        "target": {
            "gain_db": round(gain_db, 4),
            "fc_hz": None if fc_hz is None else round(fc_hz, 3),
        },
        "spec": {
            "gain_db_min": round(gain_db - GAIN_TOL_DB, 4),
            "gain_db_max": round(gain_db + GAIN_TOL_DB, 4),
            "fc_hz_min": None if fc_hz is None else round(fc_hz * (1 - FC_TOL_REL), 3),
            "fc_hz_max": None if fc_hz is None else round(fc_hz * (1 + FC_TOL_REL), 3),
        },
        "meta": {"marginal": False, "reference": reference},
    }


def reservoir_payloads() -> list[dict[str, Any]]:
    """The real circuits as payloads (deterministic, in a fixed order)."""
    out: list[dict[str, Any]] = []
    # RC low-pass, R = 1 kOhm, C = 1 uF: fc = 1/(2 pi R C)
    out.append(_payload(
        "rc_lowpass",
        [_r("R1", "in", "out", 1e3), _c("C1", "out", "0", 1e-6)],
        "out", 0.0, 1.0 / (2 * math.pi * 1e3 * 1e-6),
        _SDIST + "examples/spice-examples/low-pass-rc-filter.cir (R1 1k, C1 1u)",
    ))  # fmt: skip
    # four double-pole RLC low-pass filters, L = 10 mH, C = 1 uF, R = 200/100/50/25 Ohm
    l_h, c_f = 10e-3, 1e-6
    f0 = 1.0 / (2 * math.pi * math.sqrt(l_h * c_f))
    for r in (200.0, 100.0, 50.0, 25.0):
        q = math.sqrt(l_h / c_f) / r
        out.append(_payload(
            "rlc_lowpass",
            [_r("R1", "in", "a", r), _l("L1", "a", "out", l_h), _c("C1", "out", "0", c_f)],
            "out", 0.0, f0 * rlc_lowpass_corner_ratio(q),
            _SDIST + f"examples/filter/rlc-filter.py (low-pass, R {r:g}, L 10m, C 1u)",
        ))  # fmt: skip
    # series RLC band-pass, output across R = 25 Ohm: centre 1/(2 pi sqrt(LC)), Q = 4
    out.append(_payload(
        "rlc_bandpass",
        [_l("L1", "in", "a", l_h), _c("C1", "a", "out", c_f), _r("R1", "out", "0", 25.0)],
        "out", 0.0, f0,
        _SDIST + "examples/filter/rlc-filter.py (pass-band, L 10m, C 1u, R 25)",
    ))  # fmt: skip
    # AC-coupled common-emitter stages; textbook gain -Rc/Re (undegenerated re neglected)
    q1 = {"name": "Q1", "kind": "npn", "nodes": ["coll", "base", "emit"], "model": "2N2222A"}
    out.append(_payload(
        "bjt_ce",
        [
            _v("VCC", "vcc", "0", 12.0), _c("CCOUPLE", "in", "base", 10e-6),
            _r("RBIAS1", "vcc", "base", 100e3), _r("RBIAS2", "base", "0", 24e3), q1,
            _r("RCOLLECTOR", "vcc", "coll", 3.9e3), _r("REMITTER", "emit", "0", 1e3),
        ],
        "coll", 20 * math.log10(3.9e3 / 1e3), None,
        _SDIST + "examples/spice-examples/ac-coupled-transistor-amplifier.cir "
        "(Berkeley SPICE3 example, 'gain of approximately -3.9'); generic npn replaced by 2N2222A",
    ))  # fmt: skip
    q1b = {"name": "Q1", "kind": "npn", "nodes": ["n4", "n2", "n3"], "model": "2N2222A"}
    out.append(_payload(
        "bjt_ce",
        [
            _v("VPWR", "n6", "0", 15.0), _c("C1", "in", "n2", 10e-6),
            _r("R1", "n6", "n2", 100e3), _r("R2", "n2", "0", 20e3), q1b,
            _r("RC", "n6", "n4", 10e3), _r("RE", "n3", "0", 2e3),
            _c("C2", "n4", "n5", 10e-6), _r("RL", "n5", "0", 1e6),
        ],
        "n5", 20 * math.log10(10e3 / 2e3), None,
        _SDIST + "examples/spice-examples/ac-coupled-amplifier.cir "
        "(bf=80 generic npn replaced by 2N2222A)",
    ))  # fmt: skip
    # textbook op-amp gain stages with the vendor LMV981 macro-model, +-2.5 V supplies
    supplies = [_v("VP", "vp", "0", 2.5), _v("VN", "vn", "0", -2.5)]
    out.append(_payload(
        "opamp_inverting",
        [
            *supplies, _r("RIN", "in", "inn", 10e3), _r("RF", "inn", "out", 100e3),
            {"name": "U1", "kind": "opamp", "nodes": ["0", "inn", "vp", "vn", "out"],
             "model": "LMV981"},
            _r("RL", "out", "0", 10e3),
        ],
        "out", 20.0, LMV981_DATASHEET_GBW_HZ / 11.0,
        "textbook inverting amplifier G = -Rf/Rin = -10, corner GBW/(1 + Rf/Rin) with the "
        "LMV981 typical GBW 1.5 MHz; LMV981 macro-model from " + _SDIST
        + "examples/libraries/operational-amplifier/LMV981.MOD",
    ))  # fmt: skip
    out.append(_payload(
        "opamp_noninverting",
        [
            *supplies, _r("RG", "inn", "0", 10e3), _r("RF", "inn", "out", 100e3),
            {"name": "U1", "kind": "opamp", "nodes": ["in", "inn", "vp", "vn", "out"],
             "model": "LMV981"},
            _r("RL", "out", "0", 10e3),
        ],
        "out", 20 * math.log10(11.0), LMV981_DATASHEET_GBW_HZ / 11.0,
        "textbook non-inverting amplifier G = 1 + Rf/Rg = 11, corner GBW/G with the LMV981 "
        "typical GBW 1.5 MHz; LMV981 macro-model from " + _SDIST
        + "examples/libraries/operational-amplifier/LMV981.MOD",
    ))  # fmt: skip
    return out


def reservoir_candidates() -> list[Candidate]:
    return [Candidate(payload=p, source="real") for p in reservoir_payloads()]
