"""Diversity and drift monitors on a closed loop that a steering policy narrows and shifts."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping

import numpy as np
import pytest
from analytic_domain import AnalyticDomain

from foundry.config import RunConfig
from foundry.contract import Candidate
from foundry.loop import RunStats, Scheduler
from foundry.monitor import mean_pairwise_distance


class ShiftingDomain(AnalyticDomain):
    """The analytic domain with a steerable centre (the generator's mean)."""

    steering_defaults = {"spread": 1.0, "centre": 0.0}  # noqa: RUF012

    def generate(
        self, n: int, rng: np.random.Generator, steering: Mapping[str, float]
    ) -> list[Candidate]:
        spread, centre = float(steering["spread"]), float(steering["centre"])
        x = np.clip(centre + rng.uniform(-spread, spread, size=(n, 2)), -1, 1)
        return [Candidate({"x": [float(a), float(b)]}) for a, b in x]

    def reservoir(self) -> list[Candidate]:
        return []  # reference = the first window


def _run(tmp_path, policy, n=12_000):
    cfg = RunConfig(
        domain="analytic",
        run_dir=tmp_path / "run",
        executor="inline",
        isolation="none",
        progress=False,
        surrogate=False,
        batch_size=512,
        budget={"max_candidates": n},
    )
    Scheduler(cfg, domain=ShiftingDomain(), steering_policy=policy).run()
    db = sqlite3.connect(cfg.run_dir / "ledger.sqlite")
    monitor = [(n_seen, json.loads(m)) for n_seen, m in db.execute(
        "SELECT n_seen, metrics FROM monitor ORDER BY t")]  # fmt: skip
    events = db.execute("SELECT kind, message FROM events WHERE level = 'warning'").fetchall()
    db.close()
    return monitor, events


def test_mean_pairwise_distance_matches_closed_form() -> None:
    rng = np.random.default_rng(0)
    # two points at distance 5: the mean over ordered distinct pairs is 5
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0]]), rng) == pytest.approx(5.0)
    # uniform on [0, 1]: E|X - Y| = 1/3
    x = rng.uniform(size=(256, 1))
    assert mean_pairwise_distance(x, rng) == pytest.approx(1 / 3, abs=0.02)
    assert np.isnan(mean_pairwise_distance(x[:1], rng))


def test_a_narrowing_generator_raises_a_collapse_warning(tmp_path) -> None:
    def narrow(stats: RunStats, steering: Mapping[str, float]) -> dict[str, float]:
        return {**steering, "spread": 1.0 if stats.generated < 6000 else 0.1}

    monitor, events = _run(tmp_path, narrow)
    early = [m["diversity"] for n, m in monitor if n <= 6000]
    late = [m["diversity"] for n, m in monitor if n > 7000]
    assert early and late
    assert min(early) > 0.8 * monitor[0][1]["reference_diversity"]
    assert max(late) < 0.2 * monitor[0][1]["reference_diversity"]
    collapse = [msg for kind, msg in events if kind == "collapse"]
    assert collapse and "first window" in collapse[0]


def test_a_steady_generator_raises_nothing_and_a_shift_shows_as_drift(tmp_path) -> None:
    monitor, events = _run(tmp_path / "steady", None, n=8000)
    assert not [e for e in events if e[0] == "collapse"]
    assert all(m["drift_sd"] < 0.1 for _, m in monitor)

    def shift(stats: RunStats, steering: Mapping[str, float]) -> dict[str, float]:
        return {**steering, "spread": 0.5, "centre": 0.0 if stats.generated < 4000 else 0.5}

    monitor, _ = _run(tmp_path / "shift", shift, n=8000)
    before = [m["drift_sd"] for n, m in monitor if n <= 4096]
    after = [m["drift_sd"] for n, m in monitor if n > 6000]
    # a shift of the mean by 0.5 with per-axis sd 0.5/sqrt(3) is ~1.7 sd on each axis
    assert max(before) < 0.1 and min(after) > 1.2
