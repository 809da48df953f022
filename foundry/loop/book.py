"""The calibration book: which surrogate versions exist, what each may decide, where, and why.

Certificates are kept per **stratum** - a (regime, slice) pair - and per surrogate version:

* the *regime* is the generator's configuration (its hash includes the steering values) or
  the input stream: after a steering change the surrogate releases in the new regime only on
  certificates from audits drawn in it;
* the *slice* is what the domain's ``slice_of`` says (circuits: the topology): a scientist who
  keeps one slice gets that slice's guarantee, not an average over slices.

Audits are kept in **submission order**, and a look at a stratum uses exactly its first ``m``
audits once all of them are in - never the ones that happened to finish first (slow items are
often the wrong ones). The look points ``m_1 < m_2 < ...`` grow geometrically and are fixed by
counts, not by labels. Each look spends a share of ``delta`` fixed by its place in the
schedule - ``w(version) * w(regime) * share(slice) * w(look)`` with ``w(k) = 6 / (pi^2 k^2)``
(slices declared up front share equally) - so with probability ``1 - delta`` every
certificate ever issued in the run holds at once. Choosing among certified versions may then
use their audits: a newer version takes over when, on the audits both scored, it decides
more, or about as much with fewer errors.

The book writes its records to the ledger handle it is given and tells its owner through
``on_in_force`` when the champion changes or earns a certificate; it never reaches into the
loop.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from foundry.calibration import (
    RISK_GRID,
    RouteCertificate,
    accept_error,
    certify,
    first_test,
    min_audits,
    reject_error,
    risks_from_predictions,
)
from foundry.config import RunConfig
from foundry.contract import (
    Candidate,
    PluginError,
    Predictions,
    PropertySpec,
    Surrogate,
    Verdict,
)
from foundry.ledger import Ledger

#: Simulated calibrations behind the label-free plausibility check.
PLAUSIBILITY_DRAWS = 16
#: Audits both versions scored, at least, before a challenger may take over.
MIN_COMMON_AUDITS = 100
#: A challenger deciding this much less (as a share of items) is not "comparable coverage".
PROMOTION_MARGIN = 0.02

StratumKey = tuple[str, str]  # (regime, slice)


def schedule_weight(k: int) -> float:
    """``6 / (pi^2 k^2)``: the k-th share of a budget that sums to 1 over k = 1, 2, ..."""
    if k < 1:
        raise ValueError("schedule positions start at 1")
    return 6.0 / (math.pi**2 * k**2)


@dataclass(frozen=True)
class Certificate:
    """What one surrogate version may decide in one stratum, and the audits behind it."""

    id: int
    surrogate_version: int
    stratum: StratumKey
    look: int
    accept: RouteCertificate
    reject: RouteCertificate | None

    @property
    def certified(self) -> bool:
        return self.accept.certified or (self.reject is not None and self.reject.certified)

    @property
    def reject_threshold(self) -> float:
        return self.reject.threshold if self.reject is not None else -math.inf


@dataclass
class Stratum:
    """One version's audits in one (regime, slice), in submission order, and its certificate."""

    key: StratumKey
    next_look_at: int
    seqs: list[int] = field(default_factory=list)
    accept_risks: list[float] = field(default_factory=list)
    reject_risks: list[float] = field(default_factory=list)
    values: list[dict[str, float]] = field(default_factory=list)
    accept_errors: list[bool | None] = field(default_factory=list)
    reject_errors: list[bool | None] = field(default_factory=list)
    position: dict[int, int] = field(default_factory=dict)
    #: length of the prefix whose results are all in
    complete: int = 0
    #: looks taken (each spent its share of delta)
    looks: int = 0
    #: look points reached, including looks the label-free pre-check deferred
    attempts: int = 0
    certificate: Certificate | None = None

    def add(self, seq: int, accept_risk: float, reject_risk: float, values: dict) -> None:
        self.position[seq] = len(self.seqs)
        self.seqs.append(seq)
        self.accept_risks.append(accept_risk)
        self.reject_risks.append(reject_risk)
        self.values.append(values)
        self.accept_errors.append(None)
        self.reject_errors.append(None)

    def resolve(self, seq: int, accept_err: bool, reject_err: bool) -> None:
        i = self.position.get(seq)
        if i is None or self.accept_errors[i] is not None:
            return
        self.accept_errors[i] = accept_err
        self.reject_errors[i] = reject_err
        while self.complete < len(self.seqs) and self.accept_errors[self.complete] is not None:
            self.complete += 1


@dataclass
class SurrogateSlot:
    """A trained surrogate version with its audits and certificates, per stratum."""

    version: int
    model: Surrogate
    n_labels: int
    strata: dict[StratumKey, Stratum] = field(default_factory=dict)
    #: the fixed-band comparison policy's unaudited certificate (every stratum)
    fixed: Certificate | None = None

    @property
    def n_audits(self) -> int:
        return sum(s.complete for s in self.strata.values())

    @property
    def certified(self) -> bool:
        return self.fixed is not None or any(
            s.certificate is not None and s.certificate.certified for s in self.strata.values()
        )

    def certificate_for(self, key: StratumKey) -> Certificate | None:
        if self.fixed is not None:
            return self.fixed
        stratum = self.strata.get(key)
        return stratum.certificate if stratum is not None else None


@dataclass
class Scored:
    """One version's opinion of one item."""

    version: int
    accept_risk: float
    reject_risk: float
    p_pass: float | None
    values: dict[str, float]


@dataclass
class BatchScores:
    """One version's opinions of a whole batch: arrays with one entry per candidate."""

    version: int
    accept_risk: np.ndarray
    reject_risk: np.ndarray
    p_pass: np.ndarray | None
    values: dict[str, np.ndarray]
    sigmas: dict[str, np.ndarray]

    def item(self, i: int) -> Scored:
        return Scored(
            self.version,
            float(self.accept_risk[i]),
            float(self.reject_risk[i]),
            float(self.p_pass[i]) if self.p_pass is not None else None,
            {name: float(v[i]) for name, v in self.values.items()},
        )


@dataclass(frozen=True)
class Thresholds:
    """Per item of a batch, what the champion's certificate for its stratum allows."""

    accept: np.ndarray  # -inf where the route is not certified
    reject: np.ndarray
    certified: np.ndarray  # bool: the item's stratum has a certificate in force
    calibration: np.ndarray  # certificate id (-1: none)
    accept_bound: np.ndarray  # Clopper-Pearson estimate at the threshold (nan: none)
    reject_bound: np.ndarray
    alpha: float
    reject_alpha: float
    #: bool: the stratum still lacks a route's certificate and audits at the eager rate
    eager: np.ndarray | None = None
    #: bool: the stratum's certificate is complete and holds enough audits to audit at the
    #: relaxed rate (``relaxed_audit_rate``)
    relaxed: np.ndarray | None = None


#: A stratum missing a route's certificate audits eagerly until it holds this many times its
#: first look point of audits: enough for a few looks, bounded because some routes never
#: certify (a slice whose items all fail has nothing to accept) and eager audits cost the
#: certified route its savings.
EAGER_AUDIT_FACTOR = 8


@dataclass(frozen=True)
class BookParams:
    """The promise (``alpha`` at ``1 - delta``, per slice) and how looks are paced."""

    alpha: float
    reject_alpha: float
    delta: float
    recalibrate_growth: float
    #: no item whose own predicted risk exceeds this is decided by the surrogate
    max_item_risk: float = 0.1
    #: the domain's declared slices (None: open-ended, shared by order of appearance)
    slices: tuple[str, ...] | None = None
    #: comparison policy: the newest version decides at fixed risk levels, unaudited
    fixed_band: bool = False
    fixed_accept_risk: float = 0.05
    fixed_reject_risk: float = 0.05
    #: audits of the champion in a completely certified stratum after which its audit rate
    #: may relax (``None``: never)
    relax_after_audits: int | None = None

    @classmethod
    def from_config(cls, cfg: RunConfig, slices: tuple[str, ...] | None = None) -> BookParams:
        return cls(
            alpha=cfg.alpha,
            reject_alpha=cfg.effective_reject_alpha,
            delta=cfg.delta,
            recalibrate_growth=cfg.recalibrate_growth,
            max_item_risk=cfg.max_item_risk,
            slices=slices,
            fixed_band=cfg.policy == "fixed_band",
            fixed_accept_risk=cfg.fixed_accept_risk,
            fixed_reject_risk=cfg.fixed_reject_risk,
            relax_after_audits=(
                cfg.relax_after_audits if cfg.relaxed_audit_rate is not None else None
            ),
        )

    @property
    def grid(self) -> np.ndarray:
        """The threshold grid, capped at ``max_item_risk``."""
        return RISK_GRID[self.max_item_risk + 1e-12 >= RISK_GRID]


class CalibrationBook:
    """Champion and challenger, their audits per stratum, and the certificates earned."""

    def __init__(
        self,
        params: BookParams,
        specs: Sequence[PropertySpec],
        has_pass_fail: bool,
        ledger: Ledger,
        on_in_force: Callable[[SurrogateSlot], None] | None = None,
    ) -> None:
        self.params = params
        self.specs = tuple(specs)
        self.has_pass_fail = has_pass_fail
        self.ledger = ledger
        self.on_in_force = on_in_force
        self.slots: dict[int, SurrogateSlot] = {}
        self.champion: int | None = None
        self.challenger: int | None = None
        self.n_versions = 0
        #: certificates issued so far (their ids)
        self.n_certificates = 0
        #: order of first appearance of regimes and (undeclared) slices: their schedule places
        self.regimes: dict[str, int] = {}
        self.slices_seen: dict[str, int] = {}
        self.delta_spent = 0.0

    # -- versions ---------------------------------------------------------------------------
    def add_version(self, model: Surrogate, n_labels: int, fit_s: float) -> SurrogateSlot:
        """Number a trained model and make it the challenger (it replaces an older one)."""
        self.n_versions += 1
        slot = SurrogateSlot(self.n_versions, model, n_labels)
        self.slots[slot.version] = slot
        if self.challenger is not None and self.challenger != self.champion:
            self.slots.pop(self.challenger, None)
        self.challenger = slot.version
        self.ledger.add_surrogate(slot.version, n_labels, fit_s)
        if self.params.fixed_band:
            self._install_fixed_band(slot)
        return slot

    @property
    def versions(self) -> list[int]:
        """The versions that score a batch: champion first, then challenger."""
        return [v for v in (self.champion, self.challenger) if v is not None]

    @property
    def challenger_slot(self) -> SurrogateSlot | None:
        return self.slots.get(self.challenger) if self.challenger is not None else None

    @property
    def champion_slot(self) -> SurrogateSlot | None:
        return self.slots.get(self.champion) if self.champion is not None else None

    # -- scoring, thresholds ----------------------------------------------------------------
    def score(self, cands: list[Candidate]) -> dict[int, BatchScores | None]:
        """Every live version's opinions of a batch (None for a version that failed)."""
        return {v: self._score(self.slots[v], cands) for v in self.versions}

    def _score(self, slot: SurrogateSlot, cands: list[Candidate]) -> BatchScores | None:
        """One version's opinions; None when the surrogate raised or returned garbage."""
        try:
            pred = slot.model.predict(cands)
            if not isinstance(pred, Predictions) or pred.n != len(cands):
                raise PluginError("predict() must return Predictions for every candidate")
            pred.validate(self.specs, self.has_pass_fail)
        except Exception as exc:
            self.ledger.event("error", "surrogate", f"v{slot.version}: {type(exc).__name__}: {exc}")
            return None
        accept, reject = risks_from_predictions(pred, self.specs, self.has_pass_fail)
        names = [s.name for s in self.specs]
        return BatchScores(
            slot.version,
            accept,
            reject,
            None if pred.p_pass is None else np.asarray(pred.p_pass, dtype=float),
            {name: np.asarray(pred.values[name], dtype=float) for name in names},
            {name: np.asarray(pred.sigmas[name], dtype=float) for name in names},
        )

    def thresholds(self, regime: str, slices: np.ndarray) -> Thresholds:
        """The champion's thresholds for each item, from the certificate of its stratum."""
        n = len(slices)
        out = Thresholds(
            accept=np.full(n, -np.inf),
            reject=np.full(n, -np.inf),
            certified=np.zeros(n, dtype=bool),
            calibration=np.full(n, -1, dtype=np.int64),
            accept_bound=np.full(n, np.nan),
            reject_bound=np.full(n, np.nan),
            alpha=self.params.alpha,
            reject_alpha=self.params.reject_alpha,
            eager=np.zeros(n, dtype=bool),
            relaxed=np.zeros(n, dtype=bool),
        )
        champ = self.champion_slot
        if champ is None or n == 0:
            return out
        for name in np.unique(slices).tolist():
            cert = champ.certificate_for((regime, name))
            if cert is None or not cert.certified:
                continue
            mask = slices == name
            out.certified[mask] = True
            out.calibration[mask] = cert.id
            if cert.accept.certified:
                out.accept[mask] = cert.accept.threshold
                out.accept_bound[mask] = cert.accept.upper_bound
            if cert.reject is not None and cert.reject.certified:
                out.reject[mask] = cert.reject.threshold
                out.reject_bound[mask] = cert.reject.upper_bound
            assert out.eager is not None and out.relaxed is not None
            out.eager[mask] = self._eager(champ, (regime, name), cert)
            out.relaxed[mask] = self._relaxed(champ, (regime, name), cert)
        return out

    def _complete(self, cert: Certificate) -> bool:
        return cert.accept.certified and (
            not self.has_pass_fail or (cert.reject is not None and cert.reject.certified)
        )

    def _relaxed(self, slot: SurrogateSlot, key: StratumKey, cert: Certificate) -> bool:
        """Whether a stratum may audit at the relaxed rate: its certificate covers every route
        and it holds ``relax_after_audits`` audits of this version. Like ``_eager``, a function
        of the stratum's state, never of an item's score: within a stationary stratum the
        audits stay a uniform sample of its items whatever the rate at each moment."""
        after = self.params.relax_after_audits
        stratum = slot.strata.get(key)
        if after is None or stratum is None or not self._complete(cert):
            return False
        return len(stratum.seqs) >= after

    def _eager(self, slot: SurrogateSlot, key: StratumKey, cert: Certificate) -> bool:
        """Whether a certified stratum should still audit at the eager rate: one of its routes
        has no certificate yet and it holds fewer than ``EAGER_AUDIT_FACTOR`` first look
        points of audits. Depends on the stratum's state only, never on an item's score."""
        stratum = slot.strata.get(key)
        if self._complete(cert) or stratum is None:
            return False
        budget = EAGER_AUDIT_FACTOR * self._first_look_at(slot.version, key)
        return len(stratum.seqs) < budget

    # -- audits -------------------------------------------------------------------------------
    def register_audits(
        self,
        regime: str,
        seqs: Sequence[int],
        slices: Sequence[str],
        scores: Sequence[Sequence[Scored]],
        *,
        journal: bool = True,
    ) -> None:
        """Audited items at the moment they are routed - submission order - with, per item,
        the opinion of every version that scored it; ``journal``: also into the ledger, so
        that a resumed run rebuilds the same strata (it registers them again unjournalled)."""
        if journal:
            self.ledger.add_audit_opinions(
                [
                    (seq, s.version, s.accept_risk, s.reject_risk, s.p_pass, _values_json(s.values))
                    for seq, opinions in zip(seqs, scores, strict=True)
                    for s in opinions
                ]
            )
        self._place(self.regimes, regime)
        for seq, name, opinions in zip(seqs, slices, scores, strict=True):
            if self.params.slices is None:
                self._place(self.slices_seen, name)
            for s in opinions:
                slot = self.slots.get(s.version)
                if slot is None:
                    continue
                stratum = slot.strata.get((regime, name))
                if stratum is None:
                    stratum = self._new_stratum(slot, (regime, name))
                stratum.add(seq, s.accept_risk, s.reject_risk, s.values)

    def resolve_audit(self, seq: int, regime: str, name: str, verdict: Verdict | None) -> None:
        """An audited item's final result, for every version that registered it."""
        reject_err = reject_error(verdict)
        for slot in self.slots.values():
            stratum = slot.strata.get((regime, name))
            if stratum is None or seq not in stratum.position:
                continue
            values = stratum.values[stratum.position[seq]]
            stratum.resolve(seq, accept_error(verdict, values, self.specs), reject_err)

    @staticmethod
    def _place(order: dict[str, int], key: str) -> int:
        if key not in order:
            order[key] = len(order) + 1
        return order[key]

    # -- confidence -------------------------------------------------------------------------
    def slice_share(self, name: str) -> float:
        declared = self.params.slices
        if declared is not None:
            return 1.0 / len(declared) if name in declared else 0.0
        return schedule_weight(self._place(self.slices_seen, name))

    def look_delta(self, version: int, key: StratumKey, look: int) -> float:
        """The share of delta that look ``look`` of ``version`` at stratum ``key`` spends."""
        regime, name = key
        return (
            self.params.delta
            * schedule_weight(version)
            * schedule_weight(self._place(self.regimes, regime))
            * self.slice_share(name)
            * schedule_weight(look)
        )

    def _new_stratum(self, slot: SurrogateSlot, key: StratumKey) -> Stratum:
        stratum = Stratum(key, next_look_at=self._first_look_at(slot.version, key))
        slot.strata[key] = stratum
        return stratum

    def _first_look_at(self, version: int, key: StratumKey) -> int:
        """Fewest audits with which the first look could certify anything at all."""
        share = self.look_delta(version, key, 1)
        if share <= 0:
            return 2**62  # an undeclared slice: never certified
        alpha = min(self.params.alpha, self.params.reject_alpha)
        return min_audits(alpha, share / (2 if self.has_pass_fail else 1))

    # -- looks ------------------------------------------------------------------------------
    def maybe_calibrate(self) -> None:
        """Look at every stratum whose complete prefix reached its next look point, then
        consider promotion."""
        if self.params.fixed_band:
            return
        looked = False
        for version in list(self.versions):
            slot = self.slots.get(version)
            if slot is None:
                continue
            for stratum in slot.strata.values():
                while stratum.complete >= stratum.next_look_at:
                    looked |= self._look(slot, stratum)
        if looked:  # certificates changed: the only moment a comparison can change its mind
            self._maybe_promote()

    def _look(self, slot: SurrogateSlot, stratum: Stratum) -> bool:
        """Look at a stratum's first ``next_look_at`` audits; True when a certificate was
        issued (False: the label-free pre-check deferred the look)."""
        m = stratum.next_look_at
        stratum.attempts += 1
        delta_j = self.look_delta(slot.version, stratum.key, stratum.looks + 1)
        routes = 2 if self.has_pass_fail else 1
        if stratum.certificate is None and not self._plausible(stratum, m, delta_j / routes):
            # label-free: spends no confidence; look again once the audits grow by a tenth
            stratum.next_look_at = max(math.ceil(m * 1.1), m + 1)
            return False
        stratum.looks += 1
        self.delta_spent += delta_j
        p = self.params
        accept = certify(
            np.asarray(stratum.accept_risks[:m]),
            np.asarray(stratum.accept_errors[:m], dtype=bool),
            alpha=p.alpha,
            delta=delta_j / routes,
            route="accept",
            grid=p.grid,
        )
        reject = None
        if self.has_pass_fail:
            reject = certify(
                np.asarray(stratum.reject_risks[:m]),
                np.asarray(stratum.reject_errors[:m], dtype=bool),
                alpha=p.reject_alpha,
                delta=delta_j / routes,
                route="reject",
                grid=p.grid,
            )
        self.n_certificates += 1
        cert = Certificate(
            self.n_certificates, slot.version, stratum.key, stratum.looks, accept, reject
        )
        stratum.certificate = cert
        stratum.next_look_at = max(math.ceil(m * p.recalibrate_growth), m + 1)
        regime, name = stratum.key
        self.ledger.add_calibration(
            {
                "version": cert.id,
                "surrogate_version": slot.version,
                "created_at": time.time(),
                "delta_spent": delta_j,
                "in_force": int(slot.version == self.champion),
                "accept_threshold": accept.threshold if accept.certified else None,
                "accept_n": accept.n_audits,
                "accept_errors": accept.n_errors,
                "accept_bound": accept.upper_bound,
                "reject_threshold": reject.threshold if reject and reject.certified else None,
                "reject_n": reject.n_audits if reject else None,
                "reject_errors": reject.n_errors if reject else None,
                "reject_bound": reject.upper_bound if reject else None,
                "alpha": p.alpha,
                "reject_alpha": p.reject_alpha,
                "coverage": None,
                "regime": regime,
                "slice": name,
                "look": stratum.looks,
                "audits_used": m,
                "last_audit_seq": stratum.seqs[m - 1],
            }
        )
        if slot.version == self.champion:
            self._show(slot)
        return True

    def _plausible(self, stratum: Stratum, m: int, delta: float) -> bool:
        """Would a look likely certify a route if the surrogate's own risks were right?

        Uses the audits' risks only, never their labels, so it spends no confidence: it avoids
        spending looks (and their share of delta) before enough audits exist. Errors are
        simulated from the risks; a route is plausible when at least half its dry runs pass
        the scan's first test (the one that decides whether anything is certified).
        """
        p = self.params
        routes = [(stratum.accept_risks[:m], p.alpha)]
        if self.has_pass_fail:
            routes.append((stratum.reject_risks[:m], p.reject_alpha))
        rng = np.random.default_rng(m)
        for risk_list, alpha in routes:
            risks = np.asarray(risk_list, dtype=float)
            test = first_test(risks, alpha=alpha, delta=delta, grid=p.grid)
            if test is None or test[1] < 0:
                continue
            n, k_max = test
            expected = np.clip(np.sort(risks[np.isfinite(risks)])[:n], 0.0, 1.0)
            errors = np.count_nonzero(rng.random((PLAUSIBILITY_DRAWS, n)) < expected, axis=1)
            if np.count_nonzero(errors <= k_max) * 2 >= PLAUSIBILITY_DRAWS:
                return True
        return False

    # -- durable state ------------------------------------------------------------------------
    def state(self) -> dict[str, object]:
        """What the book needs beyond the ledger's tables to resume: who is champion, the
        schedule places handed out, and the confidence spent (committed with the rows)."""
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "n_versions": self.n_versions,
            "n_certificates": self.n_certificates,
            "regimes": list(self.regimes),
            "slices_seen": list(self.slices_seen),
            "delta_spent": self.delta_spent,
        }

    def restore(
        self,
        state: dict,
        models: dict[int, tuple[Surrogate, int]],
        audits: Sequence[tuple[int, str, str, Verdict | None, bool]],
        opinions: dict[int, list[Scored]],
        calibrations: Sequence[dict],
    ) -> None:
        """Rebuild the book of a killed run: ``models`` (version -> (model, labels)) for the
        champion and challenger, ``audits`` (seq, regime, slice, verdict, resolved) in seq
        order, every version's ``opinions`` of them, and the ``calibrations`` rows. Looks go on
        from the last one taken in each stratum, so no share of delta is spent twice; the
        last certificate of each stratum is in force again."""
        self.n_versions = int(state.get("n_versions", 0))
        self.n_certificates = int(state.get("n_certificates", 0))
        self.delta_spent = float(state.get("delta_spent", 0.0))
        for name in state.get("regimes", []):
            self._place(self.regimes, name)
        for name in state.get("slices_seen", []):
            self._place(self.slices_seen, name)
        for version in (state.get("champion"), state.get("challenger")):
            if version is not None and version in models and version not in self.slots:
                model, n_labels = models[version]
                self.slots[version] = SurrogateSlot(version, model, n_labels)
        self.champion = state.get("champion") if state.get("champion") in self.slots else None
        chal = state.get("challenger")
        self.challenger = chal if chal in self.slots and chal != self.champion else None
        # audits no live version scored are skipped: the live run registered an audit only
        # with opinions (none before the first surrogate), and registering one would place
        # its regime - shifting every later regime's share of delta - where the run did not
        # (the order of the regimes it did place is in ``state``)
        scored = [a for a in audits if opinions.get(a[0])]
        for seq, regime, name, _verdict, _resolved in scored:
            self.register_audits(regime, [seq], [name], [opinions[seq]], journal=False)
        for seq, regime, name, verdict, resolved in scored:
            if resolved:
                self.resolve_audit(seq, regime, name, verdict)
        self._restore_looks(calibrations)
        if self.params.fixed_band and self.champion is not None:
            self._install_fixed_band(self.slots[self.champion])
        elif self.champion is not None:
            self._show(self.slots[self.champion])

    def _restore_looks(self, calibrations: Sequence[dict]) -> None:
        """Each stratum's last look: its certificate, look count and next look point."""
        last: dict[tuple[int, str, str], dict] = {}
        for row in calibrations:
            key = (row["surrogate_version"], row["regime"], row["slice"])
            if key not in last or row["look"] > last[key]["look"]:
                last[key] = row
        routes = 2 if self.has_pass_fail else 1
        for (version, regime, name), row in last.items():
            slot = self.slots.get(version)
            if slot is None:
                continue
            stratum = slot.strata.get((regime, name)) or self._new_stratum(slot, (regime, name))
            share = row["delta_spent"] / routes
            accept = RouteCertificate(
                "accept",
                row["accept_threshold"] if row["accept_threshold"] is not None else -math.inf,
                row["accept_n"], row["accept_errors"], row["accept_bound"], row["alpha"], share,
            )  # fmt: skip
            reject = None
            if self.has_pass_fail:
                reject = RouteCertificate(
                    "reject",
                    row["reject_threshold"] if row["reject_threshold"] is not None else -math.inf,
                    row["reject_n"] or 0, row["reject_errors"] or 0,
                    row["reject_bound"] if row["reject_bound"] is not None else math.nan,
                    row["reject_alpha"], share,
                )  # fmt: skip
            stratum.looks = stratum.attempts = int(row["look"])
            stratum.certificate = Certificate(
                int(row["version"]), version, (regime, name), stratum.looks, accept, reject
            )
            m = int(row["audits_used"])
            stratum.next_look_at = max(math.ceil(m * self.params.recalibrate_growth), m + 1)

    # -- promotion --------------------------------------------------------------------------
    def challenger_evaluated(self) -> bool:
        """Whether the challenger has reached a look point in every stratum where the champion
        holds a certificate: only then has it had its chance to take over."""
        chal, champ = self.challenger_slot, self.champion_slot
        if chal is None or champ is None:
            return True
        for key, theirs in champ.strata.items():
            if theirs.certificate is None or not theirs.certificate.certified:
                continue
            mine = chal.strata.get(key)
            if mine is None or mine.attempts == 0:
                return False
        return True

    def compare(self, challenger: SurrogateSlot, champion: SurrogateSlot) -> dict[str, float]:
        """Coverage and error rate of both versions on the audits both scored (complete ones
        of the challenger's strata): a uniform sample of the current items, so the two are
        measured on the same ground."""
        n = decided_c = decided_h = errors_c = errors_h = 0
        for key, mine in challenger.strata.items():
            theirs = champion.strata.get(key)
            if theirs is None:
                continue
            cert_c, cert_h = challenger.certificate_for(key), champion.certificate_for(key)
            for i in range(mine.complete):
                j = theirs.position.get(mine.seqs[i])
                if j is None or j >= theirs.complete:
                    continue
                n += 1
                d, e = _decides(cert_c, mine, i)
                decided_c += d
                errors_c += e
                d, e = _decides(cert_h, theirs, j)
                decided_h += d
                errors_h += e
        return {
            "common_audits": n,
            "coverage_challenger": decided_c / n if n else 0.0,
            "coverage_champion": decided_h / n if n else 0.0,
            "error_challenger": errors_c / decided_c if decided_c else 0.0,
            "error_champion": errors_h / decided_h if decided_h else 0.0,
        }

    def _maybe_promote(self) -> None:
        chal = self.challenger_slot
        if chal is None or not chal.certified:
            return
        champ = self.champion_slot
        if champ is not None and champ.certified:
            c = self.compare(chal, champ)
            if c["common_audits"] < MIN_COMMON_AUDITS:
                return
            more = c["coverage_challenger"] >= c["coverage_champion"] + PROMOTION_MARGIN
            comparable = c["coverage_challenger"] >= c["coverage_champion"] - PROMOTION_MARGIN
            better = c["error_challenger"] < c["error_champion"]
            if not (more or (comparable and better)):
                return
            why = (
                f"on {c['common_audits']} common audits it decides "
                f"{c['coverage_challenger']:.1%} (v{champ.version}: "
                f"{c['coverage_champion']:.1%}) with {c['error_challenger']:.2%} errors "
                f"({c['error_champion']:.2%})"
            )
        else:
            why = "the first certified version"
        self.ledger.event("info", "promote", f"surrogate v{chal.version} takes over: {why}")
        self._crown(chal)

    def _install_fixed_band(self, slot: SurrogateSlot) -> None:
        """Comparison policy: the newest version decides at fixed risk levels, unaudited."""
        p, nan = self.params, float("nan")
        accept = RouteCertificate("accept", p.fixed_accept_risk, 0, 0, nan, p.alpha, nan)
        reject = None
        if self.has_pass_fail:
            reject = RouteCertificate("reject", p.fixed_reject_risk, 0, 0, nan, p.alpha, nan)
        slot.fixed = Certificate(0, slot.version, ("*", "*"), 0, accept, reject)
        self._crown(slot)

    def _crown(self, slot: SurrogateSlot) -> None:
        """Make ``slot`` the champion; the old champion's audits are no longer needed."""
        if self.champion is not None:
            self.slots.pop(self.champion, None)
        self.champion, self.challenger = slot.version, None
        self._show(slot)

    def _show(self, slot: SurrogateSlot) -> None:
        if self.on_in_force is not None:
            self.on_in_force(slot)


def _values_json(values: dict[str, float]) -> str:
    return json.dumps({k: (v if math.isfinite(v) else None) for k, v in values.items()})


def _decides(cert: Certificate | None, stratum: Stratum, i: int) -> tuple[int, int]:
    """(decided, wrong) for audit ``i`` of ``stratum`` under ``cert``."""
    if cert is None or not cert.certified:
        return 0, 0
    if stratum.accept_risks[i] <= cert.accept.threshold:
        return 1, int(bool(stratum.accept_errors[i]))
    if stratum.reject_risks[i] <= cert.reject_threshold:
        return 1, int(bool(stratum.reject_errors[i]))
    return 0, 0
