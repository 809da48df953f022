"""Routing a scored batch: pure arrays in, arrays out (no ledger, no state).

Routing of a rule-valid candidate scored by the surrogate version in force (the champion),
with the thresholds of the certificate for the item's own stratum (regime, slice):

* no surrogate version yet -> ground truth, and the item is an audit (every item is, so the
  audit sample stays uniform): ``no_surrogate``;
* versions exist but none could score the batch -> ground truth, not an audit:
  ``surrogate_error``;
* the item's stratum has no certificate in force, or the champion could not score -> ground
  truth as an audit: ``uncalibrated``;
* otherwise, with probability ``audit_rate`` -> ground truth as an audit (``audit``), decided by
  the draw before looking at the score;
* else ``accept_risk <= accept threshold`` -> released on the surrogate's word
  (``surrogate_accept``);
* else ``reject_risk <= reject threshold`` -> rejected on the surrogate's word
  (``surrogate_reject``);
* else -> ground truth as an *uncertain* item (labelled and used for training, never an
  audit): ``uncertain``; or, beyond the run's ``uncertain_share`` budget, *deferred*
  (``deferred``: recorded with its reason, neither released nor labelled).

Which uncertain items the budget labels: each with probability ``uncertain_share * r / mean(r)``
(capped at 1), ``r`` its predicted risk and the mean over the batch's uncertain items - the
riskier an item, the more a label of it teaches the surrogate - decided by the item's own
audit draw (uniform above the audit rate for a non-audit), so the choice is reproducible and
never touches the audit sample.

Kept pure so that the rule the guarantee rests on can be read and tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from foundry.loop.book import Thresholds

#: decision of an item the router sends to the ground truth
PENDING = "pending"
#: decision of an uncertain item beyond the run's ``uncertain_share``
DEFERRED = "deferred"


@dataclass(frozen=True)
class Routes:
    """Per item of a batch: the route taken, the decision made now, and whether it audits."""

    route: np.ndarray  # object array of route names
    decision: np.ndarray  # object array: "pending", "accepted" or "rejected"
    audit: np.ndarray  # bool

    @property
    def to_truth(self) -> np.ndarray:
        """Items the ground truth must decide."""
        return self.decision == PENDING


def route_batch(
    audit_draws: np.ndarray,
    audit_rate: float,
    thresholds: Thresholds | None,
    accept_risk: np.ndarray | None = None,
    reject_risk: np.ndarray | None = None,
    *,
    has_surrogate: bool = True,
    scored: bool = True,
    uncertified_audit_rate: float | None = None,
    uncertain_share: float = 1.0,
    relaxed_audit_rate: float | None = None,
) -> Routes:
    """Route a batch of ``len(audit_draws)`` items.

    ``thresholds``: per item, the champion's certified thresholds for the item's stratum
    (None when there is no champion); ``accept_risk``/``reject_risk``: the champion's risks
    (None when it could not score); ``audit_draws``: uniform draws in [0, 1), one per item,
    made whatever the route so that the audit stream does not depend on the surrogate;
    ``has_surrogate``: whether any version exists; ``scored``: whether any version (champion
    or challenger) scored the batch; ``uncertified_audit_rate``: the audit rate of items
    whose stratum is still missing a route's certificate (``thresholds.eager``; without
    it: the accept route's) - default ``audit_rate``; ``uncertain_share``: the expected
    share of uncertain items sent to the ground truth (the rest deferred);
    ``relaxed_audit_rate``: the audit rate of items whose stratum's certificate is complete
    and holds enough audits (``thresholds.relaxed``).
    """
    if uncertified_audit_rate is None:
        uncertified_audit_rate = audit_rate
    n = len(audit_draws)
    route = np.full(n, "", dtype=object)
    decision = np.full(n, PENDING, dtype=object)
    if not has_surrogate:
        return Routes(np.full(n, "no_surrogate", dtype=object), decision, np.ones(n, dtype=bool))
    if thresholds is None or accept_risk is None or not thresholds.certified.any():
        audit = np.full(n, bool(scored))
        route[:] = "uncalibrated" if scored else "surrogate_error"
        return Routes(route, decision, audit)
    certified = thresholds.certified
    # a stratum still missing a route's certificate ("eager") audits at
    # ``uncertified_audit_rate`` (decided by the draw, before the score), so that the audits
    # that certificate needs accumulate at that rate; the others at ``audit_rate``
    eager = thresholds.eager if thresholds.eager is not None else ~np.isfinite(thresholds.accept)
    rate = np.where(eager, uncertified_audit_rate, audit_rate)
    if relaxed_audit_rate is not None and thresholds.relaxed is not None:
        rate = np.where(thresholds.relaxed & ~eager, relaxed_audit_rate, rate)
    audit = ~certified | (audit_draws < rate)
    route[:] = "uncertain"
    route[audit] = "audit"
    route[~certified] = "uncalibrated"
    accept = ~audit & (accept_risk <= thresholds.accept)
    route[accept] = "surrogate_accept"
    decision[accept] = "accepted"
    if reject_risk is not None:
        reject = ~audit & ~accept & (reject_risk <= thresholds.reject)
        route[reject] = "surrogate_reject"
        decision[reject] = "rejected"
    if uncertain_share < 1.0:
        _defer(route, decision, audit_draws, rate, accept_risk, reject_risk, uncertain_share)
    return Routes(route, decision, audit)


def _defer(
    route: np.ndarray,
    decision: np.ndarray,
    draws: np.ndarray,
    rate: np.ndarray,
    accept_risk: np.ndarray,
    reject_risk: np.ndarray | None,
    share: float,
) -> None:
    """Defer uncertain items beyond ``share`` (in place), riskier ones labelled first."""
    uncertain = route == "uncertain"
    if not uncertain.any():
        return
    risk = accept_risk if reject_risk is None else np.minimum(accept_risk, reject_risk)
    risk = np.where(np.isfinite(risk), risk, 1.0)
    mean = float(risk[uncertain].mean())
    p_send = np.clip(share * risk / mean, 0.0, 1.0) if mean > 0 else np.full(len(risk), share)
    # a non-audit's draw is uniform on [rate, 1): rescaled, a fresh uniform of its own
    u = (draws - rate) / np.maximum(1.0 - rate, 1e-12)
    defer = uncertain & (u >= p_send)
    route[defer] = "deferred"
    decision[defer] = DEFERRED
