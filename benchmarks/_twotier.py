"""What the two-tier benchmarks share: runs of the real loop, the fresh ground-truth sample of
what the surrogate released, the pooled and per-slice error against the certificates, tables.

A domain's benchmark describes itself with a :class:`BenchDomain` (its name, known slices,
ground-truth check of one payload, tool name, target ratio) and calls :func:`run_case`,
:func:`draw`, :func:`fresh_check` and :func:`print_report`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import multiprocessing
import os
import re
import resource
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from foundry.calibration import accept_error
from foundry.config import load_config
from foundry.contract import Candidate, GroundTruth, PropertySpec, SimulationFailed, Verdict
from foundry.loop import RunStats, Scheduler

#: one warm ground truth per domain and process (the fresh check's pool reuses them)
_GROUND_TRUTHS: dict[str, GroundTruth] = {}


def top_tier_verdict(domain_class: str, payload: dict[str, Any]) -> Verdict | None:
    """The default ground truth's verdict on one payload, ``None`` when the tool failed.

    ``domain_class`` is ``module:Class``; bind it with ``functools.partial`` to get a
    :attr:`BenchDomain.verify` that crosses to a process pool."""
    gt = _GROUND_TRUTHS.get(domain_class)
    if gt is None:
        module, _, name = domain_class.partition(":")
        gt = _GROUND_TRUTHS[domain_class] = getattr(
            importlib.import_module(module), name
        )().ground_truth()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return gt.verify(Candidate(payload=payload), tmp)
    except SimulationFailed:
        return None


@dataclass(frozen=True)
class BenchDomain:
    """How a benchmark's domain is run and checked.

    ``verify``: a module-level function (it crosses to a process pool) giving the top tier's
    verdict on one payload, ``None`` when the tool failed. ``properties``: the specs an
    accepted item's prediction is judged by. ``tool``: the ground truth's name in the tables.
    """

    name: str
    verify: Callable[[dict[str, Any]], Verdict | None]
    properties: tuple[PropertySpec, ...]
    tool: str
    target_ratio: float
    slices: tuple[str, ...] = ()
    slice_kind: str = "slice"
    domain_options: dict[str, Any] = field(default_factory=dict)
    #: processes of the fresh check (a threaded ground truth may want fewer)
    fresh_processes: int | None = None
    #: how CPU seconds are counted: ``rusage`` (this process and its reaped descendants) or
    #: ``machine`` (busy time of the whole machine, from /proc/stat) for a ground truth whose
    #: processes are killed rather than reaped (a sandbox's), which rusage would miss
    cpu_clock: str = "rusage"


@dataclass
class SliceRelease:
    """What the surrogate released in one slice and the certificates it was released under."""

    name: str
    released: int = 0
    #: rejected on the surrogate's word (for context)
    rejected: int = 0
    certificates: int = 0
    #: release-weighted mean and max of those certificates' Clopper-Pearson estimates
    estimate_mean: float | None = None
    estimate_max: float | None = None
    #: the fresh re-simulated sample: size and errors
    sample: int = 0
    errors: int = 0


@dataclass
class VersionRow:
    version: int
    n_labels: int
    fit_s: float
    looks: int = 0
    #: slices in which one of its certificates made the accept / reject route usable
    accept_slices: int = 0
    reject_slices: int = 0
    promoted: str | None = None
    accepted: int = 0
    rejected: int = 0


@dataclass
class RunResult:
    label: str
    stats: RunStats
    cpu_s: float
    wall_s: float
    run_dir: Path
    certified: bool
    fit_s: float
    #: seq and slice of every surrogate-released (accepted) row
    released_seq: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    released_slice: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    slices: dict[str, SliceRelease] = field(default_factory=dict)
    versions: list[VersionRow] = field(default_factory=list)

    @property
    def per_cpu_s(self) -> float:
        return self.stats.accepted / self.cpu_s

    @property
    def n_released(self) -> int:
        return len(self.released_seq)


def _cpu_s() -> float:
    """CPU seconds of this process plus every reaped descendant."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores; not idle or waiting on I/O)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _slices_of(db: sqlite3.Connection) -> dict[str, SliceRelease]:
    """Per slice: released count and the certificates the rows were released under."""
    out: dict[str, SliceRelease] = {}
    groups = db.execute(
        "SELECT COALESCE(e.slice, '?'), e.calibration_version, COUNT(*), c.accept_bound "
        "FROM examples e LEFT JOIN calibrations c ON c.version = e.calibration_version "
        "WHERE e.decided_by = 'surrogate' AND e.decision = 'accepted' "
        "GROUP BY COALESCE(e.slice, '?'), e.calibration_version"
    ).fetchall()
    for name, n in db.execute(
        "SELECT COALESCE(slice, '?'), COUNT(*) FROM examples "
        "WHERE decided_by = 'surrogate' AND decision = 'rejected' GROUP BY 1"
    ):
        out.setdefault(name, SliceRelease(name)).rejected = n
    pairs: dict[str, list[tuple[int, float]]] = {}
    for name, cert, n, bound in groups:
        entry = out.setdefault(name, SliceRelease(name))
        entry.released += n
        if cert is not None and bound is not None:
            entry.certificates += 1
            pairs.setdefault(name, []).append((n, bound))
    for name, entry in out.items():
        got = pairs.get(name, [])
        if got:
            entry.estimate_mean = sum(n * b for n, b in got) / sum(n for n, _ in got)
            entry.estimate_max = max(b for _, b in got)
    return dict(sorted(out.items()))


_PROMOTE = re.compile(r"surrogate v(\d+) takes over: (.*)")


def _versions_of(db: sqlite3.Connection) -> list[VersionRow]:
    """Trained versions, their looks and certified slices, promotions and releases."""
    rows = {
        v: VersionRow(v, n_labels, fit_s)
        for v, n_labels, fit_s in db.execute(
            "SELECT version, n_labels, fit_s FROM surrogates ORDER BY version"
        )
    }
    for v, looks, acc, rej in db.execute(
        "SELECT surrogate_version, COUNT(*), "
        "COUNT(DISTINCT CASE WHEN accept_threshold IS NOT NULL THEN slice END), "
        "COUNT(DISTINCT CASE WHEN reject_threshold IS NOT NULL THEN slice END) "
        "FROM calibrations GROUP BY surrogate_version"
    ):
        if v in rows:
            rows[v].looks, rows[v].accept_slices, rows[v].reject_slices = looks, acc, rej
    for i, (message,) in enumerate(
        db.execute("SELECT message FROM events WHERE kind = 'promote' ORDER BY t, rowid"), 1
    ):
        m = _PROMOTE.match(message)
        if m and int(m.group(1)) in rows:
            rows[int(m.group(1))].promoted = f"#{i}: {m.group(2)}"
    for v, decision, n in db.execute(
        "SELECT COALESCE(c.surrogate_version, e.surrogate_version), e.decision, COUNT(*) "
        "FROM examples e LEFT JOIN calibrations c ON c.version = e.calibration_version "
        "WHERE e.decided_by = 'surrogate' GROUP BY 1, 2"
    ):
        if v in rows:
            if decision == "accepted":
                rows[v].accepted += n
            else:
                rows[v].rejected += n
    return list(rows.values())


def run_case(
    bench: BenchDomain, label: str, workdir: Path, n: int, seed: int, **overrides: Any
) -> RunResult:
    run_dir = workdir / label.replace(" ", "_")
    overrides.setdefault("domain_options", bench.domain_options)
    cfg = load_config(
        None,
        domain=bench.name,
        run_dir=str(run_dir),
        seed=seed,
        progress=False,
        budget={"max_candidates": n},
        **overrides,
    )
    print(f"[bench] {label}: {n:,} candidates ...", file=sys.stderr, flush=True)
    clock = machine_busy_s if bench.cpu_clock == "machine" else _cpu_s
    cpu0, wall0 = clock(), time.perf_counter()
    stats = Scheduler(cfg).run()  # the LocalCluster is closed (workers reaped) on return
    cpu, wall = clock() - cpu0, time.perf_counter() - wall0
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    try:
        rel = db.execute(
            "SELECT seq, COALESCE(slice, '?') FROM examples "
            "WHERE decided_by = 'surrogate' AND decision = 'accepted' ORDER BY seq"
        ).fetchall()
        fit_s = db.execute("SELECT COALESCE(SUM(fit_s), 0) FROM surrogates").fetchone()[0]
        slices = _slices_of(db)
        if cfg.surrogate:
            for name in bench.slices:
                slices.setdefault(name, SliceRelease(name))
            slices = dict(sorted(slices.items()))
        versions = _versions_of(db) if cfg.surrogate else []
    finally:
        db.close()
    return RunResult(
        label=label,
        stats=stats,
        cpu_s=cpu,
        wall_s=wall,
        run_dir=run_dir,
        certified=cfg.surrogate and cfg.policy != "fixed_band",
        fit_s=float(fit_s),
        released_seq=np.array([s for s, _ in rel], dtype=np.int64),
        released_slice=np.array([name for _, name in rel], dtype=object),
        slices=slices,
        versions=versions,
    )


def draw(r: RunResult, per_slice: int | None, k: int, seed: int) -> np.ndarray:
    """Seqs of a fresh sample of ``r``'s released rows: uniform within each slice, up to
    ``per_slice`` a slice (stratified), or - ``per_slice`` None - ``k`` uniform over all."""
    rng = np.random.default_rng(seed)
    if per_slice is None:
        m = min(k, r.n_released)
        return np.sort(rng.choice(r.released_seq, size=m, replace=False)) if m else r.released_seq
    picks = []
    for name in sorted(r.slices):
        seqs = r.released_seq[r.released_slice == name]
        picks.append(rng.choice(seqs, size=min(per_slice, len(seqs)), replace=False))
    return np.sort(np.concatenate(picks)) if picks else r.released_seq[:0]


def _load(run_dir: Path, seqs: Sequence[int]) -> list[tuple[str, dict[str, Any], dict]]:
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    out = []
    try:
        for i in range(0, len(seqs), 500):
            part = [int(s) for s in seqs[i : i + 500]]
            marks = ",".join("?" * len(part))
            for name, payload, predicted in db.execute(
                f"SELECT COALESCE(slice, '?'), payload, predicted FROM examples "
                f"WHERE seq IN ({marks}) ORDER BY seq",
                part,
            ):
                out.append((name, json.loads(payload), json.loads(predicted)))
    finally:
        db.close()
    return out


def fresh_check(bench: BenchDomain, samples: dict[str, tuple[RunResult, np.ndarray]]) -> None:
    """Re-run the ground truth on every run's sample (one pool); errors go into ``r.slices``."""
    loaded = {label: _load(r.run_dir, seqs) for label, (r, seqs) in samples.items()}
    flat = [payload for rows in loaded.values() for _, payload, _ in rows]
    if not flat:
        return
    processes = bench.fresh_processes or max(os.cpu_count() or 1, 1)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        verdicts = iter(pool.map(bench.verify, flat, chunksize=16 if len(flat) > 256 else 1))
    specs = bench.properties
    for label, rows in loaded.items():
        r = samples[label][0]
        for entry in r.slices.values():
            entry.sample = entry.errors = 0
        for name, _, predicted in rows:
            entry = r.slices[name]
            entry.sample += 1
            verdict = next(verdicts)
            if verdict is None:  # the tool failed on a re-run: count it as an error
                entry.errors += 1
                continue
            entry.errors += bool(accept_error(verdict, predicted, specs))


def clopper_pearson(k: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    if n <= 0:
        return math.nan, math.nan
    a = (1 - confidence) / 2
    lo = 0.0 if k <= 0 else float(sps.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k >= n else float(sps.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def pooled(r: RunResult) -> tuple[float, float, float, int, int]:
    """Release-weighted error over the slices' samples, its 95 % interval, errors, sample.

    Each slice's sample is uniform within the slice, so weighting the slices' rates by their
    released counts estimates the rate among all released rows. The interval is Clopper-Pearson
    at the effective sample size p(1 - p) / var (Korn & Graubard 1998), with the finite
    population correction; when no error was seen, at the total sample size.
    """
    strata = [s for s in r.slices.values() if s.sample]
    n_total, k_total = sum(s.sample for s in strata), sum(s.errors for s in strata)
    released = sum(s.released for s in strata)
    if not n_total:
        return math.nan, math.nan, math.nan, 0, 0
    p = sum(s.released * s.errors / s.sample for s in strata) / released
    var = 0.0
    for s in strata:
        w, ph = s.released / released, s.errors / s.sample
        fpc = 1 - s.sample / s.released
        var += w * w * ph * (1 - ph) / max(s.sample - 1, 1) * fpc
    n_eff = min(p * (1 - p) / var, n_total) if var > 0 else n_total
    lo, hi = clopper_pearson(p * n_eff, n_eff)
    return p, lo, hi, k_total, n_total


# -- report -------------------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}%}"


def print_report(bench: BenchDomain, results: list[RunResult], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    alpha, delta = args.alpha, args.delta
    console = Console(width=max(Console().width, 190))
    base = results[0]
    table = Table(title=f"{bench.name}: verified examples per CPU second (alpha {alpha:.0%}, "
                  f"delta {delta:.0%})")  # fmt: skip
    cols = (
        "run", "candidates", "GT calls", "accepted", "by GT", "by surrogate",
        "rejected by surrogate", "deferred", "CPU s", "wall s", "accepted / CPU s", "vs baseline",
    )  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col == "run" else "right")
    for r in results:
        s = r.stats
        table.add_row(
            r.label, f"{s.generated:,}", f"{s.gt_calls:,}", f"{s.accepted:,}",
            f"{s.accepted - s.surrogate_accepted:,}", f"{s.surrogate_accepted:,}",
            f"{s.surrogate_rejected:,}", f"{s.deferred:,}", f"{r.cpu_s:,.1f}", f"{r.wall_s:,.1f}",
            f"{r.per_cpu_s:,.1f}", f"{r.per_cpu_s / base.per_cpu_s:.2f}x",
        )  # fmt: skip
    console.print(table)

    for r in results[1:]:
        if r.certified:
            _slice_table(console, r, alpha, delta, bench.slice_kind)
    errs = Table(title="error among surrogate-released examples, pooled: certificates vs measured "
                 f"on a fresh random sample re-checked with {bench.tool}")  # fmt: skip
    for col in ("run", "released", "certificates", "estimate (weighted / max)", "fresh sample",
                "errors", "measured error", "95% interval", "CI lower < alpha"):  # fmt: skip
        errs.add_column(col, justify="left" if col == "run" else "right")
    for r in results[1:]:
        if r.certified:
            p, lo, hi, k, n = pooled(r)
            how = f"{n:,} (by slice)"
            slices = r.slices.values()
            n_certs = sum(s.certificates for s in slices)
            got = [(s.released, s.estimate_mean) for s in slices if s.estimate_mean is not None]
            mean = sum(a * b for a, b in got) / sum(a for a, _ in got) if got else None
            top = max((s.estimate_max for s in slices if s.estimate_max is not None), default=None)
            certs, est = f"{n_certs}", f"{_pct(mean)} / {_pct(top)}"
        else:
            n = sum(s.sample for s in r.slices.values())
            k = sum(s.errors for s in r.slices.values())
            p = k / n if n else math.nan
            lo, hi = clopper_pearson(k, n)
            how, certs, est = f"{n:,} (uniform)", "none (unaudited)", "-"
        ok = "-" if not n else ("yes" if lo < alpha else "NO")
        errs.add_row(
            r.label, f"{r.n_released:,}", certs, est, how, f"{k:,}", _pct(p),
            f"[{_pct(lo)}, {_pct(hi)}]" if n else "-", ok,
        )  # fmt: skip
    console.print(errs)

    for r in results[1:]:
        _version_table(console, r)
    for r in results[1:]:
        s = r.stats
        print(
            f"{r.label}: surrogate versions {s.surrogate_versions}, champion v{s.champion}, "
            f"training wall {r.fit_s:.1f} s, audits {s.audits:,}, GT failures {s.failed}, "
            f"stop: {s.stop_reason}"
        )
    for r in results[1:]:
        if r.certified:
            ratio = r.per_cpu_s / base.per_cpu_s
            verdict = "met" if ratio >= bench.target_ratio else "NOT met"
            bad = [
                s.name for s in r.slices.values()
                if s.sample and clopper_pearson(s.errors, s.sample)[0] >= alpha
            ]  # fmt: skip
            print(
                f"{r.label}: {ratio:.2f}x the baseline's accepted / CPU s (target >= "
                f"{bench.target_ratio:g}x at alpha {alpha:.0%}: {verdict}); slices whose measured "
                f"error interval lies entirely above alpha: {', '.join(bad) or 'none'}"
            )
    print(
        f"accepted = released examples: by {bench.tool}, or by the surrogate under its "
        "certificate.\nCPU s = user+system seconds of the coordinator and all descendants "
        f"(Dask workers, {bench.tool} children, training); the fresh-sample check is not "
        "included.\n"
        "estimate = the Clopper-Pearson bound of a certificate at its chosen threshold, weighted "
        "by the rows it released (an estimate; what is promised is alpha at 1 - delta, per slice)."
    )


def _slice_table(console: Any, r: RunResult, alpha: float, delta: float, kind: str) -> None:
    from rich.table import Table

    t = Table(title=f"{r.label}: per slice ({kind}) - promised error <= alpha {alpha:.0%} in "
              f"every slice at confidence {1 - delta:.0%}; measured on a fresh sample of the "
              f"slice's released examples")  # fmt: skip
    for col in ("slice", "released", "rejected by surrogate", "certificates",
                "estimate weighted", "estimate max", "fresh sample", "errors", "measured error",
                "95% interval", "CI lower < alpha"):  # fmt: skip
        t.add_column(col, justify="left" if col == "slice" else "right")
    for s in r.slices.values():
        lo, hi = clopper_pearson(s.errors, s.sample)
        ok = "-" if not s.sample else ("yes" if lo < alpha else "NO")
        t.add_row(
            s.name, f"{s.released:,}", f"{s.rejected:,}", f"{s.certificates}",
            _pct(s.estimate_mean), _pct(s.estimate_max), f"{s.sample:,}", f"{s.errors:,}",
            _pct(s.errors / s.sample if s.sample else None),
            f"[{_pct(lo)}, {_pct(hi)}]" if s.sample else "-", ok,
        )  # fmt: skip
    p, lo, hi, k, n = pooled(r)
    t.add_row(
        "pooled (weighted)", f"{r.n_released:,}", f"{sum(s.rejected for s in r.slices.values()):,}",
        f"{sum(s.certificates for s in r.slices.values())}", "", "", f"{n:,}", f"{k:,}",
        _pct(p), f"[{_pct(lo)}, {_pct(hi)}]" if n else "-",
        "-" if not n else ("yes" if lo < alpha else "NO"),
    )  # fmt: skip
    console.print(t)


def _version_table(console: Any, r: RunResult) -> None:
    from rich.table import Table

    t = Table(title=f"{r.label}: surrogate versions - trained, promoted, what each decided")
    for col in ("version", "labels", "fit s", "looks", "slices certified accept/reject", "released",
                "share", "rejected", "promoted"):  # fmt: skip
        t.add_column(col, justify="left" if col == "promoted" else "right")
    for v in r.versions:
        champion = " (champion at end)" if v.version == r.stats.champion else ""
        promoted = v.promoted or ("no" if r.certified else "- (the newest decides)")
        t.add_row(
            f"v{v.version}", f"{v.n_labels:,}", f"{v.fit_s:.1f}", f"{v.looks}",
            f"{v.accept_slices} / {v.reject_slices}", f"{v.accepted:,}",
            _pct(v.accepted / r.n_released if r.n_released else None, 1), f"{v.rejected:,}",
            promoted + champion,
        )  # fmt: skip
    console.print(t)


def _or_default(value: float | None) -> str:
    return "default" if value is None else f"{value:g}"


def compare_loops(
    bench: BenchDomain, args: argparse.Namespace, baseline: str, wall0: float
) -> None:
    """A domain benchmark's two-tier part: ``baseline`` (ground truth on every candidate,
    ``args.baseline_n``) then ``certified`` (``args.n``, the surrogate under certificates), a
    fresh ground-truth re-check of ``args.fresh_per_slice`` released examples a slice, the
    report. ``args`` carries alpha, delta, audit_rate, min_train_labels, retrain_every,
    challenger_audits, keep (a directory for the runs, else a temporary one)."""
    common = dict(alpha=args.alpha, delta=args.delta)
    surrogate_cfg = dict(
        common,
        audit_rate=args.audit_rate,
        min_train_labels=args.min_train_labels,
        retrain_every=args.retrain_every,
        challenger_audits=args.challenger_audits,
    )
    with tempfile.TemporaryDirectory(prefix=f"foundry-bench-{bench.name}-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = [
            run_case(bench, baseline, workdir, args.baseline_n, seed=1, surrogate=False, **common)
        ]
        results.append(run_case(bench, "certified", workdir, args.n, seed=2, **surrogate_cfg))
        samples = {r.label: (r, draw(r, args.fresh_per_slice, 0, 99)) for r in results[1:]}
        print(f"[bench] re-checking {sum(len(s) for _, s in samples.values()):,} released "
              "examples ...", file=sys.stderr, flush=True)  # fmt: skip
        fresh_check(bench, samples)
    print(f"{os.cpu_count()} cores, python {sys.version.split()[0]}, alpha {args.alpha}, delta "
          f"{args.delta}, audit rate {args.audit_rate}, "
          f"min train labels {args.min_train_labels:,}, "
          f"retrain every {args.retrain_every:,}, fresh {args.fresh_per_slice} a slice, total wall "
          f"{time.perf_counter() - wall0:,.0f} s")  # fmt: skip
    print_report(bench, results, args)
