"""Resuming a run from its ledger: after a kill, a Slurm requeue, or to extend the budget.

Nothing is kept outside the ledger and the model files, so a resume rebuilds the loop's state
from them: the seen set (every content id), the counters and steering committed with the rows,
the surrogate versions in play, each stratum's audits in submission order with the opinions
journalled when they were routed, the looks taken and the confidence they spent (never spent
again: looks go on from the last one), the labels, and the items still pending - sent again
with their audit flags, at the tier they were waiting for. Random numbers are a function of
(seed, stream, batch number), so the next batch is the one the uninterrupted run would have
made next.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foundry.config import RunConfig
from foundry.contract import FoundryError, Verdict
from foundry.ledger import Ledger
from foundry.loop.rows import candidate_of_row

if TYPE_CHECKING:
    from foundry.loop.book import Scored
    from foundry.loop.scheduler import Scheduler

#: config keys a resumed run may change: how and how long it runs, not what it certifies
RESUMABLE_KEYS = frozenset(
    {
        "budget", "executor", "n_workers", "progress", "run_dir", "resources", "max_pending",
        "chunk_size", "chunk_target_s", "check_timeout_s", "gt_max_attempts", "slurm",
        "generate_retries", "max_failure_share", "sandbox_paths", "pass_env", "isolation",
    }
)  # fmt: skip


class RunDirError(FoundryError):
    """The run directory holds a run that this invocation must not write into."""


def check_run_dir(ledger: Ledger, cfg: RunConfig, resume: bool) -> dict[str, Any] | None:
    """The meta of the run ``ledger`` holds (None: a new run), after checking that this
    invocation may go on with it: without ``resume`` only into an empty directory; with it,
    only with a compatible config."""
    meta = ledger.meta()
    if "config" not in meta:
        return None
    where = ledger.path.parent
    state = meta.get("state", "unknown")
    if not resume:
        if state == "finished":
            raise RunDirError(
                f"{where} holds a finished run; add --resume to extend it (with a larger "
                "budget), or choose a new --run-dir"
            )
        raise RunDirError(
            f"{where} holds an unfinished run (state: {state}); continue it with --resume, "
            "or choose a new --run-dir"
        )
    differ = incompatible_keys(meta["config"], cfg.model_dump(mode="json"))
    if differ:
        shown = ", ".join(
            f"{k} ({_short(meta['config'].get(k))} -> {_short(cfg.model_dump(mode='json').get(k))})"
            for k in differ
        )
        raise RunDirError(f"--resume: the config differs from the run's in {shown}")
    return meta


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def incompatible_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Config keys that differ and change what the run generates or certifies."""
    keys = (set(old) | set(new)) - RESUMABLE_KEYS
    return sorted(k for k in keys if old.get(k) != new.get(k))


# -- reading the ledger back ----------------------------------------------------------------
def _floats(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    return {k: (math.nan if v is None else float(v)) for k, v in json.loads(text).items()}


def _verdict(passed: Any, properties: Any, reason: Any, measurements: Any) -> Verdict:
    return Verdict(bool(passed), _floats(properties), reason or "", _floats(measurements))


def _row_verdict(row: Any) -> Verdict | None:
    if row["decided_by"] != "ground_truth" or row["gt_passed"] is None:
        return None
    return _verdict(row["gt_passed"], row["gt_properties"], row["gt_reason"],
                    row["gt_measurements"])  # fmt: skip


def _evidence(ledger: Ledger, top: str) -> dict[int, dict[str, Verdict]]:
    """Every cheaper tier's verdict per seq (fidelity ladder runs)."""
    out: dict[int, dict[str, Verdict]] = {}
    for r in ledger.db.execute(
        "SELECT seq, fidelity, passed, properties, reason, measurements FROM verifications "
        "WHERE fidelity != ? AND passed IS NOT NULL",
        (top,),
    ):
        out.setdefault(r[0], {})[r[1]] = _verdict(r[2], r[3], r[4], r[5])
    return out


def _tiers_done(ledger: Ledger) -> dict[int, set[str]]:
    """Fidelities that have a final result (verdict or failure) per seq."""
    out: dict[int, set[str]] = {}
    for seq, fidelity in ledger.db.execute("SELECT seq, fidelity FROM verifications"):
        out.setdefault(seq, set()).add(fidelity)
    return out


def _load_models(
    ledger: Ledger, model_dir: Path, versions: Iterable[int | None]
) -> dict[int, tuple[Any, int]]:
    """The saved models of ``versions`` that the ledger knows, with their label counts; a
    version whose file is missing or unreadable is left out (and said so)."""
    n_labels = {r["version"]: r["n_labels"] for r in ledger.table("surrogates")}
    out: dict[int, tuple[Any, int]] = {}
    for version in versions:
        if version is None or version not in n_labels:
            continue
        path = model_dir / f"v{version}.pkl"
        try:
            with path.open("rb") as fh:
                out[version] = (pickle.load(fh), int(n_labels[version]))
        except Exception as exc:
            ledger.event("warning", "resume", f"surrogate v{version} not restored: {exc}")
    return out


def restore_run(s: Scheduler) -> None:
    """Put a freshly built scheduler into the state its run dir's ledger was committed in."""
    from foundry.loop.book import Scored
    from foundry.loop.dispatch import PendingItem
    from foundry.loop.rows import LADDER_ROUTE

    ledger = s.ledger
    meta = s.previous or {}
    progress = meta.get("progress", {})
    stats = s.stats

    # intake: counters, steering, the seen set (seqs continue from the ledger's largest)
    s.intake.batches = int(progress.get("batches", 0))
    if progress.get("steering") is not None and s.intake.external is None:
        s.intake.set_steering(progress["steering"])
    if s.generations is not None and progress.get("generations") is not None:
        from foundry.loop.generations import GenerationState

        s.generations.state = GenerationState.from_dict(progress["generations"])
        s.intake.new_regime()
    s.compute.restore(meta.get("compute", {}))
    s.intake.regimes = {**meta.get("regimes", {}), **s.intake.regimes}
    ledger.set_meta("regimes", s.intake.regimes)
    stats.generated = int(progress.get("generated", 0))
    stats.duplicates = int(progress.get("duplicates", 0))
    stats.invalid = int(progress.get("invalid", 0))
    s.intake.seen.update(cid for (cid,) in ledger.db.execute("SELECT content_id FROM examples"))

    ladder = len(s.verifiers) > 1
    top = s.verifier.fidelity or "ground-truth"
    evidence = _evidence(ledger, top) if ladder else {}

    # labels (seq order), counters, audits and pending items, in one pass over the rows
    audits: list[tuple[int, str, str, Verdict | None, bool]] = []
    pending: list[Any] = []
    for rows in ledger.iter_rows("decision != 'invalid'"):
        for row in rows:
            decision, by = row["decision"], row["decided_by"]
            if decision == "pending":
                pending.append(row)
            elif by == "ground_truth" or decision == "failed":
                stats.gt_walltime_s += row["walltime_s"] or 0.0
                stats.gt_calls += 1
            verdict = _row_verdict(row)
            if verdict is not None:
                cand = candidate_of_row(row)
                cand.evidence.update(evidence.get(row["seq"], {}))
                s.trainer.labels.append((cand, verdict))
            if decision == "accepted":
                stats.accepted += 1
                stats.surrogate_accepted += by == "surrogate"
            elif decision == "rejected":
                stats.rejected += 1
                stats.surrogate_rejected += by == "surrogate"
            elif decision == "failed":
                stats.failed += 1
            elif decision == "deferred":
                stats.deferred += 1
            if row["audit"]:
                resolved = decision != "pending"
                stats.audits += resolved
                audits.append(
                    (row["seq"], row["generator_hash"], row["slice"] or "all", verdict, resolved)
                )

    # the book: versions in play, strata rebuilt from journalled opinions, looks taken
    book_state = meta.get("book", {})
    models = _load_models(
        ledger, s.run_dir / "surrogates", (book_state.get("champion"), book_state.get("challenger"))
    )
    opinions: dict[int, list[Scored]] = {}
    for seq, version, acc, rej, p_pass, predicted in ledger.db.execute(
        "SELECT seq, surrogate_version, accept_risk, reject_risk, p_pass, predicted "
        "FROM audit_opinions ORDER BY seq, surrogate_version"
    ):
        opinions.setdefault(seq, []).append(
            Scored(version, _nan(acc), _nan(rej), p_pass, _floats(predicted))
        )
    s.book.restore(book_state, models, audits, opinions, ledger.table("calibrations"))
    s.stats.surrogate_versions = s.book.n_versions
    s.trainer.labels_at_fit = s.trainer.labels_at_taken = int(progress.get("labels_at_fit", 0))

    # pending items go out again, at the tier they were waiting for
    done = _tiers_done(ledger) if ladder else {}
    fidelities = [v.fidelity or "ground-truth" for v in s.verifiers]
    for row in pending:
        cand = candidate_of_row(row)
        cand.evidence.update(evidence.get(row["seq"], {}))
        common = dict(regime=row["generator_hash"], slice=row["slice"] or "all",
                      batch=int(row["batch"] or 0), text=row["payload"])  # fmt: skip
        if row["route"] == LADDER_ROUTE:
            finished = done.get(row["seq"], set())
            tier = next((i for i, f in enumerate(fidelities[:-1]) if f not in finished),
                        len(fidelities) - 1)  # fmt: skip
            item = PendingItem(cand, False, LADDER_ROUTE, [], tier=tier,
                               audit_draw=float(row["audit_draw"]), **common)  # fmt: skip
            if tier == len(fidelities) - 1:
                s._ready[row["seq"]] = item
            else:
                s.dispatcher.add(row["seq"], item)
        else:
            item = PendingItem(cand, bool(row["audit"]), row["route"], [],
                               tier=len(fidelities) - 1, **common)  # fmt: skip
            s.dispatcher.add(row["seq"], item)
    ledger.event(
        "info",
        "resume",
        f"resumed at batch {s.intake.batches}: {stats.generated} generated, "
        f"{len(pending)} pending sent again, {len(s.trainer.labels)} labels, "
        f"{len(audits)} audits, surrogate versions {sorted(s.book.slots)}",
    )


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
