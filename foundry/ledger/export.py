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

from foundry.files import atomic_path
from foundry.ledger.store import DECISIONS, EXAMPLE_COLUMNS, Ledger

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


def _where(decisions: tuple[str, ...] | None) -> tuple[str, tuple[str, ...]]:
    if not decisions:
        return "", ()
    return f"decision IN ({','.join('?' * len(decisions))})", decisions


def iter_export_rows(
    ledger: Ledger,
    *,
    decisions: tuple[str, ...] | None,
    weights: dict[str, float] | None = None,
) -> Iterator[list[dict]]:
    """The rows to export, labelled; with ``weights`` (by source), each gets a
    ``sample_weight``."""
    where, params = _where(decisions)
    for rows in ledger.iter_rows(where, params):
        batch = [_with_label(dict(r)) for r in rows]
        if weights is not None:
            for row in batch:
                row["sample_weight"] = weights["real" if row["source"] == "real" else "other"]
        yield batch


def real_share_weights(
    ledger: Ledger, decisions: tuple[str, ...] | None, real_share: float
) -> dict[str, float]:
    """Sample weights that give the real examples ``real_share`` of the exported weight
    (mean weight 1): a small real reservoir mixes into training at a controlled ratio
    without duplicated rows."""
    if not 0 < real_share < 1:
        raise ValueError(f"--real-share must be between 0 and 1, got {real_share:g}")
    where, params = _where(decisions)
    counts = dict(
        ledger.db.execute(
            "SELECT source = 'real', COUNT(*) FROM examples"
            + (f" WHERE {where}" if where else "")
            + " GROUP BY source = 'real'",
            params,
        ).fetchall()
    )
    n_real, n_other = counts.get(1, 0), counts.get(0, 0)
    if n_real == 0:
        raise ValueError(
            "no real examples to mix in: the run verified none (a domain without a reservoir, "
            "no [generations], or generations.verify_reservoir = false)"
        )
    if n_other == 0:
        return {"real": 1.0, "other": 1.0}
    n = n_real + n_other
    return {"real": real_share * n / n_real, "other": (1.0 - real_share) * n / n_other}


def export_run(
    run_dir: Path,
    out: Path | None = None,
    *,
    fmt: str = "parquet",
    decisions: tuple[str, ...] | None = ("accepted",),
    real_share: float | None = None,
) -> tuple[Path, int]:
    """Write the run's examples (default: accepted only); returns (path, rows written).
    ``real_share``: add a ``sample_weight`` column giving the real examples that share of
    the weight.

    Written to a temporary file and renamed into place: a killed export leaves the previous
    file as it was."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    unknown = sorted(set(decisions or ()) - set(DECISIONS))
    if unknown:
        raise ValueError(f"unknown decision(s) {unknown}; choose from {list(DECISIONS)}")
    run_dir = Path(run_dir)
    ledger = Ledger(run_dir, read_only=True)
    suffix = ".parquet" if fmt == "parquet" else ".jsonl"
    name = "examples" if decisions == ("accepted",) else "ledger"
    out = Path(out) if out else run_dir / f"{name}{suffix}"
    n = 0
    try:
        guarantee = guarantee_text(ledger.meta().get("config", {}))
        weights = None if real_share is None else real_share_weights(ledger, decisions, real_share)
        with atomic_path(out) as tmp:
            n = _write(ledger, tmp, fmt, decisions, guarantee, weights)
    finally:
        ledger.close()
    return out, n


def _write(
    ledger: Ledger,
    out: Path,
    fmt: str,
    decisions: tuple[str, ...] | None,
    guarantee: str | None,
    weights: dict[str, float] | None = None,
) -> int:
    n = 0
    if fmt == "jsonl":
        with out.open("w") as fh:
            for batch in iter_export_rows(ledger, decisions=decisions, weights=weights):
                for row in batch:
                    fh.write(json.dumps(row) + "\n")
                n += len(batch)
        return n
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"INTEGER": pa.int64(), "REAL": pa.float64(), "TEXT": pa.string()}
    schema = pa.schema(
        [pa.field(name, types[kind.split()[0]]) for name, kind in EXAMPLE_COLUMNS]
        + [pa.field("label", pa.string()), pa.field("label_source", pa.string())]
        + ([pa.field("sample_weight", pa.float64())] if weights is not None else []),
        # what the file's surrogate-labelled rows are promised, and what is not
        metadata={
            "foundry.guarantee": guarantee or "",
            "foundry.bound_column": (
                "bound: the Clopper-Pearson estimate at the certificate's threshold (an "
                "estimate, not the promise)"
            ),
        },
    )
    with pq.ParquetWriter(out, schema) as writer:
        for batch in iter_export_rows(ledger, decisions=decisions, weights=weights):
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            n += len(batch)
        if n == 0:
            writer.write_table(schema.empty_table())
    return n


def guarantee_text(config: dict[str, Any]) -> str | None:
    """What a run promises about its surrogate-released examples, in one sentence."""
    alpha, delta = config.get("alpha"), config.get("delta")
    if alpha is None or delta is None:
        return None
    if config.get("policy") == "fixed_band":
        return "no guarantee: the fixed_band policy releases on unaudited fixed risk levels"
    return (
        f"among the examples released on the surrogate's word, in every slice, the error "
        f"rate is <= alpha = {alpha} with confidence 1 - delta = {1 - delta:g}"
    )


def release_weighted(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per slice: what the surrogate released and rejected, under how many certificates, and
    the Clopper-Pearson estimates of those certificates weighted by the rows each decided.

    The estimates are estimates (the bound at a threshold chosen from the data); what is
    guaranteed is alpha. Reported as the certificates the rows were released under, not the
    latest calibration, which may have decided nothing.
    """
    out: dict[str, dict[str, Any]] = {}
    for g in groups:
        entry = out.setdefault(
            g["slice"],
            {
                "accepted": 0,
                "rejected": 0,
                "certificates": set(),
                "surrogate_versions": set(),
                "_acc": [],
                "_rej": [],
            },
        )
        kind = "accepted" if g["decision"] == "accepted" else "rejected"
        entry[kind] += g["n"]
        if g["certificate"] is not None:
            entry["certificates"].add(g["certificate"])
        if g["surrogate_version"] is not None:
            entry["surrogate_versions"].add(g["surrogate_version"])
        bound = g["accept_bound"] if kind == "accepted" else g["reject_bound"]
        if bound is not None:
            entry["_acc" if kind == "accepted" else "_rej"].append((g["n"], bound))
    for entry in out.values():
        for key, pairs in (("accept", entry.pop("_acc")), ("reject", entry.pop("_rej"))):
            n = sum(k for k, _ in pairs)
            entry[f"{key}_estimate_weighted"] = sum(k * b for k, b in pairs) / n if n else None
            entry[f"{key}_estimate_max"] = max((b for _, b in pairs), default=None)
        entry["certificates"] = len(entry["certificates"])
        entry["surrogate_versions"] = sorted(entry["surrogate_versions"])
    return dict(sorted(out.items()))


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
        released = [
            dict(r)
            for r in ledger.db.execute(
                "SELECT COALESCE(e.slice, 'all') AS slice, e.decision AS decision, "
                "e.calibration_version AS certificate, COUNT(*) AS n, "
                "c.accept_bound AS accept_bound, c.reject_bound AS reject_bound, "
                "c.surrogate_version AS surrogate_version, c.accept_n AS accept_n, "
                "c.reject_n AS reject_n "
                "FROM examples e LEFT JOIN calibrations c ON c.version = e.calibration_version "
                "WHERE e.decided_by = 'surrogate' "
                "GROUP BY COALESCE(e.slice, 'all'), e.decision, e.calibration_version"
            )
        ]
        promotions = [
            dict(r)
            for r in ledger.db.execute(
                "SELECT t, message FROM events WHERE kind = 'promote' ORDER BY t"
            )
        ]
    finally:
        ledger.close()
    stats = meta.get("stats", {})
    champion = stats.get("champion")
    config = meta.get("config", {})
    alpha, delta = config.get("alpha"), config.get("delta")
    return {
        "run_dir": str(run_dir),
        "domain": meta.get("domain", {}).get("name"),
        "finished": meta.get("state", "finished" if "finished_at" in meta else "") == "finished",
        # running (or killed: a killed run stays "running"), interrupted, finished, failed
        "state": meta.get("state", "finished" if "finished_at" in meta else "running"),
        "stop_reason": meta.get("stop_reason") or stats.get("stop_reason", ""),
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
        "promotions": [p["message"] for p in promotions],
        "alpha": alpha,
        "delta": delta,
        "guarantee": guarantee_text(config),
        "released_by_slice": release_weighted(released),
        "certificates": len(calibrations),
        "events": dict(events),
        "recent_problems": last_events,
        **_monitor_last(monitor),
    }


def _monitor_last(monitor: list[Any]) -> dict[str, Any]:
    """The newest window figures and the newest closed generation's whole-run figures."""
    windows, generations = [], []
    for row in monitor:
        metrics = json.loads(row["metrics"])
        if metrics.get("kind") == "generation":
            if metrics.get("slice") == "__all__":
                generations.append(metrics)
        else:
            windows.append(metrics)
    return {
        "monitor_last": windows[-1] if windows else None,
        "generation_last": generations[-1] if generations else None,
        "generations_closed": len(generations),
    }
