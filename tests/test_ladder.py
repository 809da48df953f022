"""The fidelity ladder: cheaper tiers run first, their verdicts reach the surrogate as
evidence, every tier's verdict is recorded, and every certificate is against the top tier."""

from __future__ import annotations

import json
import sqlite3

import pytest
from analytic_domain import released_wrong
from scipy import stats

from foundry.config import RunConfig
from foundry.execution.executors import DaskExecutor
from foundry.loop import Scheduler

LADDER = "ladder_domain:LadderDomain"
THREE = ["coarse", "fine", "exact"]
TWO = ["coarse", "exact"]
ALPHA, DELTA, FALSE_ALARM = 0.05, 0.1, 1e-3


def _cfg(tmp_path, name="run", **kw) -> RunConfig:
    base = dict(
        domain=LADDER, run_dir=tmp_path / name, executor="inline", isolation="none",
        progress=False, alpha=ALPHA, delta=DELTA, min_train_labels=200, retrain_every=800,
        challenger_audits=300, ladder=THREE, budget={"max_candidates": 4000},
    )  # fmt: skip
    base.update(kw)
    return RunConfig(**base)


def _released_error(run_dir) -> tuple[float, int]:
    """The true error (against the exact tier) of what the surrogate released."""
    wrong = released_wrong(run_dir)
    return (float(wrong.mean()), len(wrong)) if len(wrong) else (0.0, 0)


@pytest.mark.parametrize(
    "ladder, fidelity, fragment",
    [
        (["coarse", "nope"], None, "unknown fidelities"),
        (["fine", "coarse", "exact"], None, "cheapest first"),
        (["coarse", "coarse", "exact"], None, "twice"),
        (["coarse", "fine"], "exact", "not the ladder's top tier"),
    ],
)
def test_a_bad_ladder_is_a_config_error(tmp_path, ladder, fidelity, fragment):
    with pytest.raises(ValueError, match=fragment):
        Scheduler(_cfg(tmp_path, ladder=ladder, fidelity=fidelity))


def test_every_tier_is_recorded_and_its_verdict_reaches_the_surrogate(tmp_path):
    cfg = _cfg(tmp_path, budget={"max_candidates": 3000})
    scheduler = Scheduler(cfg)
    stats_ = scheduler.run()
    db = sqlite3.connect(cfg.run_dir / "ledger.sqlite")
    per_tier = dict(db.execute("SELECT fidelity, COUNT(*) FROM verifications GROUP BY fidelity"))
    valid = db.execute("SELECT COUNT(*) FROM examples WHERE rule_ok = 1").fetchone()[0]
    gt_rows = db.execute(
        "SELECT COUNT(*) FROM examples WHERE decided_by = 'ground_truth'"
    ).fetchone()[0]
    simulators = dict(db.execute("SELECT fidelity, MIN(simulator) FROM verifications GROUP BY 1"))
    mismatched = db.execute(
        "SELECT COUNT(*) FROM examples e JOIN verifications v ON v.seq = e.seq "
        "AND v.fidelity = 'exact' WHERE e.gt_properties != v.properties"
    ).fetchone()[0]
    meta = json.loads(db.execute("SELECT value FROM meta WHERE key='verifier'").fetchone()[0])
    db.close()
    assert valid == stats_.generated == 3000
    assert per_tier["coarse"] == per_tier["fine"] == valid  # cheaper tiers: every item
    assert per_tier["exact"] == gt_rows == stats_.gt_calls  # the top tier: GT-routed items
    assert simulators == {f: f"analytic-{f}" for f in THREE}
    assert mismatched == 0
    assert [t["fidelity"] for t in meta["ladder"]] == THREE
    assert meta["ladder"][0]["resources"]["timeout_s"] == 5.0  # each tier its own resources
    assert stats_.tier_calls == {"coarse": 3000, "fine": 3000, "exact": stats_.gt_calls}
    labels = scheduler.trainer.labels
    assert labels and all(set(c.evidence) == {"coarse", "fine"} for c, _ in labels)
    assert stats_.surrogate_accepted > 0


def test_three_tiers_call_the_top_tier_less_than_two_at_the_same_alpha(tmp_path):
    two = Scheduler(_cfg(tmp_path, "two", ladder=TWO, budget={"max_candidates": 6000})).run()
    three = Scheduler(_cfg(tmp_path, "three", budget={"max_candidates": 6000})).run()
    assert three.gt_calls < 0.7 * two.gt_calls, (three.gt_calls, two.gt_calls)
    assert three.surrogate_accepted > two.surrogate_accepted


def test_a_ladder_runs_its_tiers_on_dask_workers(tmp_path):
    executor = DaskExecutor(n_workers=2)
    try:
        cfg = _cfg(tmp_path, executor="local", isolation="process",
                   budget={"max_candidates": 1500})  # fmt: skip
        stats_ = Scheduler(cfg, executor=executor).run()
    finally:
        executor.close()
    db = sqlite3.connect(cfg.run_dir / "ledger.sqlite")
    per_tier = dict(db.execute("SELECT fidelity, COUNT(*) FROM verifications GROUP BY fidelity"))
    pending = db.execute("SELECT COUNT(*) FROM examples WHERE decision='pending'").fetchone()[0]
    total = db.execute("SELECT COUNT(*) FROM examples").fetchone()[0]
    db.close()
    assert total == 1500 and pending == 0
    assert per_tier["coarse"] == per_tier["fine"] == 1500
    assert per_tier["exact"] == stats_.gt_calls > 0


def _sweep(tmp_path, seeds):
    out = []
    for seed in seeds:
        cfg = _cfg(tmp_path, f"s{seed}", seed=seed)
        Scheduler(cfg).run()
        out.append(_released_error(cfg.run_dir))
    return out


def test_a_few_ladder_runs_hold_alpha_against_the_top_tier(tmp_path):
    results = _sweep(tmp_path, range(4))
    assert all(n > 0 for _, n in results)
    assert sum(err > ALPHA for err, _ in results) <= 1


@pytest.mark.slow
def test_the_certificate_holds_against_the_top_tier(tmp_path):
    """60 seeded three-tier runs: the true error (against the exact tier, not the cheaper
    tiers the surrogate leaned on) of what was released exceeds alpha in no more runs than
    the binomial quantile allows at delta (false-alarm rate 1e-3)."""
    seeds = range(60)
    results = _sweep(tmp_path, seeds)
    bad = sum(err > ALPHA for err, n in results if n)
    limit = stats.binom.ppf(1 - FALSE_ALARM, len(seeds), DELTA)
    assert bad <= limit, (bad, limit)
    assert sum(1 for _, n in results if n >= 200) >= 0.8 * len(seeds)
