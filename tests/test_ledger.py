"""The ledger keeps every row it was given: grouped commits are flushed on close, the content-id
index is built then, unnamed columns are NULL, and a ground-truth update writes what it has."""

from __future__ import annotations

import sqlite3

import pytest

from foundry.ledger import GroundTruthUpdate, Ledger

COLUMNS = (
    "seq", "content_id", "domain", "domain_version", "payload", "source", "generation",
    "parent_ids", "generator_hash", "rule_ok", "audit", "route", "decision", "created_at",
)  # fmt: skip


def _row(seq: int) -> tuple:
    return (seq, f"id{seq}", "d", "1", "{}", "synthetic", 0, "[]", "h", 1, 0, "audit", "pending", 0.0)  # fmt: skip  # noqa: E501


def test_grouped_commits_lose_nothing_and_the_index_exists_after_close(tmp_path) -> None:
    ledger = Ledger(tmp_path)
    ledger.COMMIT_INTERVAL_S = 3600.0  # nothing commits on its own during this test
    for first in range(1, 1001, 100):
        ledger.insert_examples(COLUMNS, (_row(s) for s in range(first, first + 100)))
    reader = sqlite3.connect(tmp_path / Ledger.FILENAME)
    assert reader.execute("SELECT COUNT(*) FROM examples").fetchone()[0] < 1000  # pending
    ledger.close()
    assert reader.execute("SELECT COUNT(*) FROM examples").fetchone()[0] == 1000
    indexes = {r[0] for r in reader.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"examples_content_id", "examples_decision"} <= indexes
    plan = " ".join(
        str(r) for r in reader.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM examples WHERE content_id = 'id7'"
        )
    )  # fmt: skip
    assert "examples_content" in plan
    reader.close()


def test_unnamed_columns_are_null_and_unknown_columns_are_refused(tmp_path) -> None:
    ledger = Ledger(tmp_path)
    ledger.insert_examples(COLUMNS, [_row(1)])
    with pytest.raises(ValueError, match=r"unknown ledger columns \['colour'\]"):
        ledger.insert_examples((*COLUMNS, "colour"), [(*_row(2), "red")])
    with pytest.raises(sqlite3.IntegrityError):  # a NOT NULL column left out
        ledger.insert_examples(COLUMNS[:1] + COLUMNS[2:], [_row(3)[:1] + _row(3)[2:]])
    ledger.commit()
    row = ledger.db.execute("SELECT * FROM examples WHERE seq = 1").fetchone()
    assert row["route"] == "audit" and row["attempts"] == 0
    assert row["p_pass"] is None and row["gt_passed"] is None and row["decided_at"] is None
    ledger.close()


@pytest.mark.parametrize("update_from", [True, False], ids=["update-from", "executemany"])
def test_ground_truth_update_writes_its_fields_and_leaves_none_fields_null(
    tmp_path, update_from: bool
) -> None:
    ledger = Ledger(tmp_path)
    ledger._update_from = update_from  # False: the path taken with SQLite < 3.33
    ledger.insert_examples(COLUMNS, [_row(1), _row(2)])
    common = dict(
        simulator="sim", simulator_version="9", walltime_s=0.5, worker_host="node1", attempts=1,
        decided_at=10.0,
    )  # fmt: skip
    ledger.update_ground_truth(
        [
            GroundTruthUpdate(
                seq=1, decision="accepted", decided_by="ground_truth", reason="audit",
                gt_passed=1, gt_properties='{"y": 1.5}', gt_reason="", gt_measurements=None,
                failure_kind=None, error=None, **common,
            ),
            GroundTruthUpdate(
                seq=2, decision="failed", decided_by=None, reason="audit; timeout",
                gt_passed=None, gt_properties=None, gt_reason=None, gt_measurements=None,
                failure_kind="timeout", error="no verdict within 1 s", **common,
            ),
        ]
    )  # fmt: skip
    ledger.commit()
    ok, failed = (dict(r) for r in ledger.db.execute("SELECT * FROM examples ORDER BY seq"))
    assert (ok["decision"], ok["gt_passed"], ok["gt_properties"]) == ("accepted", 1, '{"y": 1.5}')
    assert ok["failure_kind"] is None and ok["gt_measurements"] is None
    assert (ok["simulator"], ok["worker_host"], ok["attempts"]) == ("sim", "node1", 1)
    assert (failed["decision"], failed["failure_kind"]) == ("failed", "timeout")
    assert failed["gt_passed"] is None and failed["decided_by"] is None
    assert failed["error"] == "no verdict within 1 s" and failed["reason"] == "audit; timeout"
    ledger.close()


def test_many_rows_split_over_statements_by_the_parameter_limit(tmp_path) -> None:
    ledger = Ledger(tmp_path)
    ledger._max_variables = 999  # an old SQLite build: 71 rows of 14 columns per statement
    ledger.insert_examples(COLUMNS, (_row(s) for s in range(1, 1001)))
    updates = [
        GroundTruthUpdate(
            seq=s, decision="rejected", decided_by="ground_truth", reason="uncertain",
            gt_passed=0, gt_properties="{}", gt_reason=f"r{s}", gt_measurements=None,
            simulator="sim", simulator_version="9", walltime_s=0.1, worker_host="h",
            failure_kind=None, error=None, attempts=1, decided_at=1.0,
        )
        for s in range(1, 1001, 2)
    ]  # fmt: skip
    ledger.update_ground_truth(updates)
    ledger.commit()
    rows = ledger.db.execute("SELECT seq, content_id, decision, gt_reason FROM examples").fetchall()
    assert [r["seq"] for r in rows] == list(range(1, 1001))
    assert all(r["content_id"] == f"id{r['seq']}" for r in rows)
    odd, even = rows[0::2], rows[1::2]
    assert all(r["decision"] == "rejected" and r["gt_reason"] == f"r{r['seq']}" for r in odd)
    assert all(r["decision"] == "pending" and r["gt_reason"] is None for r in even)
    with pytest.raises(ValueError, match="every row must hold 14 values"):
        ledger.insert_examples(COLUMNS, [_row(2001), _row(2002)[:-1]])
    ledger.close()
