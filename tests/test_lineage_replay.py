"""``foundry lineage`` and ``foundry replay`` on real scheduler runs of the analytic domains.

Lineage must show an example's whole chain from the ledger alone; a replay must reproduce a
timing-free run row for row with its own settings, answer every ground-truth call from the
ledger (never simulating), never write into the run it replays, and say where a
counterfactual needs labels the run never bought.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sqlite3
from pathlib import Path

import analytic_domain
import numpy as np
import pytest

from foundry.config import RunConfig
from foundry.contract import Candidate, FoundryError, content_id
from foundry.execution.executors import InlineExecutor
from foundry.ledger import lineage as lineage_mod
from foundry.ledger import replay as replay_mod
from foundry.ledger.lineage import MAX_DEPTH, NOT_IN_LEDGER, format_lineage, lineage
from foundry.ledger.replay import NEVER_BOUGHT, format_replay, replay
from foundry.loop import Scheduler

BASE = dict(
    domain="analytic_domain:SlicedAnalyticDomain", executor="inline", isolation="none",
    progress=False, min_train_labels=200, audit_rate=0.3, retrain_every=1500,
    challenger_audits=1000, alpha=0.1, delta=0.25,
)  # fmt: skip
ROWS = "SELECT seq, content_id, decision, decided_by FROM examples ORDER BY seq"
DETAIL = (
    "SELECT seq, content_id, decision, decided_by, route, audit, surrogate_version, "
    "calibration_version, gt_passed FROM examples ORDER BY seq"
)


def query(run_dir: Path, sql: str, params: tuple = ()) -> list[tuple]:
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def fingerprint(run_dir: Path) -> dict[str, str]:
    """Every file of a run dir and its content hash: what a replay must leave as it was."""
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A deterministic run with surrogate releases and rejections, audits and promotions."""
    run_dir = tmp_path_factory.mktemp("lineage") / "run"
    cfg = RunConfig(
        run_dir=run_dir, seed=3, deterministic=True, budget={"max_candidates": 6000}, **BASE
    )
    stats = Scheduler(cfg).run()
    assert stats.surrogate_accepted > 0 and stats.surrogate_rejected > 0
    assert stats.surrogate_versions >= 2
    return run_dir


# -- replay --------------------------------------------------------------------------------------


def test_replay_with_the_original_settings_reproduces_every_decision(run, tmp_path):
    before = fingerprint(run)
    out = tmp_path / "replay"
    result = replay(run, out_dir=out)
    assert result.identical and result.exact and result.changed == 0
    assert result.unbought == 0 and result.unbought_calls == 0 and result.first_unbought_seq is None
    assert query(out, ROWS) == query(run, ROWS)
    assert query(out, DETAIL) == query(run, DETAIL)  # routes, audits, versions, certificates
    assert result.counts_replay == result.counts_original
    assert not result.released_only_in_replay and not result.released_only_in_original
    assert result.certificates_replay == result.certificates_original
    assert result.bound_original is not None
    assert result.bound_replay == result.bound_original
    assert fingerprint(run) == before, "a replay never writes into the run it replays"
    assert not [name for name in vars(replay_mod) if name.startswith("_ReplayDomain_")]
    text = format_replay(result)
    assert "exact" in text and "rows identical" in text


def test_a_smaller_alpha_releases_no_more_and_simulates_nothing(run, tmp_path, monkeypatch):
    before = fingerprint(run)
    simulated = {"n": 0}

    def no_simulation(self, job, workdir):
        simulated["n"] += 1
        raise AssertionError("a replay must not simulate")

    monkeypatch.setattr(analytic_domain.AnalyticGroundTruth, "execute", no_simulation)
    asked = {"n": 0}
    answer = replay_mod.LedgerAnswers.answer

    def counted(self, candidate, fidelity):
        asked["n"] += 1
        return answer(self, candidate, fidelity)

    monkeypatch.setattr(replay_mod.LedgerAnswers, "answer", counted)
    out = tmp_path / "replay"
    result = replay(run, alpha=0.05, out_dir=out)
    assert simulated["n"] == 0
    stats = json.loads(query(out, "SELECT value FROM meta WHERE key = 'stats'")[0][0])
    assert asked["n"] == stats["gt_calls"] == sum(result.ledger_answers.values()) > 0
    assert result.settings["alpha"] == 0.05 and result.original_settings["alpha"] == 0.1
    released = result.counts_replay.get("accepted_by_surrogate", 0)
    assert released <= result.counts_original["accepted_by_surrogate"]
    assert fingerprint(run) == before


def test_a_higher_audit_rate_reports_the_labels_the_run_never_bought(run, tmp_path):
    out = tmp_path / "replay"
    result = replay(run, audit_rate=0.6, out_dir=out)
    assert result.unbought > 0 and not result.exact and not result.identical
    assert result.unbought_by_fidelity == {"ground-truth": result.unbought}
    first = result.first_unbought_seq
    assert first is not None
    # every unbought item is a recorded failure saying so (the verifier never fails here)
    failed = query(out, "SELECT seq, error FROM examples WHERE decision = 'failed'")
    assert len(failed) == result.unbought and all(NEVER_BOUGHT in e for _, e in failed)
    assert min(s for s, _ in failed) == first
    assert any("never bought" in n and f"#{first}" in n for n in result.notes)
    assert "never bought" in format_replay(result)


def test_a_fidelity_ladder_is_answered_tier_by_tier(tmp_path):
    run_dir = tmp_path / "ladder"
    cfg = RunConfig(
        **{**BASE, "domain": "ladder_domain:LadderDomain", "audit_rate": 0.1,
           "retrain_every": 800, "challenger_audits": 300},
        run_dir=run_dir, deterministic=True, ladder=["coarse", "fine", "exact"],
        budget={"max_candidates": 3000},
    )  # fmt: skip
    stats = Scheduler(cfg).run()
    result = replay(run_dir)
    assert result.identical and result.exact
    assert result.ledger_answers == {"coarse": 3000, "fine": 3000, "exact": stats.gt_calls}
    d = lineage(run_dir, "#1")  # before the first surrogate: every tier ran on it
    assert [v["fidelity"] for v in d["verifications"]] == ["coarse", "fine", "exact"]
    assert d["verifications"][0]["simulator"] == "analytic-coarse"


def test_a_run_that_was_not_deterministic_is_replayed_as_an_approximation(tmp_path):
    run_dir = tmp_path / "dask"
    # the config says Dask without deterministic: its decisions depended on arrival timing
    cfg = RunConfig(
        **{**BASE, "executor": "local"}, run_dir=run_dir, budget={"max_candidates": 1500}
    )
    Scheduler(cfg, executor=InlineExecutor()).run()
    result = replay(run_dir)
    assert not result.deterministic and not result.in_process and not result.exact
    assert any("arrival" in n or "when results arrived" in n for n in result.notes)


def test_replay_never_writes_into_the_run_dir(run):
    with pytest.raises(FoundryError, match="never writes there"):
        replay(run, out_dir=run)
    with pytest.raises(FoundryError, match="never writes there"):
        replay(run, out_dir=run / "sub")
    with pytest.raises(FoundryError, match="replay settings: alpha"):
        replay(run, alpha=1.5)


@pytest.mark.slow
def test_a_deterministic_dask_run_is_reproduced_in_process(tmp_path):
    """Dask workers, verifier child processes, chunks of 8: the replay (in-process, from the
    ledger) gives the same rows."""
    run_dir = tmp_path / "dask"
    cfg = RunConfig(
        **{**BASE, "executor": "local", "isolation": "process"}, run_dir=run_dir, seed=5,
        n_workers=2, chunk_size=8, deterministic=True, budget={"max_candidates": 6000},
    )  # fmt: skip
    stats = Scheduler(cfg).run()
    assert stats.surrogate_accepted > 0
    result = replay(run_dir)
    assert result.identical and result.exact


# -- lineage -------------------------------------------------------------------------------------


def _seq_where(run_dir: Path, where: str) -> tuple[int, str]:
    return query(run_dir, f"SELECT seq, content_id FROM examples WHERE {where} LIMIT 1")[0]


def test_lineage_of_a_ground_truth_label(run):
    seq, cid = _seq_where(run, "decided_by = 'ground_truth' AND surrogate_version IS NOT NULL")
    d = lineage(run, cid)
    assert d["seq"] == seq and d["decided_by"] == "ground_truth" and d["certificate"] is None
    (v,) = d["verifications"]
    assert v["fidelity"] == "ground-truth" and v["simulator"] == "analytic"
    assert v["simulator_version"] == "1.0" and v["walltime_s"] is not None
    assert d["surrogate"]["version"] >= 1 and "p_pass" in d["surrogate"]
    regime = d["regime"]
    assert regime["steering"] == {"spread": 1.0} and regime["seed"] == 3
    assert regime["first_seq"] == 1
    text = format_lineage(d)
    assert cid in text and "analytic 1.0" in text and "labelled by the ground truth" in text
    assert json.loads(json.dumps(d)) == d  # plain JSON data


def test_lineage_of_a_surrogate_release_names_its_certificate(run):
    seq, cid = _seq_where(run, "decided_by = 'surrogate' AND decision = 'accepted'")
    d = lineage(run, f"#{seq}")
    assert d["id"] == cid and d["verifications"] == []
    cert = d["certificate"]
    row = query(
        run, "SELECT calibration_version, slice, generator_hash, surrogate_version, bound "
        "FROM examples WHERE seq = ?", (seq,),
    )[0]  # fmt: skip
    assert cert["version"] == row[0] and cert["slice"] == row[1] == d["slice"]
    assert cert["regime"] == row[2] and cert["surrogate_version"] == row[3]
    assert cert["accept_threshold"] >= d["surrogate"]["accept_risk"]
    assert cert["estimate_at_release"] == row[4] and cert["audits_used"] > 0
    assert f"certificate #{row[0]}" in format_lineage(d)


def test_lineage_ids_prefixes_and_errors(run):
    cid = query(run, "SELECT content_id FROM examples WHERE seq = 7")[0][0]
    assert lineage(run, cid[:8])["seq"] == 7
    assert lineage(run, cid.upper()[:10])["seq"] == 7
    with pytest.raises(FoundryError, match=re.escape(f"'{'0' * 32}' in the ledger of {run}")):
        lineage(run, "0" * 32)
    with pytest.raises(FoundryError, match="at least 8 hex"):
        lineage(run, cid[:5])
    with pytest.raises(FoundryError, match="no example with seq 999999"):
        lineage(run, "#999999")
    with pytest.raises(FoundryError, match="no ledger"):
        lineage(run.parent / "nothing-here", cid)


def _cand(x: float, y: float, cid: str = "", **kw) -> Candidate:
    return Candidate({"x": [x, y]}, id=cid, **kw)


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A run fed an external stream whose candidates name their parents: a real example in
    the ledger, one that is not (the reservoir), a cycle, a chain longer than the depth cap,
    and two ids that share a long prefix."""
    dom = "analytic_sliced"
    pts = {name: [0.1 * i - 0.5, 0.05 * i] for i, name in enumerate("ABRCDEXY")}
    ids = {name: content_id(dom, {"x": x}) for name, x in pts.items()}
    missing = "f" * 32
    chain = [content_id(dom, {"x": [0.9, -0.9 + 0.01 * k]}) for k in range(MAX_DEPTH + 6)]
    twins = ["abcdef01" + "0" * 24, "abcdef01" + "1" * 24]
    batches = [
        [
            _cand(*pts["A"]),
            _cand(*pts["B"]),
            _cand(*pts["R"], source="real"),
            _cand(0.3, 0.3, twins[0]),
            _cand(0.3, 0.4, twins[1]),
        ],
        [
            _cand(*pts["C"], generation=1, parent_ids=(ids["A"], missing)),
            _cand(*pts["D"], generation=1, parent_ids=(ids["B"], ids["R"])),
        ],
        [
            _cand(*pts["E"], generation=2, parent_ids=(ids["C"], ids["D"])),
            _cand(*pts["X"], generation=1, parent_ids=(ids["Y"],)),
            _cand(*pts["Y"], generation=1, parent_ids=(ids["X"],)),
        ],
        [
            _cand(0.9, -0.9 + 0.01 * k, generation=k, parent_ids=(chain[k - 1],) if k else ())
            for k in range(len(chain))
        ],
    ]
    run_dir = tmp_path_factory.mktemp("family") / "run"
    cfg = RunConfig(
        run_dir=run_dir, deterministic=True, budget={"max_candidates": None},
        **{**BASE, "surrogate": False},
    )  # fmt: skip
    Scheduler(cfg, candidates=iter(batches), stream_id="family.jsonl:0").run()
    return run_dir, {**ids, "missing": missing, "last": chain[-1], "twin": twins[0]}


def test_lineage_follows_parents_back_to_real_examples(family):
    run_dir, ids = family
    d = lineage(run_dir, ids["E"])
    assert d["generation"] == 2 and d["regime"]["input"] == "family.jsonl:0"
    c, dd = d["parents"]
    assert (c["id"], c["generation"], dd["id"], dd["generation"]) == (ids["C"], 1, ids["D"], 1)
    a, reservoir = c["parents"]
    assert a["id"] == ids["A"] and a["generation"] == 0 and a["parents"] == []
    assert reservoir == {"id": ids["missing"], "in_ledger": False, "note": NOT_IN_LEDGER}
    b, real = dd["parents"]
    assert b["id"] == ids["B"] and real["id"] == ids["R"] and real["source"] == "real"
    text = format_lineage(d)
    assert f"{ids['missing']}  {NOT_IN_LEDGER}" in text and "real, generation 0" in text


def test_lineage_survives_cycles_and_deep_chains(family):
    run_dir, ids = family
    (y,) = lineage(run_dir, ids["X"])["parents"]
    (x,) = y["parents"]
    assert x["id"] == ids["X"] and "cycle" in x["note"]
    node, depth = lineage(run_dir, ids["last"]), 0
    while node.get("parents"):
        (node,) = node["parents"]
        depth += 1
    assert depth == MAX_DEPTH and "not followed" in node["note"]


def test_an_ambiguous_prefix_says_how_many_match(family):
    run_dir, ids = family
    with pytest.raises(FoundryError, match=r"ambiguous .*: 2 content ids start with it"):
        lineage(run_dir, "abcdef01")
    assert lineage(run_dir, ids["twin"][:9])["id"] == ids["twin"]


def test_an_external_stream_is_replayed_from_the_ledger(family):
    run_dir, _ids = family
    result = replay(run_dir)
    assert result.identical and result.exact and result.rows_original == 10 + 70


def test_a_surrogate_given_to_the_run_is_given_to_the_replay(tmp_path):
    """``foundry verify --surrogate-from``: the run's v1 was installed, not trained."""
    rng = np.random.default_rng(4)
    labels = [_cand(float(a), float(b)) for a, b in rng.uniform(-1, 1, size=(400, 2))]
    gt = analytic_domain.AnalyticGroundTruth()
    model = analytic_domain.SlicedAnalyticDomain().surrogate()
    model.fit(labels, [gt.verify(c, "") for c in labels])
    xs = rng.uniform(-1, 1, size=(3000, 2))
    stream = [[_cand(float(a), float(b), source="injected") for a, b in xs[i : i + 500]]
              for i in range(0, 3000, 500)]  # fmt: skip
    run_dir = tmp_path / "verify"
    cfg = RunConfig(
        run_dir=run_dir, deterministic=True, budget={"max_candidates": None},
        **{**BASE, "surrogate": False, "batch_size": 500},
    )  # fmt: skip
    scheduler = Scheduler(cfg, candidates=iter(stream), stream_id="mine.jsonl:1")
    scheduler.add_challenger(model)
    stats = scheduler.run()
    assert stats.surrogate_accepted + stats.surrogate_rejected > 0
    result = replay(run_dir)
    assert result.identical and result.exact and not result.notes
    assert lineage(run_dir, "#1")["surrogate"]["n_labels"] == 0


# -- command line --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foundry")
    sub = parser.add_subparsers(dest="command", required=True)
    lineage_mod.add_lineage_parser(sub)
    replay_mod.add_replay_parser(sub)
    return parser


def test_the_commands_print_text_and_json(run, capsys):
    args = _parser().parse_args(["lineage", "#5", "--run-dir", str(run), "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 5
    args = _parser().parse_args(["lineage", "#5", "--run-dir", str(run)])
    assert args.func(args) == 0
    assert "example " in capsys.readouterr().out
    args = _parser().parse_args(["replay", str(run), "--alpha", "0.1", "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["identical"] and out["exact"] and out["out_dir"] is None
    args = _parser().parse_args(["replay", str(run), "--max-item-risk", "0.05"])
    assert args.func(args) == 0
    assert "max_item_risk 0.1 -> 0.05" in capsys.readouterr().out
