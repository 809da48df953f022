"""``foundry replay RUN``: what a run would have released under other settings, from the
labels it bought - without running a single simulation.

The replay re-executes the run with the real :class:`~foundry.loop.Scheduler` (so routing,
looks, promotion and refits are the code that made the run, not a re-implementation), in a
scratch run directory, with the run's stored config changed only in ``alpha``,
``audit_rate`` and ``max_item_risk``, and with its domain wrapped so that every tier of the
ground truth is a :class:`LedgerGroundTruth`: the stored verdict (or the stored failure) of
the candidate with that content id. Where the counterfactual asks for a label the run never
bought, no label is invented: the item becomes a recorded failure ("replay: label never
bought"), and the report says how many there were and from which item on the replay is no
longer exact. Surrogates are refit as in the run (CPU, no simulation). With the original
settings a ``deterministic = true`` run is reproduced row for row; without it, the run's
decisions depended on when results arrived and the replay is an approximation.

The original run directory is only ever read (SQLite ``mode=ro``); nothing is written there.
This is the one module of :mod:`foundry.ledger` that uses the loop (imported when a replay
starts, so the ledger package itself still knows no loop): a replay is a run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import secrets
import shutil
import sqlite3
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foundry.contract import (
    Candidate,
    Domain,
    FoundryError,
    GroundTruth,
    SimulationFailed,
    Verdict,
    canonical_json,
    example_id,
)
from foundry.execution.outcomes import RETRYABLE
from foundry.execution.resources import Resources
from foundry.ledger.lineage import connect_read_only, read_meta

if TYPE_CHECKING:
    from pydantic import ValidationError

    from foundry.config import RunConfig

#: reason of the failure a replay records where the run bought no label
NEVER_BOUGHT = "replay: label never bought"
#: the settings a replay may change, as RunConfig field names
SETTINGS = ("alpha", "audit_rate", "max_item_risk")
#: stop reasons that depend on the clock or on the operator, not on the run's decisions: the
#: replay stops after as many candidates instead
_TIMED_STOPS = ("wall time", "interrupted")


class LabelNeverBought(SimulationFailed):
    """The counterfactual needs a ground-truth label the run never paid for."""


class ReplayedFailure(FoundryError):
    """A failure the run recorded (timeout, plugin error, ...), replayed as a non-retried
    failure: the replay cannot hang or crash the way the run's verifier did."""


# -- answering ground truth from the ledger ----------------------------------------------------


class LedgerAnswers:
    """The run's ground-truth results by content id, for every tier, read-only.

    Shared by every :class:`LedgerGroundTruth` of a replay (the scheduler's verifier specs
    and the in-process worker build their own instances); counts what it answered and which
    labels it did not have.
    """

    def __init__(self, run_dir: Path, domain_name: str, identity: Any, top: str | None) -> None:
        self.run_dir = run_dir
        self.db = connect_read_only(run_dir / "ledger.sqlite")
        self.domain_name = domain_name
        self.identity = identity
        #: the top tier's fidelity (None: the domain's default); its results are the rows'
        self.top = top
        self.lock = threading.Lock()
        #: ground-truth calls answered, by fidelity (every attempt counts, as in the run)
        self.calls: dict[str, int] = {}
        #: content id -> fidelity, of every item whose label the run never bought (in order)
        self.unbought: dict[str, str] = {}
        #: calls that asked for a label the run never bought (retried like a non-converged
        #: run, so an item may ask more than once)
        self.unbought_calls = 0
        #: content ids of candidates the run never saw whose rule check was not re-run
        #: (untrusted domains: their check parses hostile input)
        self.unchecked: list[str] = []
        self._tries: dict[str, int] = {}
        indexed = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = 'examples' "
            "AND sql LIKE '%(content_id)%'"
        ).fetchone()
        #: without the content-id index (a killed run), one scan instead of one per lookup
        self._seq_of: dict[str, int] | None = None
        if indexed is None:
            self._seq_of = dict(self.db.execute("SELECT content_id, seq FROM examples"))

    def close(self) -> None:
        self.db.close()

    def content_id(self, candidate: Candidate) -> str:
        """As the intake computes it (it has normally set ``candidate.id`` already)."""
        if candidate.id:
            return candidate.id
        return example_id(
            self.domain_name, candidate.payload, canonical_json(candidate.payload), self.identity
        )

    def row(self, cid: str) -> sqlite3.Row | None:
        if self._seq_of is not None:
            seq = self._seq_of.get(cid)
            if seq is None:
                return None
            return self.db.execute("SELECT * FROM examples WHERE seq = ?", (seq,)).fetchone()
        return self.db.execute("SELECT * FROM examples WHERE content_id = ?", (cid,)).fetchone()

    def check(self, candidate: Candidate) -> tuple[bool, str | None]:
        """(whether the run saw the candidate, its rule-check answer there: None when fine,
        else the reason)."""
        with self.lock:
            row = self.row(self.content_id(candidate))
        if row is None:
            return False, None
        return True, None if row["rule_ok"] else (row["rule_reason"] or "invalid in the run")

    def answer(self, candidate: Candidate, fidelity: str | None) -> Verdict:
        """The stored verdict of ``candidate`` at ``fidelity``; raises the stored failure, or
        :class:`LabelNeverBought`."""
        with self.lock:
            tier = fidelity or "ground-truth"
            self.calls[tier] = self.calls.get(tier, 0) + 1
            cid = self.content_id(candidate)
            row = self.row(cid)
            if fidelity == self.top:
                return self._top(cid, row, tier)
            return self._lower(cid, row, tier)

    def _never_bought(self, cid: str, tier: str) -> LabelNeverBought:
        self.unbought.setdefault(cid, tier)
        self.unbought_calls += 1
        return LabelNeverBought(f"{NEVER_BOUGHT} ({tier})")

    def _top(self, cid: str, row: sqlite3.Row | None, tier: str) -> Verdict:
        if row is None or (row["decided_by"] != "ground_truth" and row["failure_kind"] is None):
            raise self._never_bought(cid, tier)
        tries = self._tries[cid] = self._tries.get(cid, 0) + 1
        if row["failure_kind"] is not None:
            raise _failure(row["failure_kind"], row["error"])
        if tries < (row["attempts"] or 1):  # the run's first attempts failed and were retried
            raise SimulationFailed(f"replay: attempt {tries} failed in the run and was retried")
        return Verdict(
            passed=bool(row["gt_passed"]),
            properties=_floats(row["gt_properties"]),
            reason=row["gt_reason"] or "",
            measurements=_floats(row["gt_measurements"]),
        )

    def _lower(self, cid: str, row: sqlite3.Row | None, tier: str) -> Verdict:
        found = None
        if row is not None:
            found = self.db.execute(
                "SELECT * FROM verifications WHERE seq = ? AND fidelity = ? "
                "ORDER BY created_at DESC LIMIT 1",
                (row["seq"], tier),
            ).fetchone()
        if found is None:
            raise self._never_bought(cid, tier)
        if found["failure_kind"] is not None:
            raise _failure(found["failure_kind"], found["error"])
        return Verdict(
            passed=bool(found["passed"]),
            properties=_floats(found["properties"]),
            reason=found["reason"] or "",
            measurements=_floats(found["measurements"]),
        )


def _floats(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    return {k: float(v) for k, v in json.loads(text).items() if v is not None}


def _failure(kind: str, error: str | None) -> FoundryError:
    """The run's failure again: retried as the run retried it (crash, non-convergence),
    otherwise final at once; the message keeps the run's kind and error."""
    message = f"replay: the run recorded {kind}: {error or ''}".rstrip(": ")
    return SimulationFailed(message) if kind in RETRYABLE else ReplayedFailure(message)


class LedgerGroundTruth(GroundTruth):
    """A ground truth that answers from a finished run's ledger and never simulates."""

    name = "ledger"

    def __init__(self, answers: LedgerAnswers, fidelity: str | None, resources: Resources):
        self.answers = answers
        self.fidelity = fidelity
        self.resources = resources

    @property
    def version(self) -> str:
        return f"replay of {self.answers.run_dir}"

    def prepare(self, candidate: Candidate) -> Candidate:
        return candidate

    def execute(self, job: Candidate, workdir: str) -> Verdict:
        return self.answers.answer(job, self.fidelity)

    def parse(self, raw: Verdict, candidate: Candidate) -> Verdict:
        return raw


def _replay_domain_class(inner: type[Domain], answers: LedgerAnswers) -> type[Domain]:
    """A subclass of the run's domain whose ground truth (every tier) and rule check answer
    from the ledger; everything else - generator, surrogate, slices, identity, declared
    capabilities - is the domain's own.

    A subclass rather than a proxy, because the execution plane rebuilds the domain from
    ``module:qualname`` (``dispatch.domain_spec``) in its host: the class is published as an
    attribute of this module for the replay's lifetime, and the replay runs its verifier in
    this process (``executor = "inline"``, ``isolation = "none"``), so the host finds it.
    Its rule check is not guarded (``untrusted_check = False``): the run's answers are in
    the ledger, and a candidate the run never saw is not checked in-process when the domain
    declares its check unsafe - it is made invalid and counted instead.
    """
    untrusted = inner.untrusted_check

    def ground_truth(self: Domain, fidelity: str | None = None) -> GroundTruth:
        try:
            declared = inner.ground_truth(self, fidelity)
            try:
                resources = dataclasses.replace(declared.resources, isolation="none")
            finally:
                declared.close()
        except Exception:  # the run's tool need not be installed where the replay runs
            resources = Resources()
        return LedgerGroundTruth(answers, fidelity, resources)

    def check(self: Domain, candidate: Candidate) -> str | None:
        seen, reason = answers.check(candidate)
        if seen:
            return reason
        if untrusted:
            answers.unchecked.append(answers.content_id(candidate))
            return "replay: not in the run's ledger, and the domain's rule check is untrusted"
        return inner.check(self, candidate)

    name = f"_ReplayDomain_{secrets.token_hex(6)}"
    cls = type(
        name,
        (inner,),
        {
            "ground_truth": ground_truth,
            "check": check,
            "untrusted_check": False,
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"{inner.__name__}, answered from the ledger of {answers.run_dir}",
        },
    )
    return cls


@contextlib.contextmanager
def _published(cls: type) -> Iterator[None]:
    """Make ``cls`` importable as ``foundry.ledger.replay:<name>`` while the replay runs."""
    module = sys.modules[__name__]
    setattr(module, cls.__name__, cls)
    try:
        yield
    finally:
        with contextlib.suppress(AttributeError):
            delattr(module, cls.__name__)


# -- the result ----------------------------------------------------------------------------------


@dataclass
class ReplayResult:
    """What the replay released against what the run released, and how far to trust it."""

    run_dir: str
    #: the scratch run dir, when kept (``out_dir``); None when it was a deleted temp dir
    out_dir: str | None
    original_settings: dict[str, float]
    settings: dict[str, float]
    #: the run's ``deterministic``, and whether it ran in-process (``executor = "inline"``,
    #: where results arrive in a fixed order): either makes its decisions timing-free
    deterministic: bool
    in_process: bool
    #: rows (seq, content_id, decision, decided_by) identical to the run's, in seq order
    identical: bool
    rows_original: int
    rows_replay: int
    #: content ids in both whose decision or decided_by differ, and rows only in one of them
    changed: int
    only_in_original: int
    only_in_replay: int
    #: counts of accepted/rejected by surrogate and ground truth, failed, deferred, ...
    counts_original: dict[str, int]
    counts_replay: dict[str, int]
    released_only_in_replay: list[str]
    released_only_in_original: list[str]
    #: items whose label the run never bought (each became a "label never bought" failure)
    unbought: int
    unbought_by_fidelity: dict[str, int]
    #: the replay's seq of the first such item: decisions after it are not exact
    first_unbought_seq: int | None
    #: candidates the run never saw whose (untrusted) rule check was not re-run
    unchecked: int
    #: ground-truth calls the ledger answered, by fidelity (no simulation ran), and how many
    #: of them asked for a label never bought
    ledger_answers: dict[str, int]
    unbought_calls: int
    #: the final champion's last certificate per (regime, slice), run and replay
    certificates_original: list[dict[str, Any]]
    certificates_replay: list[dict[str, Any]]
    #: the largest Clopper-Pearson estimate in force at the end (an estimate, not the promise)
    bound_original: float | None
    bound_replay: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Whether the replay is the counterfactual run itself, not an approximation of it:
        the run's decisions did not depend on timing, and every label it needed was bought."""
        timing_free = self.deterministic or self.in_process
        return timing_free and self.unbought == 0 and self.unchecked == 0

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "exact": self.exact}


# -- running it ----------------------------------------------------------------------------------


def _load_config(meta: dict[str, Any], run_dir: Path) -> RunConfig:
    from pydantic import ValidationError

    from foundry.config import RunConfig

    stored = meta.get("config")
    if not isinstance(stored, dict):
        raise FoundryError(f"{run_dir} holds no run config (meta 'config'); nothing to replay")
    try:
        return RunConfig.model_validate(stored)
    except ValidationError as exc:
        raise FoundryError(
            f"the config of {run_dir} does not validate with this foundry "
            f"({_first_error(exc)}); replay it with the foundry that made it"
        ) from None


def _first_error(exc: ValidationError) -> str:
    """A pydantic ValidationError in one line: where, and what."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "config"
    got = first.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{where}: {first.get('msg', 'invalid')}{shown}"


def _inside(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _scratch_dir(run_dir: Path, out_dir: Path | None) -> tuple[Path, bool]:
    """Where the replay writes (never in the original run dir), and whether it is kept."""
    original = run_dir.resolve()
    if out_dir is None:
        return Path(tempfile.mkdtemp(prefix="foundry-replay-")), False
    out = Path(out_dir).resolve()
    if _inside(out, original):
        raise FoundryError(
            f"--out {out_dir} is inside the run dir {run_dir}; a replay never writes there"
        )
    if (out / "ledger.sqlite").exists():
        raise FoundryError(f"--out {out_dir} already holds a run; choose an empty directory")
    return out, True


def _external_stream(db: sqlite3.Connection) -> Iterator[list[Candidate]]:
    """The run's external candidates (``foundry verify``, a ``candidates=`` stream) again,
    batch by batch as the run took them in (an empty list for a batch that held only
    duplicates), with their ids, provenance and input lines."""
    last = db.execute("SELECT MAX(batch) FROM examples").fetchone()[0] or 0
    for number in range(1, last + 1):
        rows = db.execute(
            "SELECT content_id, payload, source, generation, parent_ids, input_line "
            "FROM examples WHERE batch = ? ORDER BY seq",
            (number,),
        ).fetchall()
        out = []
        for r in rows:
            parents = json.loads(r["parent_ids"] or "[]")
            out.append(
                Candidate(
                    json.loads(r["payload"]),
                    source=r["source"],
                    generation=max(int(r["generation"]), 0),
                    parent_ids=tuple(p for p in parents if isinstance(p, str)),
                    id=r["content_id"],
                    input_line=r["input_line"],
                )
            )
        yield out


def _stream_of(db: sqlite3.Connection) -> tuple[bool, str | None]:
    """(whether the run read an external stream, its stream id)."""
    hashes = [
        r[0]
        for r in db.execute(
            "SELECT DISTINCT generator_hash FROM examples WHERE generator_hash = 'external' "
            "OR generator_hash LIKE 'input:%'"
        )
    ]
    if not hashes:
        return False, None
    if len(hashes) > 1:
        raise FoundryError(f"the run read {len(hashes)} input streams; cannot replay it")
    if db.execute("SELECT COUNT(*) FROM examples WHERE batch IS NULL").fetchone()[0]:
        raise FoundryError("the run's rows carry no batch numbers; cannot replay its input")
    return True, (hashes[0].partition(":")[2] or None) if hashes[0] != "external" else None


def _rows(db: sqlite3.Connection) -> list[tuple[int, str, str, str | None]]:
    return [
        tuple(r)
        for r in db.execute(
            "SELECT seq, content_id, decision, decided_by FROM examples ORDER BY seq"
        )
    ]


def _counts(rows: list[tuple[int, str, str, str | None]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _seq, _cid, decision, by in rows:
        key = f"{decision}_by_{by}" if decision in ("accepted", "rejected") and by else decision
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def _certificates(db: sqlite3.Connection, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The final champion's last certificate in each stratum: what was in force at the end."""
    champion = (meta.get("book") or {}).get("champion")
    if champion is None:
        return []
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for r in db.execute(
        "SELECT * FROM calibrations WHERE surrogate_version = ? ORDER BY version", (champion,)
    ):
        last[(r["regime"], r["slice"])] = {
            k: r[k]
            for k in (
                "version", "surrogate_version", "regime", "slice", "look", "audits_used",
                "accept_threshold", "accept_bound", "reject_threshold", "reject_bound",
                "alpha", "delta_spent",
            )
        }  # fmt: skip
    return [last[k] for k in sorted(last)]


def _max_bound(certs: list[dict[str, Any]]) -> float | None:
    bounds = [
        c["accept_bound"]
        for c in certs
        if c["accept_threshold"] is not None and c["accept_bound"] is not None
    ]
    return max(bounds) if bounds else None


def _installed_challenger(db: sqlite3.Connection, run_dir: Path) -> Any:
    """A surrogate the run was given rather than trained (``verify --surrogate-from``): its
    version 1 with no labels. Loaded from the run's model file, read-only."""
    import pickle

    row = db.execute("SELECT n_labels FROM surrogates WHERE version = 1").fetchone()
    if row is None or row[0] != 0:
        return None
    path = run_dir / "surrogates" / "v1.pkl"
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)
    except Exception as exc:
        raise FoundryError(
            f"the run was given surrogate v1 from outside and {path} cannot be read: {exc}"
        ) from None


def _replay_config(
    cfg: RunConfig,
    meta: dict[str, Any],
    generated: int,
    external: bool,
    changes: dict[str, float],
    scratch: Path,
    notes: list[str],
) -> RunConfig:
    """The run's config with only the settings changed, run in-process in ``scratch``, and
    stopped by candidates rather than the clock: never beyond the candidates the run made
    (past them every label would be one the run never bought, and a budget such as
    ``target_accepted`` might never be reached)."""
    from pydantic import ValidationError

    from foundry.config import RunConfig

    budget = cfg.budget.model_dump()
    budget["walltime_s"] = None
    capped = budget["max_candidates"] is None or budget["max_candidates"] > generated
    if generated and capped and not external:  # an external stream ends where the run's did
        budget["max_candidates"] = generated
    state, stop_reason = meta.get("state"), str(meta.get("stop_reason") or "")
    if state == "running":
        notes.append(
            f"the run is still running, or was killed: the replay covers its first {generated} "
            "candidates, and items it left pending count as labels never bought"
        )
    elif state != "finished" or stop_reason.startswith(_TIMED_STOPS):
        notes.append(
            f"the run ended {state} ('{stop_reason}'); the replay stops after the same "
            f"{generated} candidates"
        )
    if not cfg.deterministic and cfg.executor != "inline":
        notes.append(
            "the run was not deterministic (deterministic = false): its decisions depended on "
            "when results arrived; the replay folds each result in at once, so it approximates "
            "the run"
        )
    if cfg.budget.max_ground_truth_calls is not None and cfg.executor != "inline":
        notes.append(
            "a max_ground_truth_calls budget counts queued items, which depends on the "
            "executor: the replay may stop at a different item"
        )
    if meta.get("resumed_at") and meta.get("state") == "finished":
        notes.append(
            "the run was resumed; a resume that extended a finished run's budget is replayed "
            "as one uninterrupted run"
        )
    try:
        return RunConfig.model_validate(
            {
                **cfg.model_dump(),
                **changes,
                "run_dir": scratch,
                "executor": "inline",
                "isolation": "none",
                "progress": False,
                "budget": budget,
            }
        )
    except ValidationError as exc:
        raise FoundryError(f"replay settings: {_first_error(exc)}") from None


def replay(
    run_dir: Path,
    *,
    alpha: float | None = None,
    audit_rate: float | None = None,
    max_item_risk: float | None = None,
    out_dir: Path | None = None,
    domain: Domain | None = None,
) -> ReplayResult:
    """Re-run ``run_dir``'s run from its own labels with the settings given (None: the
    run's), in ``out_dir`` (default: a temporary directory, deleted afterwards).

    ``domain``: the domain object the run was made with, when its config cannot load it (a
    run started from a program with a domain object of its own)."""
    from foundry.loop import Scheduler
    from foundry.loop.dispatch import ladder_of
    from foundry.registry import load_domain

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FoundryError(f"no run dir {run_dir}")
    db = connect_read_only(run_dir / "ledger.sqlite")
    try:
        meta = read_meta(db)
        cfg = _load_config(meta, run_dir)
        external, stream_id = _stream_of(db)
        challenger = _installed_challenger(db, run_dir)
        original_rows = _rows(db)
        certificates_original = _certificates(db, meta)
    finally:
        db.close()
    notes: list[str] = []
    original = {k: float(getattr(cfg, k)) for k in SETTINGS}
    wanted = {"alpha": alpha, "audit_rate": audit_rate, "max_item_risk": max_item_risk}
    changes = {k: v for k, v in wanted.items() if v is not None}
    if domain is None:
        domain = load_domain(cfg.domain, cfg.allowed_domains, cfg.domain_options)
    described = meta.get("domain") or {}
    if described.get("name") not in (None, domain.name):
        raise FoundryError(
            f"the run's domain is {described.get('name')!r} but its config loads "
            f"{domain.name!r}; pass the run's domain object to replay()"
        )
    if described.get("version") not in (None, domain.version):
        notes.append(
            f"the run was made with {domain.name} {described.get('version')}; this is "
            f"{domain.version}: generator and surrogate may differ"
        )
    scratch, keep = _scratch_dir(run_dir, out_dir)
    answers: LedgerAnswers | None = None
    try:
        generated = _generated(meta, original_rows)
        config = _replay_config(cfg, meta, generated, external, changes, scratch, notes)
        answers = LedgerAnswers(run_dir, domain.name, _identity(domain), ladder_of(cfg, domain)[-1])
        cls = _replay_domain_class(type(domain), answers)
        options = getattr(domain, "options", None)
        try:
            wrapped = cls(options=options) if cls.Options is not None else cls()
        except TypeError as exc:
            raise FoundryError(f"cannot rebuild the domain {domain.name!r}: {exc}") from None
        with _published(cls):
            scheduler = Scheduler(
                config,
                wrapped,
                candidates=_external_stream(answers.db) if external else None,
                stream_id=stream_id,
                handle_signals=False,
            )
            if challenger is not None:
                scheduler.add_challenger(challenger)
            stats = scheduler.run()
        replay_db = connect_read_only(scratch / "ledger.sqlite")
        try:
            replay_rows = _rows(replay_db)
            certificates_replay = _certificates(replay_db, read_meta(replay_db))
        finally:
            replay_db.close()
        stops = (str(meta.get("stop_reason") or ""), stats.stop_reason)
        if stops[0] != stops[1] and meta.get("state") == "finished":
            notes.append(f"the run stopped on '{stops[0]}', the replay on '{stops[1]}'")
        return _compare(
            run_dir, scratch if keep else None, original, {**original, **changes},
            cfg.deterministic, cfg.executor == "inline", original_rows, replay_rows, answers,
            certificates_original, certificates_replay, notes,
        )  # fmt: skip
    finally:
        if answers is not None:
            answers.close()
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def _generated(meta: dict[str, Any], rows: list[tuple[int, str, str, str | None]]) -> int:
    """Candidates the run made: its committed count, or - where a kill left rows committed
    after the count - its rows plus the duplicates it dropped."""
    progress = meta.get("progress") or {}
    return max(int(progress.get("generated", 0)), len(rows) + int(progress.get("duplicates", 0)))


def _identity(domain: Domain) -> Any:
    return None if type(domain).identity is Domain.identity else domain.identity


def _compare(
    run_dir: Path,
    out_dir: Path | None,
    original: dict[str, float],
    settings: dict[str, float],
    deterministic: bool,
    in_process: bool,
    original_rows: list[tuple[int, str, str, str | None]],
    replay_rows: list[tuple[int, str, str, str | None]],
    answers: LedgerAnswers,
    certificates_original: list[dict[str, Any]],
    certificates_replay: list[dict[str, Any]],
    notes: list[str],
) -> ReplayResult:
    before = {cid: (decision, by) for _seq, cid, decision, by in original_rows}
    after = {cid: (decision, by) for _seq, cid, decision, by in replay_rows}
    released_before = {cid for cid, (d, _by) in before.items() if d == "accepted"}
    released_after = {cid for cid, (d, _by) in after.items() if d == "accepted"}
    seq_of = {cid: seq for seq, cid, _d, _by in replay_rows}
    unbought_seqs = [seq_of[c] for c in answers.unbought if c in seq_of]
    by_fidelity: dict[str, int] = {}
    for tier in answers.unbought.values():
        by_fidelity[tier] = by_fidelity.get(tier, 0) + 1
    first = min(unbought_seqs) if unbought_seqs else None
    if answers.unbought:
        notes.insert(
            0,
            f"{len(answers.unbought)} items would have needed ground truth the run never "
            f"bought; decisions after the first such item (#{first}) are not exact",
        )
    if answers.unchecked:
        notes.insert(
            0,
            f"{len(answers.unchecked)} candidates the run never saw were not rule-checked "
            "(the domain's check is untrusted) and count as invalid",
        )
    return ReplayResult(
        run_dir=str(run_dir),
        out_dir=str(out_dir) if out_dir is not None else None,
        original_settings=original,
        settings=settings,
        deterministic=deterministic,
        in_process=in_process,
        identical=original_rows == replay_rows,
        rows_original=len(original_rows),
        rows_replay=len(replay_rows),
        changed=sum(1 for cid, d in after.items() if cid in before and before[cid] != d),
        only_in_original=len(before.keys() - after.keys()),
        only_in_replay=len(after.keys() - before.keys()),
        counts_original=_counts(original_rows),
        counts_replay=_counts(replay_rows),
        released_only_in_replay=sorted(released_after - released_before),
        released_only_in_original=sorted(released_before - released_after),
        unbought=len(answers.unbought),
        unbought_by_fidelity=by_fidelity,
        first_unbought_seq=first,
        unchecked=len(answers.unchecked),
        ledger_answers=dict(answers.calls),
        unbought_calls=answers.unbought_calls,
        certificates_original=certificates_original,
        certificates_replay=certificates_replay,
        bound_original=_max_bound(certificates_original),
        bound_replay=_max_bound(certificates_replay),
        notes=notes,
    )


# -- text and command line ----------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.4g}"


def _routes(c: dict[str, Any] | None) -> str:
    """A certificate's two routes: the threshold where certified, and the estimate."""
    if c is None:
        return "none"
    parts = []
    for route in ("accept", "reject"):
        threshold, bound = c[f"{route}_threshold"], c[f"{route}_bound"]
        if threshold is None:
            parts.append(f"{route} not certified")
        else:
            parts.append(f"{route} <= {_fmt(threshold)} (estimate {_fmt(bound)})")
    return f"v{c['surrogate_version']} look {c['look']} on {c['audits_used']} audits: " + (
        ", ".join(parts)
    )


def _difference(r: ReplayResult) -> str:
    if r.identical:
        return "rows identical to the run's"
    parts = [f"{r.changed} decisions changed"]
    if r.only_in_original:
        parts.append(f"{r.only_in_original} rows only in the run")
    if r.only_in_replay:
        parts.append(f"{r.only_in_replay} rows only in the replay")
    return ", ".join(parts)


def format_replay(r: ReplayResult, shown: int = 5) -> str:
    """The replay as text: settings, counts side by side, released-set difference, bounds,
    and what limits the replay's exactness."""
    changed = {k: (r.original_settings[k], v) for k, v in r.settings.items()}
    settings = ", ".join(
        f"{k} {a:g} -> {b:g}" if a != b else f"{k} {a:g}" for k, (a, b) in changed.items()
    )
    if r.exact:
        verdict = "exact (a timing-free run, and every label it needed was bought)"
    else:
        verdict = "approximate"
    lines = [
        f"replay of {r.run_dir}: {settings}",
        f"  replay is {verdict}; " + _difference(r),
        f"  {'':<28}{'run':>10}{'replay':>10}",
    ]
    for key in sorted(set(r.counts_original) | set(r.counts_replay)):
        lines.append(
            f"  {key:<28}{r.counts_original.get(key, 0):>10}{r.counts_replay.get(key, 0):>10}"
        )
    lines.append(f"  {'rows':<28}{r.rows_original:>10}{r.rows_replay:>10}")
    for label, ids in (
        ("released only in the replay", r.released_only_in_replay),
        ("released only in the run", r.released_only_in_original),
    ):
        more = f" (+{len(ids) - shown} more)" if len(ids) > shown else ""
        lines.append(f"  {label}: {len(ids)}  {' '.join(ids[:shown])}{more}".rstrip())
    lines.append(
        f"  largest estimate in force at the end: run {_fmt(r.bound_original)}, replay "
        f"{_fmt(r.bound_replay)} (the promise is alpha {r.settings['alpha']:g})"
    )
    before = {(c["regime"], c["slice"]): c for c in r.certificates_original}
    after = {(c["regime"], c["slice"]): c for c in r.certificates_replay}
    if before or after:
        lines.append("  certificates of the final champion, per slice and regime:")
    for key in sorted(set(before) | set(after)):
        lines.append(f"    {key[1]} in {key[0]}")
        lines.append(f"      run     {_routes(before.get(key))}")
        lines.append(f"      replay  {_routes(after.get(key))}")
    calls = sum(r.ledger_answers.values())
    lines.append(
        f"  ground truth: {calls - r.unbought_calls} calls answered from the ledger, "
        f"{r.unbought_calls} asked for labels never bought; none simulated"
    )
    lines.extend(f"  note: {n}" for n in r.notes)
    if r.out_dir:
        lines.append(f"  replay run dir: {r.out_dir}")
    return "\n".join(lines)


def cmd_replay(args: argparse.Namespace) -> int:
    result = replay(
        Path(args.run_dir),
        alpha=args.alpha,
        audit_rate=args.audit_rate,
        max_item_risk=args.max_item_risk,
        out_dir=Path(args.out) if args.out else None,
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        print(format_replay(result))
    return 0


def add_replay_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """``foundry replay RUN [--alpha A] [--audit-rate R] [--max-item-risk X] [--out DIR]
    [--json]`` on the CLI's subparsers."""
    p = sub.add_parser(
        "replay",
        help="what a run would have released under other settings, from its own labels",
    )
    p.add_argument("run_dir", nargs="?", default="runs/latest")
    p.add_argument("--alpha", type=float, help="target error rate (default: the run's)")
    p.add_argument("--audit-rate", type=float, help="share of surrogate-decided items audited")
    p.add_argument("--max-item-risk", type=float, help="largest own risk the surrogate decides")
    p.add_argument("--out", help="keep the replay's run dir here (default: a deleted temp dir)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)
    return p
