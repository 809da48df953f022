"""What the report shows, read from a run's ledger (read only) into plain data.

Every table and column beyond ``examples(seq, decision)`` and ``meta`` is optional: a run of an
older foundry, or one that never got that far, yields empty fields, not an error.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foundry.ledger import Ledger

#: windows of seq over which the acceptance rate is shown
N_WINDOWS = 40
#: points kept per cumulative audit-error curve
MAX_CURVE_POINTS = 300
#: event rows shown (warnings, errors and actions first)
MAX_EVENTS = 500
#: decisions that are not final
OPEN_DECISIONS = ("pending", "deferred")
#: the slice name of whole-generation rows of the generation monitor
ALL_SLICES = "__all__"
#: event kinds that are actions (shown first, highlighted): steering, promotions
ACTION_WORDS = ("steer", "action", "promote")


@dataclass
class ReportData:
    """A run, as the report's sections need it."""

    run_dir: Path
    meta: dict[str, Any] = field(default_factory=dict)
    start: float | None = None
    total: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    by_tier: list[tuple[str, str, int]] = field(default_factory=list)
    #: (first seq, last seq, accepted, decided, decided by the surrogate) per window
    windows: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    #: generation -> (accepted, decided)
    generations: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: slice -> [(seq, cumulative error rate)] over audits with a surrogate opinion
    audit_curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    #: slice -> (errors, audits)
    audit_totals: dict[str, tuple[int, int]] = field(default_factory=dict)
    calibrations: list[dict[str, Any]] = field(default_factory=list)
    #: (generation, slice) -> metrics of a generation-monitor row (the last one written)
    generation_monitor: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    #: (n_seen, metrics) of the window monitor
    window_monitor: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    #: generation -> source -> accepted examples
    sources: dict[int, dict[str, int]] = field(default_factory=dict)
    #: generation -> part -> seconds ("generate_s", ..., "ground truth: <tier>")
    compute: dict[int, dict[str, float]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    n_events: int = 0

    @property
    def config(self) -> dict[str, Any]:
        cfg = self.meta.get("config")
        return cfg if isinstance(cfg, dict) else {}

    @property
    def domain(self) -> dict[str, Any]:
        dom = self.meta.get("domain")
        if isinstance(dom, dict):
            return dom
        return {"name": str(dom)} if dom is not None else {}


def number(v: Any) -> float | None:
    """``v`` as a finite float, else ``None`` (bools are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def _json(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _tables(db: sqlite3.Connection) -> dict[str, set[str]]:
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        n: {r[1] for r in db.execute('PRAGMA table_info("{}")'.format(n.replace('"', '""')))}
        for n in names
    }


def _thin(points: list[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def load(run_dir: Path) -> ReportData:
    """Read ``run_dir/ledger.sqlite``. Raises FileNotFoundError when there is no ledger."""
    run_dir = Path(run_dir)
    ledger = Ledger(run_dir, read_only=True)  # mode=ro (recovers a killed run's WAL)
    try:
        db = ledger.db
        db.row_factory = sqlite3.Row
        return _read(db, run_dir)
    finally:
        ledger.close()


def _read(db: sqlite3.Connection, run_dir: Path) -> ReportData:
    tables = _tables(db)
    data = ReportData(run_dir)
    if "meta" in tables:
        data.meta = {r[0]: _json(r[1]) for r in db.execute("SELECT key, value FROM meta")}
    ex = tables.get("examples", set())
    if {"seq", "decision"} <= ex:
        _read_examples(db, ex, data)
    starts = [number(data.meta.get("started_at"))]
    if "created_at" in ex:
        starts.append(number(db.execute("SELECT MIN(created_at) FROM examples").fetchone()[0]))
    if "events" in tables:
        starts.append(number(db.execute("SELECT MIN(t) FROM events").fetchone()[0]))
    data.start = min((s for s in starts if s is not None), default=None)
    if "calibrations" in tables and "in_force" in tables["calibrations"]:
        data.calibrations = [
            dict(r) for r in db.execute("SELECT * FROM calibrations WHERE in_force = 1")
        ]
    if "monitor" in tables:
        _read_monitor(db, data)
    _read_compute(db, tables, ex, data)
    if {"t", "level", "kind", "message"} <= tables.get("events", set()):
        data.n_events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        routine = " AND ".join(f"kind NOT LIKE '%{w}%'" for w in ACTION_WORDS)
        rows = db.execute(
            "SELECT t, level, kind, message FROM events "
            f"ORDER BY (level = 'info' AND {routine}), t LIMIT ?",
            (MAX_EVENTS,),
        )
        data.events = sorted((dict(r) for r in rows), key=lambda e: number(e["t"]) or 0.0)
    return data


def _read_examples(db: sqlite3.Connection, ex: set[str], data: ReportData) -> None:
    def col(name: str) -> str:
        return name if name in ex else "NULL"

    open_ = ", ".join(f"'{d}'" for d in OPEN_DECISIONS)
    data.decisions = {
        str(d): n for d, n in db.execute("SELECT decision, COUNT(*) FROM examples GROUP BY 1")
    }
    data.total = sum(data.decisions.values())
    data.by_tier = [
        (str(d), str(t), n)
        for d, t, n in db.execute(
            f"SELECT decision, {col('decided_by')}, COUNT(*) FROM examples "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        )
        if t is not None
    ]
    lo, hi = db.execute("SELECT MIN(seq), MAX(seq) FROM examples").fetchone()
    if lo is None:
        return
    span = hi - lo + 1
    data.windows = [
        (int(a), int(b), int(c or 0), int(d or 0), int(e or 0))
        for _, a, b, c, d, e in db.execute(
            f"SELECT (seq - ?) * ? / ? AS w, MIN(seq), MAX(seq), "
            f"SUM(decision = 'accepted'), SUM(decision NOT IN ({open_})), "
            f"SUM({col('decided_by')} = 'surrogate') FROM examples GROUP BY w ORDER BY w",
            (lo, min(N_WINDOWS, span), span),
        )
    ]
    if "generation" in ex:
        data.generations = {
            int(g): (a, d)
            for g, a, d in db.execute(
                f"SELECT generation, SUM(decision = 'accepted'), "
                f"SUM(decision NOT IN ({open_})) FROM examples "
                "WHERE generation IS NOT NULL GROUP BY 1 ORDER BY 1"
            )
        }
        if "source" in ex:
            for g, s, n in db.execute(
                "SELECT generation, source, COUNT(*) FROM examples "
                "WHERE decision = 'accepted' AND generation IS NOT NULL GROUP BY 1, 2"
            ):
                data.sources.setdefault(int(g), {})[str(s)] = n
    if {"audit", "gt_passed", "p_pass"} <= ex:
        errors: dict[str, int] = {}
        counts: dict[str, int] = {}
        curves: dict[str, list[tuple[int, float]]] = {}
        rows = db.execute(
            f"SELECT seq, COALESCE({col('slice')}, 'all'), p_pass, gt_passed FROM examples "
            "WHERE audit = 1 AND gt_passed IS NOT NULL AND p_pass IS NOT NULL ORDER BY seq"
        )
        for seq, slice_, p_pass, gt_passed in rows:
            for key in {str(slice_), "all"}:
                counts[key] = counts.get(key, 0) + 1
                errors[key] = errors.get(key, 0) + ((p_pass >= 0.5) != bool(gt_passed))
                curves.setdefault(key, []).append((seq, errors[key] / counts[key]))
        data.audit_curves = {k: _thin(v, MAX_CURVE_POINTS) for k, v in curves.items()}
        data.audit_totals = {k: (errors[k], counts[k]) for k in counts}


def _read_monitor(db: sqlite3.Connection, data: ReportData) -> None:
    for n_seen, text in db.execute("SELECT n_seen, metrics FROM monitor ORDER BY t, rowid"):
        metrics = _json(text)
        if not isinstance(metrics, dict):
            continue
        if metrics.get("kind") == "generation":
            g = number(metrics.get("generation"))
            if g is None:
                continue
            slice_ = str(metrics.get("slice", ALL_SLICES))
            data.generation_monitor[(int(g), slice_)] = metrics
        elif "kind" not in metrics and number(n_seen) is not None:
            data.window_monitor.append((int(n_seen), metrics))


def _gt_part(tier: Any) -> str:
    return "ground truth" if tier in (None, "ground-truth") else f"ground truth: {tier}"


def _read_compute(
    db: sqlite3.Connection, tables: dict[str, set[str]], ex: set[str], data: ReportData
) -> None:
    """Meta ``compute`` ({generation: {part_s: s, "ground_truth_s": {tier: s}}}); without
    ground-truth times there, the verifications table (per tier) or the example rows."""
    compute = data.meta.get("compute")
    for g, parts in (compute if isinstance(compute, dict) else {}).items():
        try:
            gen = int(g)
        except (TypeError, ValueError):
            continue
        for part, value in (parts if isinstance(parts, dict) else {}).items():
            if isinstance(value, dict):  # seconds per tier
                for tier, seconds in value.items():
                    if (s := number(seconds)) is not None:
                        data.compute.setdefault(gen, {})[_gt_part(tier)] = s
            elif (s := number(value)) is not None:
                data.compute.setdefault(gen, {})[str(part)] = s
    if any(p.startswith("ground truth") for per in data.compute.values() for p in per):
        return
    ver = tables.get("verifications", set())
    rows: list[tuple[Any, Any, Any]] = []
    if {"seq", "fidelity", "walltime_s"} <= ver and "generation" in ex:
        rows = db.execute(
            "SELECT e.generation, v.fidelity, SUM(v.walltime_s) FROM verifications v "
            "JOIN examples e ON e.seq = v.seq WHERE v.walltime_s IS NOT NULL GROUP BY 1, 2"
        ).fetchall()
    if not rows and {"walltime_s", "generation"} <= ex:
        # one tier: no verifications rows, the example row holds the ground truth's time
        rows = db.execute(
            "SELECT generation, NULL, SUM(walltime_s) FROM examples "
            "WHERE walltime_s IS NOT NULL GROUP BY 1"
        ).fetchall()
    for g, tier, seconds in rows:
        if g is not None and (s := number(seconds)) is not None:
            data.compute.setdefault(int(g), {})[_gt_part(tier)] = s
