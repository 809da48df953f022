"""Ledger rows: what the loop writes for each candidate, built column-wise per batch.

Kept apart from the loop so that the row format (provenance, surrogate opinion, who decided and
under which certificate) is in one place, and the loop only says what happened.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from foundry.contract import Candidate
from foundry.ledger import GroundTruthUpdate, Ledger
from foundry.loop.router import DEFERRED

if TYPE_CHECKING:
    from foundry.execution.outcomes import GTResult
    from foundry.loop.book import BatchScores, Thresholds
    from foundry.loop.dispatch import PendingItem
    from foundry.loop.router import Routes


#: route of a fidelity ladder's item while its cheaper tiers run (its row is a placeholder)
LADDER_ROUTE = "ladder"


@dataclass
class InvalidRow:
    """A candidate that failed the schema or rule check (or is not JSON), with its reason."""

    seq: int
    candidate: Candidate
    text: str
    reason: str


def _json_floats(values: Mapping[str, float]) -> str:
    return json.dumps(
        {k: (float(v) if math.isfinite(float(v)) else None) for k, v in values.items()}
    )


def _parents_json(parent_ids: Any) -> str:
    """Parent ids as a JSON list; a malformed value (on an invalid row) as its repr."""
    if isinstance(parent_ids, tuple | list):
        if not parent_ids:
            return "[]"
        with contextlib.suppress(TypeError, ValueError):
            return json.dumps(list(parent_ids))
    return json.dumps([repr(parent_ids)[:500]])


def _json_objects(columns: Mapping[str, np.ndarray]) -> list[str] | str:
    """Per item, the JSON object ``{name: value}`` of float columns (null where not finite);
    ``"{}"`` once when there are no columns."""
    if not columns:
        return "{}"
    template = "{" + ",".join(f"{json.dumps(name)}:%s" for name in columns) + "}"
    texts = []
    for arr in columns.values():
        values = arr.tolist()
        if np.isfinite(arr).all():
            texts.append(list(map(repr, values)))
        else:
            texts.append([repr(v) if math.isfinite(v) else "null" for v in values])
    return [template % row for row in zip(*texts, strict=True)]


def _finite_or_none(arr: np.ndarray) -> list[float | None] | None:
    """Column values with None for non-finite entries; None when no entry is finite."""
    finite = np.isfinite(arr)
    if finite.all():
        return arr.tolist()
    if not finite.any():
        return None
    return [v if ok else None for v, ok in zip(arr.tolist(), finite.tolist(), strict=True)]


def _prediction_columns(shown: BatchScores) -> dict[str, Any]:
    """The ledger's surrogate columns for a batch, from the opinion shown with each row."""
    columns: dict[str, Any] = {
        "surrogate_version": shown.version,
        "predicted": _json_objects(shown.values),
        "uncertainty": _json_objects(shown.sigmas),
    }
    if shown.p_pass is not None:
        columns["p_pass"] = _finite_or_none(shown.p_pass)
    for name, arr in (("accept_risk", shown.accept_risk), ("reject_risk", shown.reject_risk)):
        values = _finite_or_none(arr)
        if values is not None:
            columns[name] = values
    return {k: v for k, v in columns.items() if v is not None}


def candidate_of_row(row: Any) -> Candidate:
    """The candidate an example row (a ``sqlite3.Row``) records: payload and provenance."""
    return Candidate(
        payload=json.loads(row["payload"]),
        source=row["source"],
        generation=int(row["generation"]),
        parent_ids=tuple(json.loads(row["parent_ids"])),
        id=row["content_id"],
        input_line=row["input_line"] if "input_line" in row.keys() else None,  # noqa: SIM118
    )


def provenance_columns(cands: Sequence[Candidate]) -> dict[str, Sequence[Any]]:
    """Columns every example row carries, one entry per candidate.

    ``input_line`` (the line of the user's file a candidate came from, ``foundry verify``) is
    named only when some candidate of the batch has one: generated candidates leave the
    column NULL without binding a ``None`` per row."""
    columns: dict[str, Sequence[Any]] = {
        "content_id": [c.id for c in cands],
        "source": [c.source for c in cands],
        "generation": [
            int(c.generation) if isinstance(c.generation, int | np.integer) else -1 for c in cands
        ],
        "parent_ids": [_parents_json(c.parent_ids) for c in cands],
    }
    lines = [c.input_line for c in cands]
    if any(line is not None for line in lines):
        columns["input_line"] = lines
    return columns


def surrogate_decision_columns(
    decision: np.ndarray, route: np.ndarray, thresholds: Thresholds, now: float
) -> dict[str, list[Any]]:
    """Who decided, under which certificate (of the item's stratum) and with which
    Clopper-Pearson estimate at its threshold; None for ground-truth-bound rows."""
    n = len(decision)
    decided_by = np.full(n, None, dtype=object)
    reason = route.copy()
    calibration = np.full(n, None, dtype=object)
    bound = np.full(n, None, dtype=object)
    alpha = np.full(n, None, dtype=object)
    decided_at = np.full(n, None, dtype=object)
    for kind, limit, estimate, target in (
        ("accepted", thresholds.accept, thresholds.accept_bound, thresholds.alpha),
        ("rejected", thresholds.reject, thresholds.reject_bound, thresholds.reject_alpha),
    ):
        mask = decision == kind
        if not mask.any():
            continue
        decided_by[mask] = "surrogate"
        alpha[mask] = target
        decided_at[mask] = now
        for cert_id in np.unique(thresholds.calibration[mask]).tolist():
            group = mask & (thresholds.calibration == cert_id)
            first = int(np.flatnonzero(group)[0])
            reason[group] = f"risk <= certified threshold {limit[first]:.4g}"
            calibration[group] = cert_id
            if math.isfinite(estimate[first]):
                bound[group] = float(estimate[first])
    reason[decision == DEFERRED] = "uncertain, deferred: beyond the run's uncertain_share"
    return {
        "decided_by": decided_by.tolist(),
        "reason": reason.tolist(),
        "calibration_version": calibration.tolist(),
        "bound": bound.tolist(),
        "alpha": alpha.tolist(),
        "decided_at": decided_at.tolist(),
    }


def routed_columns(
    seqs: list[int],
    texts: list[str],
    cands: Sequence[Candidate],
    slices: np.ndarray,
    routes: Routes,
    shown: BatchScores | None,
    thresholds: Thresholds | None,
    now: float,
) -> dict[str, Any]:
    """The rows of a routed batch of rule-valid candidates (``shown``: the opinion recorded)."""
    columns: dict[str, Any] = {
        "seq": seqs,
        "payload": texts,
        **provenance_columns(cands),
        "slice": slices.tolist(),
        "rule_ok": 1,
        "audit": routes.audit.astype(int).tolist(),
        "route": routes.route.tolist(),
        "decision": routes.decision.tolist(),
    }
    if shown is not None:
        columns.update(_prediction_columns(shown))
    if routes.to_truth.all():
        columns["reason"] = columns["route"]
    else:
        assert thresholds is not None, "only a certificate lets the surrogate decide"
        columns.update(surrogate_decision_columns(routes.decision, routes.route, thresholds, now))
    return columns


def verification_row(seq: int, fidelity: str, result: GTResult, now: float) -> tuple:
    """One tier's verdict (or failure) on one item, for the ledger's verifications table."""
    verdict = result.verdict
    return (
        seq,
        fidelity,
        int(verdict.passed) if verdict is not None else None,
        _json_floats(verdict.properties) if verdict is not None else None,
        _json_floats(verdict.measurements) if verdict is not None else None,
        verdict.reason if verdict is not None else None,
        result.simulator,
        result.simulator_version,
        result.walltime_s,
        result.host,
        result.failure_kind or None,
        result.error or None,
        now,
    )


def ground_truth_update(item: PendingItem, result: GTResult, now: float) -> GroundTruthUpdate:
    """What a final ground-truth result writes back to its row."""
    verdict = result.verdict
    decision = "failed"
    if verdict is not None:
        decision = "accepted" if verdict.passed else "rejected"
    return GroundTruthUpdate(
        seq=result.key,
        decision=decision,
        decided_by="ground_truth" if verdict is not None else None,
        reason=item.route if verdict is not None else f"{item.route}; {result.failure_kind}",
        gt_passed=int(verdict.passed) if verdict is not None else None,
        gt_properties=_json_floats(verdict.properties) if verdict is not None else None,
        gt_reason=verdict.reason if verdict is not None else None,
        gt_measurements=(
            _json_floats(verdict.measurements)
            if verdict is not None and verdict.measurements
            else None
        ),
        simulator=result.simulator,
        simulator_version=result.simulator_version,
        walltime_s=result.walltime_s,
        worker_host=result.host,
        failure_kind=result.failure_kind or None,
        error=result.error or None,
        attempts=item.attempts,
        decided_at=now,
    )


class RowWriter:
    """Inserts example rows, adding the columns that are the same for the whole run."""

    def __init__(
        self, ledger: Ledger, domain_name: str, domain_version: str, domain_options: str = "{}"
    ) -> None:
        self.ledger = ledger
        self.domain_name = domain_name
        self.domain_version = domain_version
        #: canonical JSON of the domain's options: part of every example's provenance
        self.domain_options = domain_options

    def insert(
        self,
        n: int,
        columns: dict[str, Any],
        generator_hash: str,
        now: float,
        *,
        replace: bool = False,
    ) -> None:
        """One statement per few hundred rows: lists are per-row values, anything else a
        constant. ``replace``: the rows replace placeholders of the same seq."""
        columns = {
            "domain": self.domain_name,
            "domain_version": self.domain_version,
            "domain_options": self.domain_options,
            "generator_hash": generator_hash,
            "created_at": now,
            **columns,
        }
        values = [v if isinstance(v, list) else itertools.repeat(v, n) for v in columns.values()]
        self.ledger.insert_examples(tuple(columns), zip(*values, strict=True), replace=replace)

    def insert_invalid(
        self, invalid: Sequence[InvalidRow], generator_hash: str, now: float, batch: int
    ) -> None:
        reasons = [row.reason for row in invalid]
        self.insert(
            len(invalid),
            {
                "seq": [row.seq for row in invalid],
                "payload": [row.text for row in invalid],
                **provenance_columns([row.candidate for row in invalid]),
                "rule_ok": 0,
                "rule_reason": reasons,
                "audit": 0,
                "route": "rule",
                "decision": "invalid",
                "decided_by": "rule",
                "reason": reasons,
                "decided_at": now,
                "batch": batch,
            },
            generator_hash,
            now,
        )
