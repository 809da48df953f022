"""Circuits end to end: certified two-tier screening against ground truth only, side by side.

Run from the repository root (ngspice and the circuits extra installed)::

    python -m benchmarks.circuits                  # 200,000 candidates, ~12 min on 2 cores
    python -m benchmarks.circuits --quick           # 8,000 candidates, a smoke run

Three runs of the real loop (Dask LocalCluster, warm ngspice workers, SQLite ledger), one after
the other in this process, each on the same generator with its own seed:

1. ``ground truth only``: every candidate simulated by ngspice (the baseline);
2. ``certified``: the GNN surrogate screens everything; items are released on its word only
   under a certificate of their stratum (regime, slice = topology) from audits (alpha at
   confidence 1 - delta, per slice); uncertain items and a random audit sample go to ngspice;
   the surrogate is retrained as labels accumulate and a new version takes over when it earns it;
3. ``fixed band``: the same surrogate trusted inside fixed risk levels with no audits (how
   DP-GEN-style trust levels select work) - it gives no bound.

Afterwards fresh random samples of the surrogate-released examples are simulated with ngspice
(outside the timed runs): for the certified run a sample *stratified by slice* (up to
``--fresh-per-slice`` a slice, uniform within it), so that every slice's measured error has a
usable 95 % interval, printed beside alpha and the certificates the slice's examples were
released under; for the fixed band a uniform sample of ``--fresh``. The certified run's pooled
error is the release-weighted mean of the slices' (its interval: Clopper-Pearson at the design's
effective sample size, Korn & Graubard 1998). A table of surrogate versions shows which were
trained, which were promoted (the ledger's ``promote`` events) and how much each released.

CPU seconds are those of this process and all its descendants (Dask workers, ngspice children,
training threads), read from ``getrusage``; the headline number is accepted (verified) examples
per CPU second, and its ratio to the baseline (target: >= 5x at alpha = 2 %). The baseline's
rate does not depend on its length (every candidate costs one simulation), so it runs 20,000
candidates by default; the surrogate runs need volume to pay for their fixed costs (first
labels, first certificates, training). Prints tables; not a test.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from foundry.calibration import accept_error
from foundry.config import load_config
from foundry.contract import Candidate, SimulationFailed, Verdict
from foundry.loop import RunStats, Scheduler

TARGET_RATIO = 5.0


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


def run_case(label: str, workdir: Path, n: int, seed: int, **overrides: Any) -> RunResult:
    run_dir = workdir / label.replace(" ", "_")
    cfg = load_config(
        None,
        domain="circuits",
        run_dir=str(run_dir),
        seed=seed,
        progress=False,
        budget={"max_candidates": n},
        **overrides,
    )
    print(f"[bench] {label}: {n:,} candidates ...", file=sys.stderr, flush=True)
    cpu0, wall0 = _cpu_s(), time.perf_counter()
    stats = Scheduler(cfg).run()  # the LocalCluster is closed (workers reaped) on return
    cpu, wall = _cpu_s() - cpu0, time.perf_counter() - wall0
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    try:
        rel = db.execute(
            "SELECT seq, COALESCE(slice, '?') FROM examples "
            "WHERE decided_by = 'surrogate' AND decision = 'accepted' ORDER BY seq"
        ).fetchall()
        fit_s = db.execute("SELECT COALESCE(SUM(fit_s), 0) FROM surrogates").fetchone()[0]
        slices = _slices_of(db)
        if cfg.surrogate:
            from foundry.domains.circuits import CircuitsDomain

            for name in CircuitsDomain.slices or ():
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


# -- the fresh random samples -----------------------------------------------------------------

_GT: Any = None


def _verify(payload: dict[str, Any]) -> Verdict | None:
    global _GT
    if _GT is None:
        from foundry.domains.circuits import CircuitsGroundTruth

        _GT = CircuitsGroundTruth()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return _GT.verify(Candidate(payload=payload), tmp)
    except SimulationFailed:
        return None


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


def fresh_check(samples: dict[str, tuple[RunResult, np.ndarray]]) -> None:
    """Re-simulate every run's sample with ngspice (one pool); errors go into ``r.slices``."""
    from foundry.domains.circuits import CircuitsDomain

    loaded = {label: _load(r.run_dir, seqs) for label, (r, seqs) in samples.items()}
    flat = [payload for rows in loaded.values() for _, payload, _ in rows]
    if not flat:
        return
    with multiprocessing.get_context("spawn").Pool(max(os.cpu_count() or 1, 1)) as pool:
        verdicts = iter(pool.map(_verify, flat, chunksize=16))
    specs = CircuitsDomain.properties
    for label, rows in loaded.items():
        r = samples[label][0]
        for entry in r.slices.values():
            entry.sample = entry.errors = 0
        for name, _, predicted in rows:
            entry = r.slices[name]
            entry.sample += 1
            entry.errors += bool(accept_error(next(verdicts), predicted, specs))


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


def print_report(results: list[RunResult], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    alpha, delta = args.alpha, args.delta
    console = Console(width=max(Console().width, 190))
    base = results[0]
    table = Table(title=f"circuits: verified examples per CPU second (alpha {alpha:.0%}, "
                  f"delta {delta:.0%})")  # fmt: skip
    cols = (
        "run", "candidates", "GT calls", "accepted", "by GT", "by surrogate",
        "rejected by surrogate", "CPU s", "wall s", "accepted / CPU s", "vs baseline",
    )  # fmt: skip
    for col in cols:
        table.add_column(col, justify="left" if col == "run" else "right")
    for r in results:
        s = r.stats
        table.add_row(
            r.label, f"{s.generated:,}", f"{s.gt_calls:,}", f"{s.accepted:,}",
            f"{s.accepted - s.surrogate_accepted:,}", f"{s.surrogate_accepted:,}",
            f"{s.surrogate_rejected:,}", f"{r.cpu_s:,.1f}", f"{r.wall_s:,.1f}",
            f"{r.per_cpu_s:,.1f}", f"{r.per_cpu_s / base.per_cpu_s:.2f}x",
        )  # fmt: skip
    console.print(table)

    for r in results[1:]:
        if r.certified:
            _slice_table(console, r, alpha, delta)
    errs = Table(title="error among surrogate-released examples, pooled: certificates vs measured "
                 "on a fresh random sample re-simulated with ngspice")  # fmt: skip
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
            verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
            bad = [
                s.name for s in r.slices.values()
                if s.sample and clopper_pearson(s.errors, s.sample)[0] >= alpha
            ]  # fmt: skip
            print(
                f"{r.label}: {ratio:.2f}x the baseline's accepted / CPU s (target >= "
                f"{TARGET_RATIO:g}x at alpha {alpha:.0%}: {verdict}); slices whose measured "
                f"error interval lies entirely above alpha: {', '.join(bad) or 'none'}"
            )
    print(
        "accepted = released examples (spec met): by ngspice, or by the surrogate under its "
        "certificate.\nCPU s = user+system seconds of the coordinator and all descendants "
        "(Dask workers, ngspice children, training); the fresh-sample check is not included.\n"
        "estimate = the Clopper-Pearson bound of a certificate at its chosen threshold, weighted "
        "by the rows it released (an estimate; what is promised is alpha at 1 - delta, per slice)."
    )


def _slice_table(console: Any, r: RunResult, alpha: float, delta: float) -> None:
    from rich.table import Table

    t = Table(title=f"{r.label}: per slice (topology) - promised error <= alpha {alpha:.0%} in "
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="candidates of the surrogate runs")
    parser.add_argument(
        "--baseline-n", type=int, default=20_000, help="candidates of the ground-truth-only run"
    )
    parser.add_argument("--retrain-every", type=int, default=10_000, help="labels between fits")
    parser.add_argument("--quick", action="store_true", help="8,000 candidates a run")
    parser.add_argument("--alpha", type=float, default=0.02)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--audit-rate", type=float, default=0.03)
    parser.add_argument(
        "--challenger-audits", type=int, default=400, help="audits before a newer version replaces"
    )
    parser.add_argument(
        "--uncertified-audit-rate", type=float, default=None, help="config default: 1.0"
    )
    parser.add_argument("--max-item-risk", type=float, default=None, help="config default: 0.1")
    parser.add_argument("--fixed-accept-risk", type=float, default=0.05)
    parser.add_argument(
        "--fresh", type=int, default=2_000, help="fresh re-simulated sample (fixed band, uniform)"
    )
    parser.add_argument(
        "--fresh-per-slice",
        type=int,
        default=300,
        help="fresh re-simulated sample of the certified run, per slice (stratified)",
    )
    parser.add_argument("--skip-fixed-band", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    args = parser.parse_args(argv)
    n = 8_000 if args.quick else args.n
    n_base = n if args.quick else args.baseline_n
    if n < 5_000 and not args.quick:
        parser.error("--n must be >= 5000 (the issue's minimum run)")

    common = dict(alpha=args.alpha, delta=args.delta)
    surrogate_cfg = dict(
        common,
        audit_rate=args.audit_rate,
        min_train_labels=500,
        retrain_every=args.retrain_every,
        challenger_audits=args.challenger_audits,
    )
    if args.max_item_risk is not None:
        surrogate_cfg["max_item_risk"] = args.max_item_risk
    if args.uncertified_audit_rate is not None:
        surrogate_cfg["uncertified_audit_rate"] = args.uncertified_audit_rate
    wall0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="foundry-bench-circuits-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = [
            run_case("ground truth only", workdir, n_base, seed=1, surrogate=False, **common)
        ]
        results.append(run_case("certified", workdir, n, seed=2, **surrogate_cfg))
        if not args.skip_fixed_band:
            results.append(
                run_case(
                    "fixed band",
                    workdir,
                    n,
                    seed=3,
                    policy="fixed_band",
                    fixed_accept_risk=args.fixed_accept_risk,
                    fixed_reject_risk=args.fixed_accept_risk,
                    **surrogate_cfg,
                )
            )
        samples = {
            r.label: (r, draw(r, args.fresh_per_slice if r.certified else None, args.fresh, 99))
            for r in results[1:]
        }
        print(
            f"[bench] re-simulating fresh samples of released examples "
            f"({sum(len(s) for _, s in samples.values()):,}) ...",
            file=sys.stderr,
            flush=True,
        )
        fresh_check(samples)
    print(f"{os.cpu_count()} cores, python {sys.version.split()[0]}, alpha {args.alpha}, "
          f"delta {args.delta}, audit rate {args.audit_rate}, retrain every "
          f"{args.retrain_every:,}, challenger audits {args.challenger_audits:,}, uncertified "
          f"audit rate {_or_default(args.uncertified_audit_rate)}, max item risk "
          f"{_or_default(args.max_item_risk)}, "
          f"fresh {args.fresh_per_slice} a slice (certified) / {args.fresh} (fixed band), "
          f"total wall {time.perf_counter() - wall0:,.0f} s")  # fmt: skip
    print_report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
