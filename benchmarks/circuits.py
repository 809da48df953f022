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
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from foundry.contract import Candidate, SimulationFailed, Verdict

from ._twotier import BenchDomain, _or_default, draw, fresh_check, print_report, run_case

TARGET_RATIO = 5.0

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


def _bench() -> BenchDomain:
    from foundry.domains.circuits import CircuitsDomain

    return BenchDomain(
        name="circuits",
        verify=_verify,
        properties=CircuitsDomain.properties,
        tool="ngspice",
        target_ratio=TARGET_RATIO,
        slices=tuple(CircuitsDomain.slices or ()),
        slice_kind="topology",
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
    bench = _bench()
    with tempfile.TemporaryDirectory(prefix="foundry-bench-circuits-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = [
            run_case(bench, "ground truth only", workdir, n_base, seed=1, surrogate=False, **common)
        ]
        results.append(run_case(bench, "certified", workdir, n, seed=2, **surrogate_cfg))
        if not args.skip_fixed_band:
            results.append(
                run_case(
                    bench,
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
        fresh_check(bench, samples)
    print(f"{os.cpu_count()} cores, python {sys.version.split()[0]}, alpha {args.alpha}, "
          f"delta {args.delta}, audit rate {args.audit_rate}, retrain every "
          f"{args.retrain_every:,}, challenger audits {args.challenger_audits:,}, uncertified "
          f"audit rate {_or_default(args.uncertified_audit_rate)}, max item risk "
          f"{_or_default(args.max_item_risk)}, "
          f"fresh {args.fresh_per_slice} a slice (certified) / {args.fresh} (fixed band), "
          f"total wall {time.perf_counter() - wall0:,.0f} s")  # fmt: skip
    print_report(bench, results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
