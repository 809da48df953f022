"""Watching a closed loop for collapse: acceptance, diversity and drift per window.

Closed-loop generation can narrow onto what the surrogate likes. Each window of candidates is
summarised from the domain's feature vectors: diversity is the mean pairwise distance of
standardised features in the window, drift the distance of the window's mean from the reference
(the domain's real reservoir if it has one, else the first window) in reference standard
deviations. A window whose diversity falls below ``collapse_ratio`` of the reference raises a
warning event in the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from foundry.contract import Candidate, Domain
from foundry.ledger.store import Ledger


def mean_pairwise_distance(x: np.ndarray, rng: np.random.Generator, max_points: int = 256) -> float:
    """Mean Euclidean distance between distinct rows (sampled to ``max_points`` rows)."""
    if len(x) < 2:
        return float("nan")
    if len(x) > max_points:
        x = x[rng.choice(len(x), max_points, replace=False)]
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    n = len(x)
    return float(np.sqrt(d2).sum() / (n * (n - 1)))


@dataclass
class Reference:
    mean: np.ndarray
    std: np.ndarray
    diversity: float
    source: str


class Monitor:
    def __init__(
        self,
        domain: Domain,
        ledger: Ledger,
        *,
        window: int = 2048,
        collapse_ratio: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.domain = domain
        self.ledger = ledger
        self.window = window
        self.collapse_ratio = collapse_ratio
        self.rng = np.random.default_rng(seed)
        self.reference: Reference | None = None
        self._features: list[np.ndarray] = []
        self._decisions: dict[str, int] = {}
        self._count = 0
        self._seen = 0
        self._reservoir_tried = False

    def _featurize(self, candidates: Sequence[Candidate]) -> np.ndarray | None:
        try:
            x = np.asarray(self.domain.featurize(candidates), dtype=float)
        except Exception as exc:
            self.ledger.event("warning", "monitor", f"featurize failed: {exc}")
            return None
        if x.ndim != 2 or len(x) != len(candidates) or not np.all(np.isfinite(x)):
            self.ledger.event("warning", "monitor", "featurize returned a bad array; skipped")
            return None
        return x

    def _make_reference(self, x: np.ndarray, source: str) -> Reference:
        std = x.std(axis=0)
        # a constant column's std is rounding noise (1e-17), not a scale: it would blow any
        # later variation up to 1e15 standard deviations
        std = np.where(std > 1e-9 * np.maximum(1.0, np.abs(x).max(axis=0)), std, 1.0)
        mean = x.mean(axis=0)
        return Reference(mean, std, mean_pairwise_distance((x - mean) / std, self.rng), source)

    def observe(self, decisions: Mapping[str, int], valid: Sequence[Candidate]) -> None:
        """Account for a batch: how many of its rows got each decision, and its valid
        candidates (featurised for the diversity and drift of the window)."""
        n_rows = sum(decisions.values())
        self._seen += n_rows
        for decision, count in decisions.items():
            self._decisions[decision] = self._decisions.get(decision, 0) + count
        self._count += n_rows
        if valid:
            x = self._featurize(valid)
            if x is not None:
                self._features.append(x)
        if self._count >= self.window:
            self.flush(self._seen)

    def flush(self, n_seen: int) -> None:
        if self._count == 0:
            return
        metrics: dict[str, float | str | None] = {
            f"frac_{k}": v / self._count for k, v in sorted(self._decisions.items())
        }
        metrics["n"] = self._count
        if self._features:
            x = np.concatenate(self._features)
            if self.reference is None and not self._reservoir_tried:
                self._reservoir_tried = True
                real = []
                try:
                    real = self.domain.reservoir()
                except Exception as exc:
                    self.ledger.event("warning", "monitor", f"reservoir failed: {exc}")
                xr = self._featurize(real) if len(real) >= 8 else None
                if xr is not None and xr.shape[1] == x.shape[1]:
                    self.reference = self._make_reference(xr, "reservoir")
            if self.reference is None:
                self.reference = self._make_reference(x, "first window")
            ref = self.reference
            z = (x - ref.mean) / ref.std
            diversity = mean_pairwise_distance(z, self.rng)
            drift = float(np.linalg.norm(z.mean(axis=0)) / np.sqrt(z.shape[1]))
            metrics.update(
                diversity=diversity,
                reference_diversity=ref.diversity,
                reference=ref.source,
                drift_sd=drift,
            )
            if np.isfinite(ref.diversity) and diversity < self.collapse_ratio * ref.diversity:
                self.ledger.event(
                    "warning",
                    "collapse",
                    f"diversity {diversity:.3g} < {self.collapse_ratio} x reference "
                    f"{ref.diversity:.3g} ({ref.source}) after {n_seen} candidates",
                )
        self.ledger.add_monitor(n_seen, metrics)
        self._features.clear()
        self._decisions.clear()
        self._count = 0
