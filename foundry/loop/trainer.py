"""Fitting surrogate versions on the labels so far, in the background.

A fit takes seconds to minutes; the loop must keep the workers fed meanwhile, so it runs in a
thread (in-line for the inline executor, which keeps tests deterministic). The trainer only
produces models: installing one as a version is the calibration book's job.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from foundry.config import RunConfig
from foundry.contract import Candidate, Domain, Surrogate, Verdict
from foundry.files import atomic_write_bytes
from foundry.ledger import Ledger
from foundry.loop.book import SurrogateSlot


@dataclass(frozen=True)
class Trained:
    """A fitted model, on how many labels, and how long the fit took."""

    model: Surrogate
    n_labels: int
    fit_s: float


@dataclass(frozen=True)
class TrainerParams:
    """When a fit is due."""

    enabled: bool
    min_train_labels: int
    retrain_every: int
    #: audits an uncertified challenger collects before a newer version may replace it
    challenger_audits: int

    @classmethod
    def from_config(cls, cfg: RunConfig) -> TrainerParams:
        return cls(
            enabled=cfg.surrogate,
            min_train_labels=cfg.min_train_labels,
            retrain_every=cfg.retrain_every,
            challenger_audits=cfg.challenger_audits,
        )


class Trainer:
    """Collects ground-truth labels and fits new surrogate versions on them."""

    def __init__(
        self,
        domain: Domain,
        params: TrainerParams,
        ledger: Ledger,
        model_dir: Path,
        *,
        sync: bool = False,
    ) -> None:
        self.domain = domain
        self.params = params
        self.ledger = ledger
        self.model_dir = model_dir
        #: fit in the caller's thread (deterministic; for the inline executor)
        self.sync = sync
        self.labels: list[tuple[Candidate, Verdict]] = []
        self.labels_at_fit = 0
        #: labels of the last fit whose outcome was taken (what a resume goes on from: a fit
        #: still running at a kill is started again)
        self.labels_at_taken = 0
        self.failures = 0
        self._thread: threading.Thread | None = None
        self._result: Trained | BaseException | None = None

    @property
    def fitting(self) -> bool:
        """A background fit was started and its result not yet taken."""
        return self._thread is not None

    def maybe_start(
        self,
        challenger: SurrogateSlot | None,
        evaluated: bool = True,
        before_fit: Callable[[], None] | None = None,
    ) -> bool:
        """Start a fit on all labels so far if one is due; True when one was started (in sync
        mode it has then already finished).

        ``evaluated``: whether the current challenger has had its chance - a look in every
        stratum where the champion holds a certificate (the book decides). A newer version
        replaces it only then (or after three refit intervals, so that a stratum the
        generator no longer visits cannot stop retraining): replaced too early, no
        challenger would ever reach a look in the strata that matter, and retraining would
        never pay."""
        p = self.params
        if not p.enabled or self._thread is not None:
            return False
        n = len(self.labels)
        if n < p.min_train_labels:
            return False
        if self.labels_at_fit and n - self.labels_at_fit < p.retrain_every:
            return False  # also after a failed fit: no refit on every result
        if challenger is not None:
            if challenger.n_audits < p.challenger_audits:
                return False  # let the challenger collect its audits first
            overdue = n - challenger.n_labels >= 3 * p.retrain_every
            if not evaluated and not overdue:
                return False
        self.labels_at_fit = n
        snapshot = list(self.labels)
        if before_fit is not None:
            before_fit()
        if self.sync:
            self._fit(snapshot)
            return True
        self._thread = threading.Thread(target=self._fit, args=(snapshot,), daemon=True)
        self._thread.start()
        return True

    def _fit(self, labels: Sequence[tuple[Candidate, Verdict]]) -> None:
        started = time.perf_counter()
        try:
            model = self.domain.surrogate()
            model.fit([c for c, _ in labels], [v for _, v in labels])
            self._result = Trained(model, len(labels), time.perf_counter() - started)
        except Exception as exc:  # recorded, the loop goes on with the current version
            self._result = exc

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def take(self) -> Trained | None:
        """The finished fit's model, once (None while fitting or when there is none); a
        failed fit is recorded and counted."""
        if self._thread is not None and self._thread.is_alive():
            return None
        self._thread = None
        result, self._result = self._result, None
        if result is not None:
            self.labels_at_taken = self.labels_at_fit
        if isinstance(result, BaseException):
            self.failures += 1
            self.ledger.event("error", "fit", f"{type(result).__name__}: {result}")
            return None
        return result

    def save(self, version: int, model: Surrogate) -> bool:
        """Keep the model as ``v<version>.pkl``, atomically (a resumed run, and ``verify
        --surrogate-from``, load it; a kill mid-write leaves no truncated file)."""
        path = self.model_dir / f"v{version}.pkl"
        try:
            path.parent.mkdir(exist_ok=True)
            atomic_write_bytes(path, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
            return True
        except Exception as exc:
            self.ledger.event("warning", "save", f"surrogate v{version} not saved: {exc}")
            return False
