"""Hand analysis of a circuit payload: a linearised nodal solve in NumPy (no SPICE).

Why: pass/fail hinges on a corner frequency within 5 % and a gain within 0.5 dB, a precision a
network trained on a few thousand labels does not reach from raw component values. What an
engineer does on paper - a DC bias point with ``V_BE`` fixed and ``I_C = beta I_B``, then the
hybrid-pi / single-pole op-amp small-signal model - gets passive filters exactly and the
amplifiers to within a few per cent, in a few hundred microseconds. The surrogate then only
learns the *residual* between this estimate and ngspice (the real device models: the LMV981
macro-model's extra poles, the 2N2222A's Gummel-Poon beta and capacitances), which is small and
smooth. That is Delta-learning on a cheap lower fidelity; the ground truth stays ngspice.

Modified nodal analysis: unknowns are the node voltages (ground excluded) and one current for
every branch that is a voltage constraint (the signal source, DC sources, inductors, op-amp
outputs, transistor base-emitter junctions at DC). The system is ``(M0 + s M1) x = b``, so one
pair of matrices serves the whole frequency sweep.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .measure import Measured, measure_responses
from .netlist import GROUND, RESPONSE

#: Thermal voltage kT/q at ngspice's default 27 C.
VT_VOLT = 0.025865
#: 2N2222A card (data/2N2222A.lib): saturation current, emission coefficient, Early voltage,
#: junction capacitances (zero bias) and forward transit time.
NPN_2N2222A = {
    "is_a": 3.88184e-14,
    "nf": 1.10496,
    "vaf_v": 16.5003,
    "cje_f": 2.23677e-11,
    "cjc_f": 2.23943e-11,
    "vjc_v": 0.576146,
    "mjc": 0.632796,
    "tf_s": 4.06711e-10,
}
#: DC current gain assumed by the hand analysis. The card's BF (930) is an ideal-region value;
#: recombination (ISE) and high injection (IKF) lower it near 1 mA, and the residual learner
#: absorbs what remains.
BETA_ASSUMED = 400.0
#: LMV981 open-loop gain (~100 dB) and gain-bandwidth product of the macro-model.
OPAMP_A0 = 1.0e5
OPAMP_GBW_HZ = 1.45e6
#: Largest ratio of summed residues to the response's peak accepted from the pole-residue
#: form: beyond it, rounding (~1e-16 times the ratio) could reach 1e-6 of the peak.
CANCELLATION_LIMIT = 1e10
#: Circuits evaluated as one stack (bounds the (batch, frequencies, modes) complex array).
BATCH = 128


class NotAnalysable(ValueError):
    """The payload has a part this hand analysis does not model (e.g. diodes)."""


@dataclass
class _System:
    """``(m0 + s m1) x = b`` with the variable index of every node."""

    m0: np.ndarray
    m1: np.ndarray
    b: np.ndarray
    node: dict[str, int]


class _Builder:
    def __init__(self, payload: Mapping[str, Any], extra_branches: int) -> None:
        nodes: dict[str, int] = {}
        for comp in payload["components"]:
            for n in comp["nodes"]:
                if n != GROUND:
                    nodes.setdefault(n, len(nodes))
        if payload["input_node"] not in nodes:
            nodes[payload["input_node"]] = len(nodes)
        self.node = nodes
        size = len(nodes) + extra_branches
        self.m0 = np.zeros((size, size))
        self.m1 = np.zeros((size, size))
        self.b = np.zeros(size)
        self.next_branch = len(nodes)

    def idx(self, name: str) -> int | None:
        return None if name == GROUND else self.node[name]

    def conductance(self, a: str, b: str, g: float, matrix: np.ndarray | None = None) -> None:
        m = self.m0 if matrix is None else matrix
        ia, ib = self.idx(a), self.idx(b)
        if ia is not None:
            m[ia, ia] += g
        if ib is not None:
            m[ib, ib] += g
        if ia is not None and ib is not None:
            m[ia, ib] -= g
            m[ib, ia] -= g

    def transconductance(self, out_p: str, out_n: str, ctl_p: str, ctl_n: str, gm: float) -> None:
        """Current ``gm (v(ctl_p) - v(ctl_n))`` flowing from ``out_p`` through the source to
        ``out_n`` (i.e. leaving node out_p)."""
        for o, so in ((self.idx(out_p), 1.0), (self.idx(out_n), -1.0)):
            if o is None:
                continue
            for c, sc in ((self.idx(ctl_p), 1.0), (self.idx(ctl_n), -1.0)):
                if c is not None:
                    self.m0[o, c] += so * sc * gm

    def branch(self, a: str, b: str) -> int:
        """A new branch current k flowing a -> b through the element; returns its row."""
        k = self.next_branch
        self.next_branch += 1
        ia, ib = self.idx(a), self.idx(b)
        if ia is not None:
            self.m0[ia, k] += 1.0
            self.m0[k, ia] += 1.0
        if ib is not None:
            self.m0[ib, k] -= 1.0
            self.m0[k, ib] -= 1.0
        return k


def _count_branches(payload: Mapping[str, Any], dc: bool) -> int:
    n = 1  # the signal source
    for comp in payload["components"]:
        kind = comp["kind"]
        if kind in ("dc_voltage", "inductor", "opamp") or (kind == "npn" and dc):
            n += 1
    return n


def _check_supported(payload: Mapping[str, Any]) -> None:
    for comp in payload["components"]:
        if comp["kind"] == "diode":
            raise NotAnalysable("diodes are not in the hand analysis")
        if comp["kind"] == "npn" and comp.get("model") != "2N2222A":
            raise NotAnalysable(f"no hand model for transistor {comp.get('model')!r}")


def _dc_bias(payload: Mapping[str, Any]) -> dict[str, tuple[float, float, float]]:
    """Per transistor: (collector current A, collector-emitter V, collector-base V).

    Forward-active model: ``V_BE`` from the diode law at the current found (three fixed-point
    passes; only the right-hand side changes between them), ``I_C = beta I_B``; capacitors
    open, inductors shorted, the signal source at 0 V.
    """
    npn = [c for c in payload["components"] if c["kind"] == "npn"]
    if not npn:
        return {}
    card = NPN_2N2222A
    bld = _Builder(payload, _count_branches(payload, dc=True))
    bld.branch(payload["input_node"], GROUND)  # signal source, 0 V at DC
    base_rows: dict[str, int] = {}
    for comp in payload["components"]:
        kind, nodes = comp["kind"], comp["nodes"]
        if kind == "resistor":
            bld.conductance(nodes[0], nodes[1], 1.0 / comp["r_ohm"])
        elif kind in ("dc_voltage", "inductor"):
            k = bld.branch(nodes[0], nodes[1])
            bld.b[k] = comp["v_volt"] if kind == "dc_voltage" else 0.0
        elif kind == "opamp":
            _opamp_rows(bld, nodes, s_term=False)
        elif kind == "npn":
            c, b, e = nodes
            k = bld.branch(b, e)  # base current flows b -> e; V_BE goes in b[k]
            base_rows[comp["name"]] = k
            # collector current beta * I_B, from c to e: a current-controlled source
            for o, so in ((bld.idx(c), 1.0), (bld.idx(e), -1.0)):
                if o is not None:
                    bld.m0[o, k] += so * BETA_ASSUMED
    vbe = dict.fromkeys(base_rows, 0.68)
    out: dict[str, tuple[float, float, float]] = {}
    for _ in range(3):
        for name, k in base_rows.items():
            bld.b[k] = vbe[name]
        x = _solve(bld.m0, bld.b)
        for comp in npn:
            c, b, e = comp["nodes"]
            ib = float(x[base_rows[comp["name"]]])
            ic = max(BETA_ASSUMED * ib, 1e-9)
            v = {n: (0.0 if n == GROUND else float(x[bld.node[n]])) for n in (c, b, e)}
            vbe[comp["name"]] = card["nf"] * VT_VOLT * math.log(ic / card["is_a"])
            out[comp["name"]] = (ic, v[c] - v[e], v[c] - v[b])
    return out


def _opamp_rows(bld: _Builder, nodes: list[str], s_term: bool) -> None:
    """Output as a voltage source ``A(s) (v+ - v-)``, ``A(s) = A0 / (1 + s A0 / (2 pi GBW))``,
    written as ``(1 + s/wp) v_out - A0 (v+ - v-) = 0`` so it stays linear in s."""
    in_p, in_n, _v_pos, _v_neg, out = nodes
    k = bld.branch(out, GROUND)
    # replace the plain branch row (v_out = 0) by the amplifier law
    bld.m0[k, :] = 0.0
    io, ip, i_n = bld.idx(out), bld.idx(in_p), bld.idx(in_n)
    if io is not None:
        bld.m0[k, io] = 1.0
        if s_term:
            bld.m1[k, io] = OPAMP_A0 / (2.0 * math.pi * OPAMP_GBW_HZ)
    if ip is not None:
        bld.m0[k, ip] -= OPAMP_A0
    if i_n is not None:
        bld.m0[k, i_n] += OPAMP_A0


def _solve(m: np.ndarray, b: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(m, b)
    except np.linalg.LinAlgError as exc:
        raise NotAnalysable(f"singular nodal matrix: {exc}") from exc


def small_signal_system(payload: Mapping[str, Any]) -> _System:
    """The AC system of a payload, linearised at the hand-analysis bias point."""
    _check_supported(payload)
    bias = _dc_bias(payload)
    bld = _Builder(payload, _count_branches(payload, dc=False))
    k = bld.branch(payload["input_node"], GROUND)
    bld.b[k] = 1.0  # AC 1 V
    card = NPN_2N2222A
    for comp in payload["components"]:
        kind, nodes = comp["kind"], comp["nodes"]
        if kind == "resistor":
            bld.conductance(nodes[0], nodes[1], 1.0 / comp["r_ohm"])
        elif kind == "capacitor":
            bld.conductance(nodes[0], nodes[1], comp["c_farad"], bld.m1)
        elif kind == "inductor":
            k = bld.branch(nodes[0], nodes[1])
            bld.m1[k, k] -= comp["l_henry"]  # v_a - v_b - s L i = 0
        elif kind == "dc_voltage":
            bld.branch(nodes[0], nodes[1])  # an AC short
        elif kind == "opamp":
            _opamp_rows(bld, nodes, s_term=True)
        elif kind == "npn":
            c, b, e = nodes
            ic, vce, vcb = bias[comp["name"]]
            gm = ic / (card["nf"] * VT_VOLT)
            bld.conductance(b, e, gm / BETA_ASSUMED)
            bld.transconductance(c, e, b, e, gm)
            bld.conductance(c, e, ic / (card["vaf_v"] + max(vce, 0.0)))
            # forward-biased emitter junction ~ 2 CJE, plus diffusion TF gm; reverse-biased
            # collector junction by the depletion law
            bld.conductance(b, e, 2.0 * card["cje_f"] + card["tf_s"] * gm, bld.m1)
            cmu = card["cjc_f"] / (1.0 + max(vcb, 0.0) / card["vjc_v"]) ** card["mjc"]
            bld.conductance(b, c, cmu, bld.m1)
    return _System(bld.m0, bld.m1, bld.b, bld.node)


def _direct(system: _System, s: np.ndarray, row: int) -> np.ndarray:
    """``x_row`` at each complex frequency ``s`` by one dense solve per frequency."""
    mats = system.m0[None, :, :] + s[:, None, None] * system.m1[None, :, :]
    rhs = np.broadcast_to(system.b.astype(complex), (len(s), len(system.b)))
    try:
        return np.linalg.solve(mats, rhs[..., None])[:, row, 0]
    except np.linalg.LinAlgError as exc:
        raise NotAnalysable(f"singular nodal matrix: {exc}") from exc


def _pole_residue_batch(
    m0: np.ndarray, m1: np.ndarray, b: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For a stack of systems of one size: ``x_row(s) = sum_i c_i / (1 + s mu_i)``.

    With ``M0`` non-singular (every node has a DC path, which the rule layer enforces) and
    ``K = M0^-1 M1 = W diag(mu) W^-1``: ``(M0 + s M1)^-1 b = W diag(1/(1 + s mu)) W^-1 M0^-1 b``.
    Modes without storage have ``mu = 0`` and contribute the constant ``c_i``. One LU, one
    eigenproblem and one small solve per circuit, after which a sweep of any length is cheap.
    """
    both = np.linalg.solve(m0, np.concatenate([m1, b[:, :, None]], axis=2))
    mu, w = np.linalg.eig(both[:, :, :-1])
    coef = np.linalg.solve(w, both[:, :, -1:].astype(w.dtype))[:, :, 0]
    c = w[np.arange(len(rows)), rows, :] * coef
    return mu, c


def transfer_functions(
    systems: Sequence[_System], outputs: Sequence[str], frequency_hz: np.ndarray
) -> np.ndarray:
    """``v(out)/v(in)`` of systems of equal size on per-row grids ``frequency_hz`` (rows, F).

    Evaluated in pole-residue form. Nearly repeated poles make an eigenbasis ill-conditioned,
    which shows as residues far larger than the response they sum to; such rows (and a stack
    whose batched factorisation fails) are solved directly instead.
    """
    s = 2j * math.pi * np.asarray(frequency_hz, dtype=float)
    rows = np.array([sy.node[o] for sy, o in zip(systems, outputs, strict=True)])
    m0 = np.stack([sy.m0 for sy in systems])
    m1 = np.stack([sy.m1 for sy in systems])
    b = np.stack([sy.b for sy in systems])
    h = np.empty(s.shape, dtype=complex)
    try:
        mu, c = _pole_residue_batch(m0, m1, b, rows)
    except np.linalg.LinAlgError:
        bad = np.ones(len(systems), dtype=bool)
    else:
        h[:] = _evaluate(mu, c, s)
        peak = np.max(np.abs(h), axis=1)
        bad = ~(peak > 0) | (np.abs(c).sum(axis=1) > CANCELLATION_LIMIT * peak)
        bad |= ~np.all(np.isfinite(h), axis=1)
    for r in np.flatnonzero(bad):
        h[r] = _direct(systems[r], s[r], int(rows[r]))
    return h


def _evaluate(mu: np.ndarray, c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``sum_i c_i / (1 + s mu_i)`` per row, over the modes that matter.

    Modes without storage (``|mu|`` at rounding level) are a constant; modes whose residue is
    negligible are dropped. A filter keeps one or two modes of its eight, which makes the
    (rows, frequencies, modes) evaluation the cheap part it should be.
    """
    scale = np.max(np.abs(mu), axis=1, keepdims=True)
    static = np.abs(mu) <= 1e-14 * scale
    const = np.where(static, c, 0.0).sum(axis=1)
    weight = np.where(static, 0.0, np.abs(c))
    keep = weight > 1e-13 * (np.abs(const)[:, None] + weight.sum(axis=1, keepdims=True))
    k = int(keep.sum(axis=1).max())
    if k == 0:
        return np.broadcast_to(const[:, None], s.shape).copy()
    top = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept modes first
    rows = np.arange(len(mu))[:, None]
    mu_k = mu[rows, top]
    c_k = np.where(keep[rows, top], c[rows, top], 0.0)
    return const[:, None] + (c_k[:, None, :] / (1.0 + s[:, :, None] * mu_k[:, None, :])).sum(axis=2)


def estimate_many(
    payloads: Sequence[Mapping[str, Any]], sweeps: Sequence[tuple[float, float, int]]
) -> list[Measured | None]:
    """Hand-analysis gain and characteristic frequency of many payloads, each read off the
    ground truth's own frequency grid (``sweep`` = start Hz, stop Hz, points a decade, as
    ``.ac dec``) by the ground truth's own measuring code, so both share the grid's sampling
    of sharp peaks. ``None`` where the analysis does not apply (:class:`NotAnalysable`).

    Circuits are grouped by matrix size, grid length and response kind, and each group is
    factorised, eigendecomposed, evaluated and measured as one stack.
    """
    out: list[Measured | None] = [None] * len(payloads)
    groups: dict[tuple[int, int, str], list[tuple[int, _System, np.ndarray]]] = {}
    for i, (payload, sweep) in enumerate(zip(payloads, sweeps, strict=True)):
        try:
            system = small_signal_system(payload)
        except NotAnalysable:
            continue
        grid = ac_dec_grid(*sweep)
        key = (system.m0.shape[0], len(grid), RESPONSE[payload["topology"]])
        groups.setdefault(key, []).append((i, system, grid))
    for (_, _, response), members in groups.items():
        for first in range(0, len(members), BATCH):
            chunk = members[first : first + BATCH]
            idx = [i for i, _, _ in chunk]
            grids = np.stack([g for _, _, g in chunk])
            systems = [sy for _, sy, _ in chunk]
            outputs = [payloads[i]["output_node"] for i in idx]
            try:
                h = transfer_functions(systems, outputs, grids)
            except NotAnalysable:
                h = None
            if h is None:  # a singular member spoiled the stack: one by one
                for i, sy, g in chunk:
                    try:
                        hi = transfer_functions([sy], [payloads[i]["output_node"]], g[None, :])
                    except NotAnalysable:
                        continue
                    out[i] = measure_responses(g[None, :], hi, response)[0]
                continue
            for i, m in zip(idx, measure_responses(grids, h, response), strict=True):
                out[i] = m
    return out


def estimate(payload: Mapping[str, Any], sweep: tuple[float, float, int]) -> Measured:
    """:func:`estimate_many` of one payload; raises :class:`NotAnalysable`."""
    m = estimate_many([payload], [sweep])[0]
    if m is None:
        raise NotAnalysable("the hand analysis does not apply to this circuit")
    return m


@functools.lru_cache(maxsize=64)
def _unit_grid(n: int, log_ratio: float) -> np.ndarray:
    """``exp(k log_ratio / (n - 1))`` for k < n: the shape of every sweep of that span."""
    grid = np.exp(np.arange(n) * (log_ratio / (n - 1)))
    grid.setflags(write=False)
    return grid


def ac_dec_grid(f_start_hz: float, f_stop_hz: float, points_per_decade: int) -> np.ndarray:
    """The frequencies of ngspice's ``.ac dec N f_start f_stop``: ``floor(N decades) + 1``
    points spaced evenly in log from f_start to exactly f_stop (checked against ngspice 39)."""
    n = max(math.floor(points_per_decade * math.log10(f_stop_hz / f_start_hz) + 1e-9) + 1, 2)
    grid = f_start_hz * _unit_grid(n, round(math.log(f_stop_hz / f_start_hz), 12))
    grid[-1] = f_stop_hz
    return grid
