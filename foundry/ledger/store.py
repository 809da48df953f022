"""The provenance ledger: one SQLite file per run directory (WAL, one writer: the coordinator).

Every candidate that reaches the scheduler gets a row at once (decision ``pending`` while the
ground truth works on it), so a crash loses nothing that was generated. Surrogate versions and
calibrations get their own tables; each example row points at the ones that decided it.
"""

from __future__ import annotations

import itertools
import json
import operator
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2

EXAMPLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("seq", "INTEGER PRIMARY KEY"),
    ("content_id", "TEXT NOT NULL"),
    ("domain", "TEXT NOT NULL"),
    ("domain_version", "TEXT NOT NULL"),
    ("domain_options", "TEXT NOT NULL DEFAULT '{}'"),
    ("payload", "TEXT NOT NULL"),
    ("source", "TEXT NOT NULL"),
    ("generation", "INTEGER NOT NULL"),
    ("parent_ids", "TEXT NOT NULL"),
    ("generator_hash", "TEXT NOT NULL"),
    ("slice", "TEXT"),
    ("rule_ok", "INTEGER NOT NULL"),
    ("rule_reason", "TEXT"),
    ("surrogate_version", "INTEGER"),
    ("p_pass", "REAL"),
    ("predicted", "TEXT"),
    ("uncertainty", "TEXT"),
    ("accept_risk", "REAL"),
    ("reject_risk", "REAL"),
    ("audit", "INTEGER NOT NULL"),
    ("route", "TEXT NOT NULL"),
    ("decision", "TEXT NOT NULL"),
    ("decided_by", "TEXT"),
    ("reason", "TEXT"),
    ("calibration_version", "INTEGER"),
    ("bound", "REAL"),
    ("alpha", "REAL"),
    ("gt_passed", "INTEGER"),
    ("gt_properties", "TEXT"),
    ("gt_reason", "TEXT"),
    ("gt_measurements", "TEXT"),
    ("simulator", "TEXT"),
    ("simulator_version", "TEXT"),
    ("walltime_s", "REAL"),
    ("worker_host", "TEXT"),
    ("failure_kind", "TEXT"),
    ("error", "TEXT"),
    ("attempts", "INTEGER NOT NULL DEFAULT 0"),
    ("created_at", "REAL NOT NULL"),
    ("decided_at", "REAL"),
)
COLUMN_NAMES = tuple(name for name, _ in EXAMPLE_COLUMNS)

#: decisions an example row can end in
DECISIONS = ("accepted", "rejected", "pending", "failed", "invalid")


@dataclass
class GroundTruthUpdate:
    """What the coordinator writes back when a ground-truth result arrives."""

    seq: int
    decision: str
    decided_by: str | None
    reason: str
    gt_passed: int | None
    gt_properties: str | None
    gt_reason: str | None
    gt_measurements: str | None
    simulator: str
    simulator_version: str
    walltime_s: float
    worker_host: str
    failure_kind: str | None
    error: str | None
    attempts: int
    decided_at: float


_UPDATE_FIELDS = tuple(f.name for f in fields(GroundTruthUpdate) if f.name != "seq")
_UPDATE_VALUES = operator.attrgetter(*_UPDATE_FIELDS)

#: Most rows written by one multi-row statement (see Ledger._write_many).
ROWS_PER_STATEMENT = 500
#: SQLite page cache of the writer (KiB).
LEDGER_CACHE_KB = 65_536
#: Built when the writer closes, not maintained row by row: content ids are random keys, and
#: inserting them into a live index costs more than the rest of a row once it outgrows the cache.
CLOSING_INDEXES = ("CREATE INDEX IF NOT EXISTS examples_content ON examples(content_id)",)


class Ledger:
    """Single-writer SQLite ledger of a run. Readers open their own connection (``read_only``).

    Example rows and ground-truth updates are grouped into one transaction per
    ``COMMIT_INTERVAL_S`` (a commit costs about as much as writing a thousand rows); everything
    else commits at once, and :meth:`flush` / :meth:`close` commit what is pending. A reader
    (``foundry status`` during a run) sees the run at most that much behind.
    """

    FILENAME = "ledger.sqlite"
    COMMIT_INTERVAL_S = 0.5

    def __init__(self, run_dir: Path, *, read_only: bool = False) -> None:
        self.path = Path(run_dir) / self.FILENAME
        self.read_only = read_only
        if read_only:
            if not self.path.exists():
                raise FileNotFoundError(f"no ledger at {self.path}")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(f"PRAGMA cache_size=-{LEDGER_CACHE_KB}")
            self._create()
        self._committed_at = time.monotonic()
        # bound parameters per statement (SQLite >= 3.32 allows 32,766; older builds 999)
        self._max_variables = self.db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        self._update_from = sqlite3.sqlite_version_info >= (3, 33)  # UPDATE ... FROM
        self.db.row_factory = sqlite3.Row

    def _create(self) -> None:
        cols = ",\n  ".join(f"{name} {kind}" for name, kind in EXAMPLE_COLUMNS)
        self.db.executescript(
            f"""
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS examples (\n  {cols}\n);
            CREATE TABLE IF NOT EXISTS surrogates (
              version INTEGER PRIMARY KEY, created_at REAL NOT NULL, n_labels INTEGER NOT NULL,
              fit_s REAL NOT NULL, note TEXT);
            CREATE TABLE IF NOT EXISTS calibrations (
              version INTEGER PRIMARY KEY, surrogate_version INTEGER NOT NULL,
              created_at REAL NOT NULL, delta_spent REAL NOT NULL, in_force INTEGER NOT NULL,
              accept_threshold REAL, accept_n INTEGER, accept_errors INTEGER, accept_bound REAL,
              reject_threshold REAL, reject_n INTEGER, reject_errors INTEGER, reject_bound REAL,
              alpha REAL NOT NULL, reject_alpha REAL NOT NULL, coverage REAL,
              regime TEXT, slice TEXT, look INTEGER, audits_used INTEGER,
              last_audit_seq INTEGER);
            CREATE TABLE IF NOT EXISTS verifications (
              seq INTEGER NOT NULL, fidelity TEXT NOT NULL, passed INTEGER, properties TEXT,
              measurements TEXT, reason TEXT, simulator TEXT, simulator_version TEXT,
              walltime_s REAL, host TEXT, failure_kind TEXT, error TEXT,
              created_at REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS events (
              t REAL NOT NULL, level TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS monitor (t REAL NOT NULL, n_seen INTEGER NOT NULL,
              metrics TEXT NOT NULL);
            """
        )
        self.db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        self.db.commit()

    # -- writing --------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))
        self.db.commit()

    def next_seq(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM examples").fetchone()
        return int(row[0]) + 1

    def insert_examples(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Insert rows that hold values for ``columns``, in that order; other columns are NULL.

        Callers name only the columns a kind of row fills: sqlite3 binds a ``None`` several
        times slower than a number or a string, and most columns of a new row are empty.
        """
        columns = tuple(columns)
        unknown = [c for c in columns if c not in COLUMN_NAMES]
        if unknown:
            raise ValueError(f"unknown ledger columns {unknown}")
        head = f"INSERT INTO examples ({','.join(columns)}) VALUES "
        self._write_many(head, "", len(columns), rows)
        self._commit_soon()

    def update_ground_truth(self, updates: Sequence[GroundTruthUpdate]) -> None:
        """Write ground-truth results into their pending rows. Fields that are ``None`` are not
        written: a pending row's ground-truth columns are NULL already."""
        if not updates:
            return
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for update in updates:
            values = _UPDATE_VALUES(update)
            present = tuple(n for n, v in zip(_UPDATE_FIELDS, values, strict=True) if v is not None)
            row = (update.seq, *(v for v in values if v is not None))
            groups.setdefault(present, []).append(row)
        for present, rows in groups.items():
            if self._update_from:
                # v.column1 is the seq, v.column<k+2> the k-th present field
                assignments = ", ".join(f"{n} = v.column{k + 2}" for k, n in enumerate(present))
                head = f"UPDATE examples SET {assignments} FROM (VALUES "
                tail = ") AS v WHERE examples.seq = v.column1"
                self._write_many(head, tail, len(present) + 1, rows)
            else:
                assignments = ", ".join(f"{name} = ?" for name in present)
                self.db.executemany(
                    f"UPDATE examples SET {assignments} WHERE seq = ?",
                    [(*row[1:], row[0]) for row in rows],
                )
        self._commit_soon()

    def _write_many(self, head: str, tail: str, width: int, rows: Iterable[Sequence[Any]]) -> None:
        """Run ``head (?,..),(?,..),.. tail`` over ``rows``, many rows per statement.

        Not ``executemany``: sqlite3 releases the GIL around every row it steps and must win it
        back for the next, which takes up to the interpreter's switch interval (5 ms) whenever
        another thread of this process is busy (Dask's event loop, surrogate training). One
        statement per few hundred rows pays that once.
        """
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        if set(map(len, rows)) != {width}:
            raise ValueError(f"every row must hold {width} values")
        per = max(1, min(ROWS_PER_STATEMENT, self._max_variables // width))
        group = "(" + ",".join("?" * width) + ")"
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            sql = head + ",".join([group] * len(chunk)) + tail
            self.db.execute(sql, list(itertools.chain.from_iterable(chunk)))

    def add_surrogate(self, version: int, n_labels: int, fit_s: float, note: str = "") -> None:
        self.db.execute(
            "INSERT INTO surrogates VALUES (?, ?, ?, ?, ?)",
            (version, time.time(), n_labels, fit_s, note),
        )
        self.db.commit()

    def add_calibration(self, record: dict[str, Any]) -> None:
        keys = list(record)
        self.db.execute(
            f"INSERT INTO calibrations ({','.join(keys)}) VALUES ({','.join('?' * len(keys))})",
            [record[k] for k in keys],
        )
        self.db.commit()

    def add_verifications(self, rows: Sequence[Sequence[Any]]) -> None:
        """Verdicts of the fidelity ladder's tiers: (seq, fidelity, passed, properties,
        measurements, reason, simulator, simulator_version, walltime_s, host, failure_kind,
        error, created_at) each."""
        self.db.executemany(
            "INSERT INTO verifications VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        self._commit_soon()

    def event(self, level: str, kind: str, message: str) -> None:
        self.db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?)", (time.time(), level, kind, message)
        )
        self.db.commit()

    def add_monitor(self, n_seen: int, metrics: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO monitor VALUES (?, ?, ?)", (time.time(), n_seen, json.dumps(metrics))
        )
        self.db.commit()

    def _commit_soon(self) -> None:
        now = time.monotonic()
        if now - self._committed_at >= self.COMMIT_INTERVAL_S:
            self.db.commit()
            self._committed_at = now

    def flush(self) -> None:
        """Commit what is pending."""
        if self.db.in_transaction:
            self.db.commit()
        self._committed_at = time.monotonic()

    def close(self) -> None:
        try:
            if not self.read_only:
                for statement in CLOSING_INDEXES:
                    self.db.execute(statement)
            self.flush()
        finally:
            self.db.close()

    # -- reading --------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def counts(self) -> dict[str, int]:
        return {
            row[0]: row[1]
            for row in self.db.execute("SELECT decision, COUNT(*) FROM examples GROUP BY decision")
        }

    def count_by(self, *columns: str) -> list[tuple[Any, ...]]:
        for col in columns:
            if col not in COLUMN_NAMES:
                raise ValueError(f"unknown column {col!r}")
        cols = ", ".join(columns)
        return [
            tuple(r)
            for r in self.db.execute(
                f"SELECT {cols}, COUNT(*) FROM examples GROUP BY {cols} ORDER BY {cols}"
            )
        ]

    def iter_rows(
        self, where: str = "", params: Iterable[Any] = (), batch: int = 10_000
    ) -> Iterator[list[sqlite3.Row]]:
        cursor = self.db.execute(
            f"SELECT * FROM examples {('WHERE ' + where) if where else ''} ORDER BY seq",
            tuple(params),
        )
        while True:
            rows = cursor.fetchmany(batch)
            if not rows:
                return
            yield rows

    def table(self, name: str) -> list[dict[str, Any]]:
        if name not in {"surrogates", "calibrations", "events", "monitor"}:
            raise ValueError(f"unknown table {name!r}")
        return [dict(r) for r in self.db.execute(f"SELECT * FROM {name}")]
