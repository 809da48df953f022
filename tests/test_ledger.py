"""The ledger keeps every row it was given: grouped commits are flushed on close, and the
content-id index is built then."""

from __future__ import annotations

import sqlite3

from foundry.ledger import COLUMN_NAMES, ExampleRow, Ledger


def _row(seq: int) -> ExampleRow:
    values = {name: None for name in COLUMN_NAMES}
    values.update(
        seq=seq, content_id=f"id{seq}", domain="d", domain_version="1", payload="{}",
        source="synthetic", generation=0, parent_ids="[]", generator_hash="h", rule_ok=1,
        audit=0, route="rule", decision="pending", attempts=0, created_at=0.0,
    )  # fmt: skip
    return ExampleRow(**values)


def test_grouped_commits_lose_nothing_and_the_index_exists_after_close(tmp_path) -> None:
    ledger = Ledger(tmp_path)
    ledger.COMMIT_INTERVAL_S = 3600.0  # nothing commits on its own during this test
    for first in range(1, 1001, 100):
        ledger.insert_examples([_row(s) for s in range(first, first + 100)])
    reader = sqlite3.connect(tmp_path / Ledger.FILENAME)
    assert reader.execute("SELECT COUNT(*) FROM examples").fetchone()[0] < 1000  # pending
    ledger.close()
    assert reader.execute("SELECT COUNT(*) FROM examples").fetchone()[0] == 1000
    indexes = {r[0] for r in reader.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "examples_content" in indexes
    plan = " ".join(
        str(r) for r in reader.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM examples WHERE content_id = 'id7'"
        )
    )  # fmt: skip
    assert "examples_content" in plan
    reader.close()
