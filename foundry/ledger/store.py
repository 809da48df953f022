"""The provenance ledger: one SQLite file per run directory (WAL, one writer: the coordinator).

Every candidate that reaches the scheduler gets a row at once (decision ``pending`` while the
ground truth works on it). Surrogate versions, calibrations, audit opinions and the loop's own
counters get tables of their own; each example row points at the ones that decided it.

Nothing commits on its own: the writer calls :meth:`Ledger.commit` at points where the loop's
state is consistent (a batch whole, a result folded in), at least every ``COMMIT_INTERVAL_S``.
A kill then loses at most the work since the last commit, and what survives can be resumed
from: no half batch, no certificate without the audits behind it.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import operator
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from foundry.contract import FoundryError

SCHEMA_VERSION = 3

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
    ("batch", "INTEGER"),
    ("input_line", "INTEGER"),
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
    ("audit_draw", "REAL"),
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
DECISIONS = ("accepted", "rejected", "pending", "failed", "invalid", "deferred")


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
#: One row per content id. The loop's seen set keeps ids unique while it runs; the database
#: checks it when the writer closes and when a resumed run opens the ledger (a live unique
#: index on random keys costs a fifth of the loop's throughput, measured by
#: benchmarks/overhead.py).
UNIQUE_CONTENT_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS examples_content_id ON examples(content_id)"
)
#: Built when the writer closes, not maintained row by row.
CLOSING_INDEXES = (
    UNIQUE_CONTENT_INDEX,
    "CREATE INDEX IF NOT EXISTS examples_decision ON examples(decision)",
)


class LedgerError(FoundryError):
    """The ledger cannot be used: corrupt, of another schema, or locked by a live run."""


class RunLock:
    """One live writer per run directory: an exclusive ``flock`` on ``<run_dir>/.lock``.

    Held for the writer's lifetime and released by the kernel when the process dies, however
    it dies - so a killed run never leaves a stale lock behind. The file names the holder.
    """

    FILENAME = ".lock"

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / self.FILENAME
        self._fh = self.path.open("a+")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "another process"
            self._fh.close()
            raise LedgerError(
                f"{run_dir} is in use by a live run ({holder}); wait for it, stop it, or use "
                "another --run-dir"
            ) from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self._fh.flush()

    def release(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection for reading only, that works for every state a run dir can be in.

    ``mode=ro`` serves a live or a finished run. A killed run leaves a write-ahead log that
    the first connection must recover, which a read-only one cannot: where the directory is
    writable a plain connection recovers it (SQLite's own recovery; this connection writes
    nothing else). Where nothing may be written - read-only storage, someone else's run -
    ``immutable`` reads the main file as it is (a finished run has everything there).
    """

    def probe(db: sqlite3.Connection) -> sqlite3.Connection:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db

    try:
        return probe(sqlite3.connect(f"file:{path}?mode=ro", uri=True))
    except sqlite3.OperationalError:
        if os.access(path.parent, os.W_OK) and os.access(path, os.W_OK):
            with contextlib.suppress(sqlite3.OperationalError):
                return probe(sqlite3.connect(path))
        return probe(sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True))


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
        self.lock: RunLock | None = None
        if read_only:
            if not self.path.is_file():
                raise FileNotFoundError(f"no ledger at {self.path}")
            try:
                self.db = _connect_read_only(self.path)
            except sqlite3.DatabaseError as exc:
                raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from None
        else:
            run_dir = Path(run_dir)
            if run_dir.exists() and not run_dir.is_dir():
                raise LedgerError(f"run dir {run_dir} exists and is not a directory")
            run_dir.mkdir(parents=True, exist_ok=True)
            self.lock = RunLock(run_dir)
            try:
                self.db = sqlite3.connect(self.path)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute(f"PRAGMA cache_size=-{LEDGER_CACHE_KB}")
                self._create()
            except sqlite3.DatabaseError as exc:
                self.lock.release()
                raise LedgerError(f"cannot use the ledger {self.path}: {exc}") from None
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
            CREATE TABLE IF NOT EXISTS audit_opinions (
              seq INTEGER NOT NULL, surrogate_version INTEGER NOT NULL,
              accept_risk REAL, reject_risk REAL, p_pass REAL, predicted TEXT NOT NULL,
              PRIMARY KEY (seq, surrogate_version));
            CREATE TABLE IF NOT EXISTS events (
              t REAL NOT NULL, level TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS monitor (t REAL NOT NULL, n_seen INTEGER NOT NULL,
              metrics TEXT NOT NULL);
            """
        )
        if self.db.execute("SELECT 1 FROM examples LIMIT 1").fetchone() is not None:
            self.db.execute(UNIQUE_CONTENT_INDEX)  # a resumed run: checked, then kept live
        self.db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        found = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if found is not None and int(found[0]) != SCHEMA_VERSION:
            raise LedgerError(
                f"{self.path} has ledger schema {found[0]}; this foundry writes schema "
                f"{SCHEMA_VERSION} (read it with the foundry that wrote it)"
            )
        self.db.commit()

    # -- writing --------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def next_seq(self) -> int:
        row = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM examples").fetchone()
        return int(row[0]) + 1

    def insert_examples(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, replace: bool = False
    ) -> None:
        """Insert rows that hold values for ``columns``, in that order; other columns are NULL.
        ``replace``: a row of the same seq (a placeholder) is replaced.

        Callers name only the columns a kind of row fills: sqlite3 binds a ``None`` several
        times slower than a number or a string, and most columns of a new row are empty.
        """
        columns = tuple(columns)
        unknown = [c for c in columns if c not in COLUMN_NAMES]
        if unknown:
            raise ValueError(f"unknown ledger columns {unknown}")
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        head = f"{verb} INTO examples ({','.join(columns)}) VALUES "
        self._write_many(head, "", len(columns), rows)

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

    def add_calibration(self, record: dict[str, Any]) -> None:
        keys = list(record)
        self.db.execute(
            f"INSERT INTO calibrations ({','.join(keys)}) VALUES ({','.join('?' * len(keys))})",
            [record[k] for k in keys],
        )

    def add_verifications(self, rows: Sequence[Sequence[Any]]) -> None:
        """Verdicts of the fidelity ladder's tiers: (seq, fidelity, passed, properties,
        measurements, reason, simulator, simulator_version, walltime_s, host, failure_kind,
        error, created_at) each."""
        self.db.executemany(
            "INSERT INTO verifications VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )

    def add_audit_opinions(self, rows: Sequence[Sequence[Any]]) -> None:
        """What each version said of each audited item when it was routed: (seq,
        surrogate_version, accept_risk, reject_risk, p_pass, predicted JSON). A resumed run
        rebuilds its audit strata from these and the items' ground truth."""
        self.db.executemany("INSERT OR REPLACE INTO audit_opinions VALUES (?, ?, ?, ?, ?, ?)", rows)

    def event(self, level: str, kind: str, message: str) -> None:
        self.db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?)", (time.time(), level, kind, message)
        )

    def add_monitor(self, n_seen: int, metrics: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO monitor VALUES (?, ?, ?)", (time.time(), n_seen, json.dumps(metrics))
        )

    def commit_due(self) -> bool:
        """Whether ``COMMIT_INTERVAL_S`` has passed since the last commit."""
        return time.monotonic() - self._committed_at >= self.COMMIT_INTERVAL_S

    def commit(self) -> None:
        """Commit what is pending (callers choose the moment: a consistent state)."""
        if self.db.in_transaction:
            self.db.commit()
        self._committed_at = time.monotonic()

    def close(self) -> None:
        """Commit, and leave the file readable without a writer: the WAL checkpointed into the
        main file and journal mode DELETE, so that a finished run can be read from read-only
        storage or by another user."""
        try:
            if not self.read_only:
                for statement in CLOSING_INDEXES:
                    self.db.execute(statement)
                self.commit()
                with contextlib.suppress(sqlite3.DatabaseError):
                    self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    self.db.execute("PRAGMA journal_mode=DELETE")
        finally:
            self.db.close()
            if self.lock is not None:
                self.lock.release()

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
        if name not in {
            "surrogates",
            "calibrations",
            "events",
            "monitor",
            "verifications",
            "audit_opinions",
        }:
            raise ValueError(f"unknown table {name!r}")
        return [dict(r) for r in self.db.execute(f"SELECT * FROM {name}")]
