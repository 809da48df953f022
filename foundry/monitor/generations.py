"""Per-generation monitors of a closed loop, and the policy that acts on them.

A closed loop that makes each generation from the last one's accepted examples narrows: the
Vendi score (the effective number of distinct examples) falls, the distribution drifts away
from real data. :func:`measure_generation` summarises one generation's verified examples per
slice against fixed references - the Vendi score of generation 0 at the same sample size and
kernel, the real reservoir's features and property values - and :class:`CollapsePolicy`
turns those figures into actions on the loop's knobs (mutation strength, real mixing,
novelty, a reset to the reservoir) and, for a curriculum, the domain's difficulty knob. It
knows no loop: the loop applies what it returns and writes each action to the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from foundry.contract import Knob
from foundry.monitor.metrics import (
    kl_divergence,
    median_bandwidth,
    mmd2_rbf,
    vendi_score,
    wasserstein_1d,
)

#: the slice name of a whole generation's figures
ALL_SLICES = "__all__"
#: points a Vendi score is computed on: the same for every generation, so the scores compare
VENDI_POINTS = 256
#: fewer points than this in a slice: no figures for it (noise, not a signal)
MIN_POINTS = 8


@dataclass
class Reference:
    """What every generation is compared with, fixed when generation 0 closes: feature
    standardisation and kernel bandwidth, generation 0's Vendi score at ``VENDI_POINTS``,
    and the reservoir (features, property values) when the domain has one."""

    mean: list[float]
    std: list[float]
    bandwidth: float
    vendi: dict[str, float]
    reservoir_x: list[list[float]] = field(default_factory=list)
    reservoir_props: dict[str, list[float]] = field(default_factory=dict)

    def z(self, x: np.ndarray) -> np.ndarray:
        return (x - np.asarray(self.mean)) / np.asarray(self.std)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: Mapping) -> Reference:
        return cls(**dict(d))


def _vendi(z: np.ndarray, bandwidth: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    if len(z) > VENDI_POINTS:
        z = z[rng.choice(len(z), VENDI_POINTS, replace=False)]
    return vendi_score(z, bandwidth)


def make_reference(
    x: np.ndarray,
    slices: np.ndarray,
    reservoir_x: np.ndarray | None,
    reservoir_props: Mapping[str, np.ndarray],
    seed: int,
) -> Reference:
    """The reference from generation 0's verified examples ``x`` (and the reservoir)."""
    std = x.std(axis=0)
    # a constant column's std is rounding noise (1e-17), not a scale: it would blow any
    # later variation up to 1e15 standard deviations
    std = np.where(std > 1e-9 * np.maximum(1.0, np.abs(x).max(axis=0)), std, 1.0)
    mean = x.mean(axis=0)
    z = (x - mean) / std
    bandwidth = median_bandwidth(z, np.random.default_rng(seed))
    vendi = {ALL_SLICES: _vendi(z, bandwidth, seed)}
    for name in sorted(set(slices.tolist())):
        mask = slices == name
        if mask.sum() >= MIN_POINTS:
            vendi[name] = _vendi(z[mask], bandwidth, seed)
    usable = reservoir_x is not None and len(reservoir_x) >= MIN_POINTS
    return Reference(
        mean.tolist(),
        std.tolist(),
        bandwidth,
        vendi,
        reservoir_x=np.asarray(reservoir_x).tolist() if usable else [],
        reservoir_props={k: np.asarray(v, float).tolist() for k, v in reservoir_props.items()},
    )


def measure_generation(
    generation: int,
    x: np.ndarray,
    slices: np.ndarray,
    props: Mapping[str, np.ndarray],
    accepted: int,
    decided: int,
    parent_slices: Sequence[tuple[str, bool]],
    ref: Reference,
    seed: int,
    audits: Sequence[tuple[str, bool]] = (),
) -> list[dict]:
    """One row of figures per slice with enough points, and one for the whole generation
    (slice ``ALL_SLICES``): the rows the ledger's monitor table keeps (``kind`` generation).
    ``x``/``slices``/``props``: the generation's accepted examples; ``accepted``/``decided``:
    its counts; ``parent_slices``: each parent's (slice, is real) - the provenance mix, per
    slice and for the whole generation; ``audits``: each audited item's (slice, whether the
    surrogate's call - p_pass >= 0.5 - disagreed with the ground truth)."""
    z = ref.z(x) if len(x) else x
    res_z = ref.z(np.asarray(ref.reservoir_x)) if ref.reservoir_x else None
    base = {
        "kind": "generation",
        "generation": generation,
        "acceptance_rate": accepted / decided if decided else None,
    }
    rows = []
    names = [ALL_SLICES, *sorted(set(slices.tolist()))]
    for name in names:
        mask = np.ones(len(z), bool) if name == ALL_SLICES else slices == name
        n = int(mask.sum())
        if name != ALL_SLICES and n < MIN_POINTS:
            continue
        row: dict = {**base, "slice": name, "n": n, **_provenance(parent_slices, name)}
        wrong = [e for s, e in audits if name in (ALL_SLICES, s)]
        row["audits"] = len(wrong)
        row["audit_error"] = sum(wrong) / len(wrong) if wrong else None
        if n >= 2:
            row["vendi"] = _vendi(z[mask], ref.bandwidth, seed + generation)
        row["reference_vendi"] = ref.vendi.get(name)
        if res_z is not None and n >= MIN_POINTS:
            rng = np.random.default_rng(seed + generation)
            row["mmd2"] = mmd2_rbf(z[mask], res_z, ref.bandwidth, rng)
        if n >= MIN_POINTS and ref.reservoir_props:
            row["wasserstein"] = {
                k: wasserstein_1d(np.asarray(v)[mask], np.asarray(ref.reservoir_props[k]))
                for k, v in props.items()
                if k in ref.reservoir_props
            }
            row["kl"] = {
                k: kl_divergence(np.asarray(v)[mask], np.asarray(ref.reservoir_props[k]))
                for k, v in props.items()
                if k in ref.reservoir_props
            }
        rows.append(row)
    return rows


def _provenance(parent_slices: Sequence[tuple[str, bool]], name: str) -> dict:
    """The real share and synthetic-to-real ratio of a slice's parents (or all of them)."""
    mine = [real for s, real in parent_slices if name in (ALL_SLICES, s)]
    n_real = sum(mine)
    return {
        "parents": len(mine),
        "real_fraction": n_real / len(mine) if mine else 0.0,
        "synthetic_to_real": (len(mine) - n_real) / n_real if n_real else None,
    }


@dataclass(frozen=True)
class PolicyParams:
    prevention: bool
    vendi_alarm: float
    vendi_reset: float
    mmd_alarm: float | None
    max_mutation_scale: float
    max_real_fraction: float
    acceptance_band: tuple[float, float] | None


@dataclass
class Action:
    """One change to the loop's knobs, with the reason the ledger records."""

    knob: str
    value: float
    reason: str


@dataclass
class Alarm:
    """A monitor figure past its threshold (logged whether or not the policy acts)."""

    level: str
    message: str


@dataclass
class PolicyDecision:
    alarms: list[Alarm]
    actions: list[Action]


class CollapsePolicy:
    """Thresholds on a generation's whole-generation figures -> actions.

    Below ``vendi_alarm`` x reference (or above ``mmd_alarm``): double the mutation step,
    add 0.1 to the real share of parents and 0.25 to the novelty share (each capped). Below
    ``vendi_reset``: also propose the next generation from the reservoir alone. A curriculum
    (``acceptance_band``) moves the difficulty knob one step when the acceptance rate leaves
    the band. With ``prevention`` off, alarms are raised and nothing else happens.
    """

    def __init__(self, params: PolicyParams) -> None:
        self.params = params

    def decide(
        self,
        rows: Sequence[Mapping],
        knobs: Mapping[str, float],
        difficulty: tuple[Knob, float] | None = None,
    ) -> PolicyDecision:
        """``knobs``: mutation_scale, real_fraction, novelty_fraction, from_reservoir now;
        ``difficulty``: the domain's difficulty knob and its value now."""
        p = self.params
        whole = next((r for r in rows if r.get("slice") == ALL_SLICES), None)
        alarms: list[Alarm] = []
        actions: list[Action] = []
        if whole is None:
            return PolicyDecision(alarms, actions)
        g = whole["generation"]
        vendi, ref = whole.get("vendi"), whole.get("reference_vendi")
        ratio = vendi / ref if vendi is not None and ref else None
        narrowing = ratio is not None and ratio < p.vendi_alarm
        mmd = whole.get("mmd2")
        drifting = p.mmd_alarm is not None and mmd is not None and mmd > p.mmd_alarm
        if narrowing:
            alarms.append(
                Alarm(
                    "warning",
                    f"generation {g}: Vendi score {vendi:.3g} is {ratio:.0%} of "
                    f"the reference {ref:.3g} (alarm below {p.vendi_alarm:.0%})",
                )
            )
        if drifting:
            alarms.append(
                Alarm(
                    "warning",
                    f"generation {g}: MMD^2 to the reservoir {mmd:.3g} above {p.mmd_alarm:.3g}",
                )
            )
        if p.prevention and (narrowing or drifting):
            why = alarms[0].message
            scale = min(knobs["mutation_scale"] * 2.0, p.max_mutation_scale)
            if scale != knobs["mutation_scale"]:
                actions.append(Action("mutation_scale", scale, why))
            real = min(knobs["real_fraction"] + 0.1, p.max_real_fraction)
            if real != knobs["real_fraction"]:
                actions.append(Action("real_fraction", round(real, 6), why))
            novelty = min(knobs["novelty_fraction"] + 0.25, 0.75)
            if novelty != knobs["novelty_fraction"]:
                actions.append(Action("novelty_fraction", novelty, why))
            if ratio is not None and ratio < p.vendi_reset:
                actions.append(Action("from_reservoir", 1.0, f"{why}; below {p.vendi_reset:.0%}"))
        elif p.prevention and knobs.get("from_reservoir"):
            actions.append(Action("from_reservoir", 0.0, f"generation {g}: diversity back"))
        rate = whole.get("acceptance_rate")
        if p.acceptance_band is not None and difficulty is not None and rate is not None:
            knob, value = difficulty
            low, high = p.acceptance_band
            steps, word = (1, "above") if rate > high else (-1, "below") if rate < low else (0, "")
            turned = knob.turned(value, steps)
            if steps and turned != value:
                bound = high if steps > 0 else low
                actions.append(
                    Action(
                        knob.name,
                        turned,
                        f"generation {g}: acceptance {rate:.0%} "
                        f"{word} {bound:.0%}: {'harder' if steps > 0 else 'easier'}",
                    )
                )
        return PolicyDecision(alarms, actions)
