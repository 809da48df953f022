"""Circuits end to end: certified two-tier screening against ground truth only, side by side.

Run from the repository root (ngspice and the circuits extra installed)::

    python -m benchmarks.circuits                  # 200,000 candidates, ~12 min on 2 cores
    python -m benchmarks.circuits --quick           # 8,000 candidates, a smoke run

Three runs of the real loop (Dask LocalCluster, warm ngspice workers, SQLite ledger), one after
the other in this process, each on the same generator with its own seed:

1. ``ground truth only``: every candidate simulated by ngspice (the baseline);
2. ``certified``: the GNN surrogate screens everything; items are released on its word only
   inside the audited Clopper-Pearson bound (alpha, delta); uncertain items and a random audit
   sample go to ngspice; the surrogate is retrained as labels accumulate;
3. ``fixed band``: the same surrogate trusted inside fixed risk levels with no audits (how
   DP-GEN-style trust levels select work) - it gives no bound.

Afterwards a *fresh* uniform random sample of each run's surrogate-released examples is
simulated with ngspice (outside the timed runs) and the measured error rate is printed beside
the bound the certified run claimed. CPU seconds are those of this process and all its
descendants (Dask workers, ngspice children, training threads), read from ``getrusage``; the
headline number is accepted (verified) examples per CPU second, and its ratio to the baseline.
The baseline's rate does not depend on its length (every candidate costs one simulation), so
it runs 20,000 candidates by default; the surrogate runs need volume to pay for their fixed
costs (first labels, first certificate, training). Prints tables; not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
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


@dataclass
class RunResult:
    label: str
    stats: RunStats
    cpu_s: float
    wall_s: float
    run_dir: Path
    bound: float | None
    threshold: float | None
    audits_in_force: int | None
    fit_s: float
    released: list[tuple[dict[str, Any], dict[str, float]]] = field(default_factory=list)

    @property
    def per_cpu_s(self) -> float:
        return self.stats.accepted / self.cpu_s


def _cpu_s() -> float:
    """CPU seconds of this process plus every reaped descendant."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


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
        released = [
            (json.loads(p), json.loads(v))
            for p, v in db.execute(
                "SELECT payload, predicted FROM examples "
                "WHERE decided_by = 'surrogate' AND decision = 'accepted'"
            )
        ]
        fit_s = db.execute("SELECT COALESCE(SUM(fit_s), 0) FROM surrogates").fetchone()[0]
        cal = None
        if stats.champion is not None:
            cal = db.execute(
                "SELECT accept_bound, accept_threshold, accept_n FROM calibrations "
                "WHERE surrogate_version = ? ORDER BY version DESC LIMIT 1",
                (stats.champion,),
            ).fetchone()
    finally:
        db.close()
    certified = cal is not None and cal[1] is not None and overrides.get("policy") != "fixed_band"
    return RunResult(
        label=label,
        stats=stats,
        cpu_s=cpu,
        wall_s=wall,
        run_dir=run_dir,
        bound=cal[0] if certified else None,
        threshold=cal[1] if certified else None,
        audits_in_force=cal[2] if certified else None,
        fit_s=float(fit_s),
        released=released,
    )


# -- the fresh random sample ------------------------------------------------------------------

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


def fresh_check(
    released: Sequence[tuple[dict[str, Any], dict[str, float]]], k: int, seed: int
) -> tuple[int, int]:
    """(errors, sample size) on a uniform random sample of released examples, by ngspice."""
    from foundry.domains.circuits import CircuitsDomain

    if not released:
        return 0, 0
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(released), size=min(k, len(released)), replace=False)
    sample = [released[i] for i in pick]
    with multiprocessing.get_context("spawn").Pool(max(os.cpu_count() or 1, 1)) as pool:
        verdicts = pool.map(_verify, [p for p, _ in sample], chunksize=32)
    specs = CircuitsDomain.properties
    errors = sum(
        accept_error(v, predicted, specs)
        for v, (_, predicted) in zip(verdicts, sample, strict=True)
    )
    return int(errors), len(sample)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    a = (1 - confidence) / 2
    lo = 0.0 if k == 0 else float(sps.beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(sps.beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


# -- report -------------------------------------------------------------------------------------


def print_report(
    results: list[RunResult], fresh: dict[str, tuple[int, int]], alpha: float, delta: float
) -> None:
    from rich.console import Console
    from rich.table import Table

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
    console = Console(width=max(Console().width, 160))
    console.print(table)

    errs = Table(title="error among surrogate-released examples: claimed vs measured on a fresh "
                 "random sample re-simulated with ngspice")  # fmt: skip
    for col in ("run", "released", "bound in force", "audits behind it", "fresh sample",
                "errors", "measured error", "95% interval", "within bound"):  # fmt: skip
        errs.add_column(col, justify="left" if col == "run" else "right")
    for r in results[1:]:
        k, n = fresh.get(r.label, (0, 0))
        lo, hi = clopper_pearson(k, n)
        rate = k / n if n else math.nan
        bound = f"{r.bound:.2%}" if r.bound is not None else "none (unaudited)"
        ok = "-" if r.bound is None or not n else ("yes" if rate <= r.bound else "NO")
        errs.add_row(
            r.label, f"{len(r.released):,}", bound,
            f"{r.audits_in_force:,}" if r.audits_in_force else "-", f"{n:,}", f"{k:,}",
            f"{rate:.2%}" if n else "-", f"[{lo:.2%}, {hi:.2%}]" if n else "-", ok,
        )  # fmt: skip
    console.print(errs)
    for r in results[1:]:
        s = r.stats
        print(
            f"{r.label}: surrogate versions {s.surrogate_versions}, training wall "
            f"{r.fit_s:.1f} s, audits {s.audits:,}, GT failures {s.failed}, "
            f"stop: {s.stop_reason}"
        )
    print(
        "accepted = released examples (spec met): by ngspice, or by the surrogate under its "
        "certificate.\nCPU s = user+system seconds of the coordinator and all descendants "
        "(Dask workers, ngspice children, training); the fresh-sample check is not included."
    )


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
    parser.add_argument("--fixed-accept-risk", type=float, default=0.05)
    parser.add_argument("--fresh", type=int, default=2_000, help="fresh re-simulated sample")
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
        challenger_audits=400,
    )
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
        print("[bench] re-simulating fresh samples of released examples ...", file=sys.stderr)
        fresh = {r.label: fresh_check(r.released, args.fresh, seed=99) for r in results[1:]}
    print(f"{os.cpu_count()} cores, python {sys.version.split()[0]}, alpha {args.alpha}, "
          f"delta {args.delta}, audit rate {args.audit_rate}")  # fmt: skip
    print_report(results, fresh, args.alpha, args.delta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
