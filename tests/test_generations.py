"""Generations of the closed loop: provenance, regimes, parents, policy, compute, resume.

Runs the real scheduler on the analytic test domain with a ``propose`` (EvolvingAnalyticDomain,
microseconds a ground-truth call); the collapse test on the real circuits loop is in
test_closed_loop.py.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from analytic_domain import AnalyticDomain, EvolvingAnalyticDomain
from test_durability import decisions, foundry, starts

from foundry.config import ConfigError, RunConfig, load_config
from foundry.contract import Candidate, Knob, canonical_json, example_id
from foundry.loop import Scheduler
from foundry.monitor.generations import ALL_SLICES, CollapsePolicy, PolicyParams


def config(run_dir: Path, **generations) -> RunConfig:
    settings = {"size": 600, "count": 4, "parents": 32, **generations}
    return RunConfig(
        domain="analytic_evolving",
        run_dir=run_dir,
        executor="inline",
        isolation="none",
        progress=False,
        deterministic=True,
        min_train_labels=200,
        retrain_every=500,
        batch_size=200,
        alpha=0.1,
        delta=0.25,
        seed=5,
        generations=settings,
        budget={"max_candidates": 100_000},
    )


def rows(run_dir: Path, sql: str, *args) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def meta(run_dir: Path, key: str):
    return json.loads(rows(run_dir, "SELECT value FROM meta WHERE key = ?", key)[0][0])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("gen") / "run"
    # generations of 3,000: large enough for each to earn certificates of its own
    stats = Scheduler(config(run_dir, size=3000), EvolvingAnalyticDomain()).run()
    assert stats.stop_reason == "4 generations made"
    return run_dir


def test_each_generation_is_made_from_verified_parents_of_earlier_ones(run):
    reservoir = {c.id for c in _reservoir_ids()}
    by_gen = rows(
        run, "SELECT generation, COUNT(*) FROM examples WHERE source != 'real' GROUP BY generation"
    )
    # a generation is 3,000 proposals; a child equal to an earlier example is a duplicate,
    # dropped as always (counted in the run's progress)
    assert [g for g, _ in by_gen] == [0, 1, 2, 3]
    assert all(2900 <= n <= 3000 for _, n in by_gen)
    duplicates = meta(run, "progress")["duplicates"]
    assert sum(n for _, n in by_gen) + duplicates == 12_000
    # the reservoir, verified first in a regime of its own: real parents are those it passed
    real = rows(
        run,
        "SELECT content_id, decision, decided_by, generator_hash FROM examples "
        "WHERE source = 'real'",
    )
    assert {r["content_id"] for r in real} == reservoir
    assert {r["decided_by"] for r in real} == {"ground_truth"}
    assert meta(run, "regimes")[real[0]["generator_hash"]]["loop"] == {
        "generation": 0,
        "reservoir": True,
    }
    assert len({r["generator_hash"] for r in real}) == 1
    passed = {r["content_id"] for r in real if r["decision"] == "accepted"}
    assert 0 < len(passed) < len(reservoir)  # the analytic reservoir has failing points
    accepted = {
        r["content_id"]: r["generation"]
        for r in rows(run, "SELECT content_id, generation FROM examples WHERE decision='accepted'")
    }
    real_parents = 0
    for r in rows(run, "SELECT generation, parent_ids FROM examples WHERE generation > 0"):
        (parent,) = json.loads(r["parent_ids"])
        if parent in reservoir:
            assert parent in passed
            real_parents += 1
        else:  # verified (accepted) in an earlier generation: accumulate is the default
            assert accepted[parent] < r["generation"]
    assert real_parents > 0
    assert all(
        json.loads(r[0]) == []
        for r in rows(run, "SELECT parent_ids FROM examples WHERE generation = 0")
    )


def test_every_generation_is_a_regime_of_its_own_and_recorded(run):
    hashes = rows(
        run,
        "SELECT generation, COUNT(DISTINCT generator_hash) AS k, "
        "MIN(generator_hash) AS h FROM examples WHERE source != 'real' GROUP BY generation",
    )
    assert all(r["k"] == 1 for r in hashes)
    assert len({r["h"] for r in hashes}) == 4
    regimes = meta(run, "regimes")
    for r in hashes:
        assert regimes[r["h"]]["generation"] == r["generation"]
        assert regimes[r["h"]]["steering"] == {"spread": 1.0}


def test_monitors_write_per_generation_and_per_slice_figures(run):
    figures = [json.loads(r[0]) for r in rows(run, "SELECT metrics FROM monitor")]
    figures = [f for f in figures if f.get("kind") == "generation"]
    whole = sorted((f for f in figures if f["slice"] == ALL_SLICES), key=lambda f: f["generation"])
    assert [f["generation"] for f in whole] == [0, 1, 2, 3]
    # generation 0 is the Vendi reference; its own score is it
    assert whole[0]["vendi"] == pytest.approx(whole[0]["reference_vendi"])
    for f in whole:
        assert 1.0 <= f["vendi"] <= 256
        assert f["mmd2"] == pytest.approx(f["mmd2"])  # a number (the reservoir has 16 points)
        assert set(f["wasserstein"]) == {"y", "p_pass"} and set(f["kl"]) == {"y", "p_pass"}
        assert 0 < f["acceptance_rate"] < 1
        if f["generation"] > 0:  # a surrogate scored it: its audited error is known
            assert f["audits"] > 100 and 0 <= f["audit_error"] < 0.2
    assert {f["slice"] for f in figures} >= {"q1", "q2", "q3", "q4"}
    # generation 1 on: a fifth of the parents real, at least (the per-slice bound adds some)
    assert all(f["real_fraction"] >= 0.2 for f in whole[1:])
    # per slice: the provenance of that slice's parents, bounded at 8 synthetic per real one
    for f in whole[1:]:
        parts = [p for p in figures if p["generation"] == f["generation"] and p is not f]
        assert sum(p["parents"] for p in parts) <= f["parents"]
        for p in parts:
            if p["parents"] and p["synthetic_to_real"] is not None:
                assert p["synthetic_to_real"] <= 8.0


def test_compute_is_accounted_per_generation(run):
    compute = meta(run, "compute")
    assert sorted(compute) == ["0", "1", "2", "3"]
    for entry in compute.values():
        assert entry["generate_s"] > 0 and entry["surrogate_s"] > 0
        assert entry["ground_truth_s"]["ground-truth"] > 0
    assert sum(e.get("training_s", 0) for e in compute.values()) > 0


def _reservoir_ids() -> list[Candidate]:
    out = EvolvingAnalyticDomain().reservoir()
    for cand in out:
        cand.id = example_id("analytic_evolving", cand.payload, canonical_json(cand.payload))
    return out


# -- parents ---------------------------------------------------------------------------------


def test_latest_confident_selection_takes_the_surest_of_the_last_generation(tmp_path):
    run_dir = tmp_path / "run"
    cfg = config(
        run_dir,
        count=3,
        pool="latest",
        parent_selection="confident",
        real_fraction=0.0,
        max_synthetic_to_real=None,
    )
    Scheduler(cfg, EvolvingAnalyticDomain()).run()
    for g in (1, 2):
        parents = {
            json.loads(r[0])[0]
            for r in rows(run_dir, "SELECT parent_ids FROM examples WHERE generation=?", g)
        }
        pool = rows(
            run_dir,
            "SELECT content_id, p_pass FROM examples WHERE decision='accepted' "
            "AND generation = ? ORDER BY p_pass DESC, seq",
            g - 1,
        )
        top = {r["content_id"] for r in pool[:32]}
        assert parents <= top and len(parents) > 20  # children drawn from the 32 surest
        worst = min(r["p_pass"] for r in pool if r["content_id"] in parents)
        assert worst >= pool[31]["p_pass"]


def test_novelty_parents_spread_wider_and_novelty_children_land_farther(tmp_path):
    spreads, far = {}, {}
    for novelty in (0.0, 1.0):
        run_dir = tmp_path / f"n{novelty}"
        cfg = config(
            run_dir,
            count=2,
            pool="latest",
            parent_selection="confident",
            real_fraction=0.0,
            max_synthetic_to_real=None,
            novelty_fraction=novelty,
        )
        Scheduler(cfg, EvolvingAnalyticDomain()).run()
        ids = {
            json.loads(r[0])[0]
            for r in rows(run_dir, "SELECT parent_ids FROM examples WHERE generation = 1")
        }
        marks = ",".join("?" * len(ids))
        x = np.array(
            [
                json.loads(r[0])["x"]
                for r in rows(
                    run_dir, f"SELECT payload FROM examples WHERE content_id IN ({marks})", *ids
                )
            ]
        )
        d = np.linalg.norm(x[:, None] - x[None], axis=2)
        spreads[novelty] = d[np.triu_indices(len(x), 1)].min()
        children = np.array(
            [
                json.loads(r[0])["x"]
                for r in rows(run_dir, "SELECT payload FROM examples WHERE generation = 1")
            ]
        )
        far[novelty] = np.linalg.norm(children[:, None] - x[None], axis=2).min(axis=1).mean()
    # farthest-point picks: the closest pair of parents is far apart
    assert spreads[1.0] > 3 * spreads[0.0]
    # the novelty search keeps the children farthest from the parents (a quarter of those
    # proposed): mean distance to the nearest parent well above plain mutation's
    print(f"\nchild-to-nearest-parent distance: plain {far[0.0]:.4f}, novelty {far[1.0]:.4f}")
    assert far[1.0] > 1.5 * far[0.0]


def test_a_domain_without_propose_and_an_input_stream_are_refused(tmp_path):
    with pytest.raises(ValueError, match="does not implement propose"):
        Scheduler(config(tmp_path / "a"), AnalyticDomain())
    with pytest.raises(ValueError, match="not an input stream"):
        Scheduler(config(tmp_path / "b"), EvolvingAnalyticDomain(), candidates=iter([]))
    with pytest.raises(ConfigError, match="vendi_reset must be below vendi_alarm"):
        load_config(None, generations={"size": 10, "vendi_reset": 0.9})


# -- the policy -----------------------------------------------------------------------------


def _figures(ratio: float, acceptance: float = 0.5) -> list[dict]:
    return [
        {
            "slice": ALL_SLICES,
            "generation": 3,
            "vendi": 10 * ratio,
            "reference_vendi": 10.0,
            "acceptance_rate": acceptance,
        }
    ]


KNOBS = {
    "mutation_scale": 1.0,
    "real_fraction": 0.2,
    "novelty_fraction": 0.0,
    "from_reservoir": 0.0,
}


def _policy(**kw) -> CollapsePolicy:
    params = dict(
        prevention=True,
        vendi_alarm=0.75,
        vendi_reset=0.6,
        mmd_alarm=None,
        max_mutation_scale=8.0,
        max_real_fraction=0.6,
        acceptance_band=None,
    )
    return CollapsePolicy(PolicyParams(**{**params, **kw}))


def test_the_policy_acts_below_the_alarm_resets_below_the_reset_and_only_logs_when_off():
    healthy = _policy().decide(_figures(0.9), KNOBS)
    assert healthy.alarms == [] and healthy.actions == []
    alarm = _policy().decide(_figures(0.7), KNOBS)
    assert {(a.knob, a.value) for a in alarm.actions} == {
        ("mutation_scale", 2.0),
        ("real_fraction", 0.3),
        ("novelty_fraction", 0.25),
    }
    assert "70% of the reference" in alarm.alarms[0].message
    reset = _policy().decide(_figures(0.5), KNOBS)
    assert ("from_reservoir", 1.0) in {(a.knob, a.value) for a in reset.actions}
    off = _policy(prevention=False).decide(_figures(0.5), KNOBS)
    assert len(off.alarms) == 1 and off.actions == []
    capped = _policy().decide(
        _figures(0.7),
        {**KNOBS, "mutation_scale": 8.0, "real_fraction": 0.6, "novelty_fraction": 0.75},
    )
    assert capped.actions == []
    back = _policy().decide(_figures(0.9), {**KNOBS, "from_reservoir": 1.0})
    assert [(a.knob, a.value) for a in back.actions] == [("from_reservoir", 0.0)]


def test_the_curriculum_steps_the_difficulty_knob_inside_its_range():
    knob = Knob("difficulty", 1.0, 5.0, 1.0)
    band = _policy(acceptance_band=(0.3, 0.7))
    harder = band.decide(_figures(0.9, acceptance=0.9), KNOBS, (knob, 2.0)).actions
    assert [(a.knob, a.value) for a in harder] == [("difficulty", 3.0)]
    easier = band.decide(_figures(0.9, acceptance=0.1), KNOBS, (knob, 2.0)).actions
    assert [(a.knob, a.value) for a in easier] == [("difficulty", 1.0)]
    assert band.decide(_figures(0.9, acceptance=0.5), KNOBS, (knob, 2.0)).actions == []
    assert band.decide(_figures(0.9, acceptance=0.9), KNOBS, (knob, 5.0)).actions == []


def test_a_curriculum_run_turns_the_knob_each_generation_as_a_new_regime(tmp_path):
    run_dir = tmp_path / "run"
    cfg = config(run_dir, count=4, acceptance_band=(0.0, 0.2))  # acceptance is ~0.5: harder
    cfg = cfg.model_copy(update={"steering": {"spread": 0.4}})
    Scheduler(cfg, EvolvingAnalyticDomain()).run()
    regimes = meta(run_dir, "regimes")
    spread = {r["generation"]: r["steering"]["spread"] for r in regimes.values()}
    assert [spread[g] for g in range(4)] == pytest.approx([0.4, 0.6, 0.8, 1.0])
    events = [
        r["message"] for r in rows(run_dir, "SELECT message FROM events WHERE kind = 'steering'")
    ]
    assert len(events) == 3 and all("spread -> " in m and "harder" in m for m in events)
    # the knob reached the generator: generation 3 spreads wider than generation 0
    x = {
        g: np.array(
            [
                json.loads(r[0])["x"]
                for r in rows(
                    run_dir,
                    "SELECT payload FROM examples WHERE generation = ? AND source != 'real'",
                    g,
                )
            ]
        )
        for g in (0, 3)
    }
    assert np.abs(x[0]).max() <= 0.4 < np.abs(x[3]).max()


# -- durability -----------------------------------------------------------------------------


CONFIG = """
domain = "analytic_domain:EvolvingAnalyticDomain"
run_dir = "{run_dir}"
executor = "inline"
isolation = "none"
progress = false
deterministic = true
min_train_labels = 200
retrain_every = 500
batch_size = 200
alpha = 0.1
delta = 0.25
seed = 5
[generations]
size = 2000
count = 10
parents = 32
[budget]
max_candidates = 1000000
"""


@pytest.mark.slow
def test_killed_and_resumed_generations_are_the_uninterrupted_ones(tmp_path):
    """SIGKILL a generations run at random moments, resume each time: the rows, parents and
    regimes are the uninterrupted run's."""
    paths = {}
    for name in ("whole", "killed"):
        paths[name] = tmp_path / name
        (tmp_path / f"{name}.toml").write_text(CONFIG.format(run_dir=paths[name]))
    proc = foundry("run", "--config", str(tmp_path / "whole.toml"))
    assert proc.wait(timeout=600) == 0, proc.communicate()[1]
    rng, kills, window_s = random.Random(7), 0, 0.5
    while True:
        proc = foundry("run", "--config", str(tmp_path / "killed.toml"), "--resume")
        deadline = time.monotonic() + 60
        before = starts(paths["killed"]) if kills else 0
        while starts(paths["killed"]) <= before and proc.poll() is None:
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, window_s))
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.communicate()[1]
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        kills += 1
        window_s *= 1.3  # later kills land further into the run
    assert kills >= 5
    assert decisions(paths["killed"]) == decisions(paths["whole"])
    sql = "SELECT seq, content_id, generation, parent_ids, generator_hash FROM examples"
    assert [tuple(r) for r in rows(paths["killed"], sql)] == [
        tuple(r) for r in rows(paths["whole"], sql)
    ]
    assert meta(paths["killed"], "regimes").keys() == meta(paths["whole"], "regimes").keys()


def test_replay_with_the_runs_settings_makes_the_same_generations(run):
    """Generations depend on verdicts (parents are verified examples); replayed from the
    ledger's labels, every generation - parents, regimes, decisions - comes out the same."""
    from foundry.ledger.replay import replay

    released = rows(
        run,
        "SELECT generation, COUNT(*) FROM examples WHERE decided_by = "
        "'surrogate' GROUP BY generation",
    )
    print("\nreleased by the surrogate per generation:", [tuple(r) for r in released])
    # later generations earn certificates of their own (from their own audits)
    assert len({g for g, _ in released} & {1, 2, 3}) >= 2
    result = replay(run, domain=EvolvingAnalyticDomain())
    assert result.identical and result.unbought == 0
    stricter = replay(run, alpha=0.02, domain=EvolvingAnalyticDomain())
    assert sum(v for k, v in stricter.counts_replay.items() if k.endswith("by_surrogate")) < sum(
        v for k, v in result.counts_replay.items() if k.endswith("by_surrogate")
    )


def test_the_export_mixes_the_verified_real_examples_at_the_share_asked(run, tmp_path):
    from foundry.ledger.export import export_run

    path, n = export_run(run, tmp_path / "mix.jsonl", fmt="jsonl", real_share=0.15)
    exported = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(exported) == n
    real = [r for r in exported if r["source"] == "real"]
    assert real and all(r["decided_by"] == "ground_truth" for r in real)
    weight = np.array([r["sample_weight"] for r in exported])
    share = weight[[r["source"] == "real" for r in exported]].sum() / weight.sum()
    assert share == pytest.approx(0.15) and weight.mean() == pytest.approx(1.0)
    path, _ = export_run(run, tmp_path / "mix.parquet", real_share=0.15)
    import pyarrow.parquet as pq

    assert pq.read_table(path).column("sample_weight").to_numpy().mean() == pytest.approx(1.0)


def test_an_export_with_nothing_real_to_mix_says_so_in_one_line(tmp_path):
    from foundry.cli import main

    run_dir = tmp_path / "run"
    Scheduler(config(run_dir, count=1, verify_reservoir=False), EvolvingAnalyticDomain()).run()
    assert main(["export", str(run_dir), "--real-share", "0.2"]) == 2
    assert main(["export", str(run_dir), "--real-share", "1.5"]) == 2


def test_status_shows_the_last_closed_generation(run, capsys):
    from foundry.cli import main

    assert main(["status", str(run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["generations_closed"] == 4
    assert summary["generation_last"]["generation"] == 3
    assert main(["status", str(run)]) == 0
    assert "4 closed; generation 3: Vendi" in " ".join(capsys.readouterr().out.split())


def test_a_run_stopped_at_a_generation_boundary_resumes_into_the_same_run(tmp_path):
    """The reservoir's items are audited before any surrogate exists; a resumed run must not
    count their regime among those that share delta (the live run never did), or every later
    generation's certificates move (regression: the first look points differed)."""

    def cfg(run_dir: Path, n: int) -> RunConfig:
        out = config(run_dir, size=2000, count=3)
        return out.model_copy(
            update={"budget": out.budget.model_copy(update={"max_candidates": n})}
        )

    Scheduler(cfg(tmp_path / "whole", 100_000), EvolvingAnalyticDomain()).run()
    for stop in (2016, 4016):  # the reservoir's 16, then whole generations
        Scheduler(cfg(tmp_path / "split", stop), EvolvingAnalyticDomain(), resume=stop > 2016).run()
    Scheduler(cfg(tmp_path / "split", 100_000), EvolvingAnalyticDomain(), resume=True).run()
    sql = (
        "SELECT seq, content_id, decision, decided_by, route, surrogate_version, "
        "calibration_version FROM examples ORDER BY seq"
    )
    whole, split = rows(tmp_path / "whole", sql), rows(tmp_path / "split", sql)
    assert len(whole) > 6000 and [tuple(r) for r in split] == [tuple(r) for r in whole]
    assert any(r["decided_by"] == "surrogate" for r in whole)
