"""The calibration book: which surrogate versions exist, what each may decide, and why.

A newly trained version is a challenger: it scores every item beside the champion, collects
its own audits (only items scored by it count), and takes over once it has a certificate that
decides at least as many recent items as the champion's does. Every calibration spends the next
share of ``delta`` (the calibration index), so every certificate ever in force holds at once.

The book writes its records (versions, calibrations, promotions, surrogate errors) to the
ledger handle it is given, and tells its owner through ``on_in_force`` whenever the certificate
in force changes; it never reaches into the loop.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from foundry.calibration import (
    RouteCertificate,
    accept_error,
    certify,
    first_test,
    min_audits,
    reject_error,
    risks_from_predictions,
    spend_delta,
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

#: Recent (accept_risk, reject_risk) pairs per version, for comparing coverage on current items.
RECENT_SCORES = 4096
#: Simulated calibrations behind the label-free plausibility check.
PLAUSIBILITY_DRAWS = 16


@dataclass
class Certificate:
    """The thresholds a surrogate version may decide with, and the bounds behind them."""

    version: int
    surrogate_version: int
    accept: RouteCertificate
    reject: RouteCertificate | None

    @property
    def certified(self) -> bool:
        return self.accept.certified or (self.reject is not None and self.reject.certified)

    def coverage(self, accept_risk: np.ndarray, reject_risk: np.ndarray) -> float:
        """Fraction of the given items this certificate lets the surrogate decide."""
        if len(accept_risk) == 0:
            return 0.0
        decided = accept_risk <= self.accept.threshold
        if self.reject is not None:
            decided |= reject_risk <= self.reject.threshold
        return float(decided.mean())


@dataclass
class SurrogateSlot:
    """A trained surrogate version with the audits that may calibrate it."""

    version: int
    model: Surrogate
    n_labels: int
    accept_risks: list[float] = field(default_factory=list)
    reject_risks: list[float] = field(default_factory=list)
    accept_errors: list[bool] = field(default_factory=list)
    reject_errors: list[bool] = field(default_factory=list)
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=RECENT_SCORES))
    next_calibration_at: int = 0
    certificate: Certificate | None = None

    @property
    def n_audits(self) -> int:
        return len(self.accept_errors)

    def coverage(self) -> float:
        if self.certificate is None or not self.recent:
            return 0.0
        arr = np.asarray(self.recent)
        return self.certificate.coverage(arr[:, 0], arr[:, 1])


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
class BookParams:
    """The promise (``alpha`` at ``1 - delta``) and how calibrations are paced."""

    alpha: float
    reject_alpha: float
    delta: float
    recalibrate_growth: float
    #: comparison policy: the newest version decides at fixed risk levels, unaudited
    fixed_band: bool = False
    fixed_accept_risk: float = 0.05
    fixed_reject_risk: float = 0.05

    @classmethod
    def from_config(cls, cfg: RunConfig) -> BookParams:
        return cls(
            alpha=cfg.alpha,
            reject_alpha=cfg.effective_reject_alpha,
            delta=cfg.delta,
            recalibrate_growth=cfg.recalibrate_growth,
            fixed_band=cfg.policy == "fixed_band",
            fixed_accept_risk=cfg.fixed_accept_risk,
            fixed_reject_risk=cfg.fixed_reject_risk,
        )


class CalibrationBook:
    """Champion and challenger, their audits, and the certificates earned from them."""

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
        #: calibrations run so far; the next one spends ``spend_delta(delta, index + 1)``
        self.calibration_index = 0
        self.n_versions = 0

    # -- versions ---------------------------------------------------------------------------
    def add_version(self, model: Surrogate, n_labels: int, fit_s: float) -> SurrogateSlot:
        """Number a trained model and make it the challenger (it replaces an older one)."""
        self.n_versions += 1
        version = self.n_versions
        slot = SurrogateSlot(version, model, n_labels)
        slot.next_calibration_at = self._first_calibration_at()
        self.slots[version] = slot
        if self.challenger is not None and self.challenger != self.champion:
            self.slots.pop(self.challenger, None)
        self.challenger = version
        self.ledger.add_surrogate(version, n_labels, fit_s)
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
    def certificate(self) -> Certificate | None:
        """The champion's certificate: the one routing uses (None before a champion)."""
        champ = self.slots[self.champion] if self.champion is not None else None
        return champ.certificate if champ is not None else None

    # -- scoring and audits -----------------------------------------------------------------
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
        slot.recent.extend(zip(accept.tolist(), reject.tolist(), strict=True))
        names = [s.name for s in self.specs]
        return BatchScores(
            slot.version,
            accept,
            reject,
            None if pred.p_pass is None else np.asarray(pred.p_pass, dtype=float),
            {name: np.asarray(pred.values[name], dtype=float) for name in names},
            {name: np.asarray(pred.sigmas[name], dtype=float) for name in names},
        )

    def record_audit(self, scores: Sequence[Scored], verdict: Verdict | None) -> None:
        """Count an audited item for every version that scored it and is still in the book."""
        for s in scores:
            slot = self.slots.get(s.version)
            if slot is None:
                continue
            slot.accept_risks.append(s.accept_risk)
            slot.reject_risks.append(s.reject_risk)
            slot.accept_errors.append(accept_error(verdict, s.values, self.specs))
            slot.reject_errors.append(reject_error(verdict))

    # -- calibration ------------------------------------------------------------------------
    def _first_calibration_at(self) -> int:
        alpha = min(self.params.alpha, self.params.reject_alpha)
        return min_audits(alpha, spend_delta(self.params.delta, 1) / 2)

    def maybe_calibrate(self) -> None:
        """Recalibrate the versions whose audits have grown enough, then consider promotion."""
        if self.params.fixed_band:
            return
        for version in (self.champion, self.challenger):
            if version is None:
                continue
            slot = self.slots[version]
            if slot.n_audits < max(slot.next_calibration_at, 1):
                continue
            if slot.certificate is None and not self._plausible(slot):
                # label-free pre-check failed: spend no confidence on a hopeless calibration,
                # and look again once the audits have grown by a tenth
                slot.next_calibration_at = math.ceil(slot.n_audits * 1.1)
                continue
            self._calibrate(slot)
            slot.next_calibration_at = math.ceil(slot.n_audits * self.params.recalibrate_growth)
        self._maybe_promote()

    def _plausible(self, slot: SurrogateSlot) -> bool:
        """Would a calibration likely certify a route if the surrogate's own risks were right?

        Uses the audits' risks only, never their labels, so it spends no confidence: it just
        avoids burning calibration indices (and with them, delta) before enough audits exist.
        Errors are simulated from the risks several times; a route counts as plausible when at
        least half its dry runs pass the scan's first test (the one that decides whether
        anything is certified), so that one lucky draw does not trigger a hopeless calibration.
        """
        delta_j = spend_delta(self.params.delta, self.calibration_index + 1)
        routes = [(slot.accept_risks, self.params.alpha)]
        if self.has_pass_fail:
            routes.append((slot.reject_risks, self.params.reject_alpha))
        rng = np.random.default_rng(slot.n_audits)
        for risk_list, alpha in routes:
            risks = np.asarray(risk_list, dtype=float)
            test = first_test(risks, alpha=alpha, delta=delta_j / len(routes))
            if test is None or test[1] < 0:
                continue
            n, k_max = test
            expected = np.clip(np.sort(risks[np.isfinite(risks)])[:n], 0.0, 1.0)
            errors = np.count_nonzero(rng.random((PLAUSIBILITY_DRAWS, n)) < expected, axis=1)
            if np.count_nonzero(errors <= k_max) * 2 >= PLAUSIBILITY_DRAWS:
                return True
        return False

    def _calibrate(self, slot: SurrogateSlot) -> None:
        p = self.params
        self.calibration_index += 1
        delta_j = spend_delta(p.delta, self.calibration_index)
        routes = 2 if self.has_pass_fail else 1
        accept = certify(
            np.asarray(slot.accept_risks),
            np.asarray(slot.accept_errors),
            alpha=p.alpha,
            delta=delta_j / routes,
            route="accept",
        )
        reject = None
        if self.has_pass_fail:
            reject = certify(
                np.asarray(slot.reject_risks),
                np.asarray(slot.reject_errors),
                alpha=p.reject_alpha,
                delta=delta_j / routes,
                route="reject",
            )
        slot.certificate = Certificate(self.calibration_index, slot.version, accept, reject)
        in_force = slot.version == self.champion
        self.ledger.add_calibration(
            {
                "version": self.calibration_index,
                "surrogate_version": slot.version,
                "created_at": time.time(),
                "delta_spent": delta_j,
                "in_force": int(in_force),
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
                "coverage": slot.coverage(),
            }
        )
        if in_force:
            self._show(slot)

    def _maybe_promote(self) -> None:
        if self.challenger is None:
            return
        chal = self.slots[self.challenger]
        if chal.certificate is None or not chal.certificate.certified:
            return
        champ = self.slots[self.champion] if self.champion is not None else None
        champ_certified = (
            champ is not None and champ.certificate is not None and champ.certificate.certified
        )
        if champ_certified and chal.coverage() < champ.coverage():
            return
        self.ledger.event(
            "info",
            "promote",
            f"surrogate v{chal.version} takes over (coverage {chal.coverage():.3f})",
        )
        self._crown(chal)

    def _install_fixed_band(self, slot: SurrogateSlot) -> None:
        """Comparison policy: the newest version decides at fixed risk levels, unaudited."""
        p, nan = self.params, float("nan")
        accept = RouteCertificate("accept", p.fixed_accept_risk, 0, 0, nan, p.alpha, nan)
        reject = None
        if self.has_pass_fail:
            reject = RouteCertificate("reject", p.fixed_reject_risk, 0, 0, nan, p.alpha, nan)
        slot.certificate = Certificate(0, slot.version, accept, reject)
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
