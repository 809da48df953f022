"""Export a run's ledger for training pipelines (Parquet, JSONL) and summarise it.

Every exported row keeps its full provenance; ``label`` holds the properties the example is
released with and ``label_source`` says whose word they are (``ground_truth`` or
``surrogate``, the latter always with the ``bound`` in force).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from foundry.ledger.store import EXAMPLE_COLUMNS, Ledger

FORMATS = ("parquet", "jsonl")


def _with_label(row: dict[str, Any]) -> dict[str, Any]:
    if row["decided_by"] == "ground_truth":
        row["label"] = row["gt_properties"]
        row["label_source"] = "ground_truth"
    elif row["decided_by"] == "surrogate":
        row["label"] = row["predicted"]
        row["label_source"] = "surrogate"
    else:
        row["label"] = None
        row["label_source"] = None
    return row


def iter_export_rows(ledger: Ledger, *, decisions: tuple[str, ...] | None) -> Iterator[list[dict]]:
    where, params = "", ()
    if decisions:
        where = f"decision IN ({','.join('?' * len(decisions))})"
        params = decisions
    for rows in ledger.iter_rows(where, params):
        yield [_with_label(dict(r)) for r in rows]


def export_run(
    run_dir: Path,
    out: Path | None = None,
    *,
    fmt: str = "parquet",
    decisions: tuple[str, ...] | None = ("accepted",),
) -> tuple[Path, int]:
    """Write the run's examples (default: accepted only); returns (path, rows written)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    run_dir = Path(run_dir)
    ledger = Ledger(run_dir, read_only=True)
    suffix = ".parquet" if fmt == "parquet" else ".jsonl"
    name = "examples" if decisions == ("accepted",) else "ledger"
    out = Path(out) if out else run_dir / f"{name}{suffix}"
    n = 0
    try:
        if fmt == "jsonl":
            with out.open("w") as fh:
                for batch in iter_export_rows(ledger, decisions=decisions):
                    for row in batch:
                        fh.write(json.dumps(row) + "\n")
                    n += len(batch)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            types = {"INTEGER": pa.int64(), "REAL": pa.float64(), "TEXT": pa.string()}
            schema = pa.schema(
                [pa.field(name, types[kind.split()[0]]) for name, kind in EXAMPLE_COLUMNS]
                + [pa.field("label", pa.string()), pa.field("label_source", pa.string())]
            )
            with pq.ParquetWriter(out, schema) as writer:
                for batch in iter_export_rows(ledger, decisions=decisions):
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    n += len(batch)
                if n == 0:
                    writer.write_table(schema.empty_table())
    finally:
        ledger.close()
    return out, n


def summarize(run_dir: Path) -> dict[str, Any]:
    """Everything `foundry status` shows, as data."""
    ledger = Ledger(Path(run_dir), read_only=True)
    try:
        meta = ledger.meta()
        by_decision = ledger.counts()
        by_tier = ledger.count_by("decision", "decided_by")
        gt = ledger.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(walltime_s), 0), COALESCE(SUM(audit), 0) "
            "FROM examples WHERE decided_by = 'ground_truth' OR decision = 'failed'"
        ).fetchone()
        failures = ledger.count_by("failure_kind")
        calibrations = ledger.table("calibrations")
        surrogates = ledger.table("surrogates")
        events = ledger.db.execute("SELECT level, COUNT(*) FROM events GROUP BY level").fetchall()
        last_events = [
            dict(r)
            for r in ledger.db.execute(
                "SELECT * FROM events WHERE level != 'info' ORDER BY t DESC LIMIT 5"
            )
        ]
        monitor = ledger.table("monitor")
    finally:
        ledger.close()
    stats = meta.get("stats", {})
    in_force = None
    champion = stats.get("champion")
    for cal in calibrations:
        if cal["surrogate_version"] == champion:
            in_force = cal
    return {
        "run_dir": str(run_dir),
        "domain": meta.get("domain", {}).get("name"),
        "finished": "finished_at" in meta,
        "stop_reason": stats.get("stop_reason", ""),
        "elapsed_s": stats.get("elapsed_s"),
        "total": sum(by_decision.values()),
        "by_decision": by_decision,
        "by_tier": [list(r) for r in by_tier],
        "ground_truth_calls": gt[0],
        "ground_truth_walltime_s": gt[1],
        "audits": gt[2],
        "failures": {k: v for k, v in failures if k},
        "surrogate_versions": len(surrogates),
        "champion": champion,
        "calibration_in_force": in_force,
        "alpha": meta.get("config", {}).get("alpha"),
        "delta": meta.get("config", {}).get("delta"),
        "events": dict(events),
        "recent_problems": last_events,
        "monitor_last": json.loads(monitor[-1]["metrics"]) if monitor else None,
    }
