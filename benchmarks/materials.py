"""Materials end to end: MD labels through the certified two-tier loop against MD only.

Run from the repository root (the materials extra installed)::

    python -m benchmarks.materials --quick     # ~30 min on 2 cores
    python -m benchmarks.materials             # longer runs, more labels

Runs of the real loop (Dask LocalCluster, OpenMM in worker children, SQLite ledger), one after
the other in this process:

1. ``MD only``: every candidate labelled by OpenMM MD (relaxation + replicas; the baseline);
2. ``certified``: the SchNet ensemble on the periodic neighbour graph screens every candidate;
   items are released on its word only under a certificate of their slice (lattice family) at
   ``alpha``; uncertain items and a random audit sample go to MD;
3. ``fixed band``: the same surrogate trusted inside a fixed risk level with no audits (as
   DP-GEN-style trust levels select MD work): no bound.

Then fresh random samples of the surrogate-released crystals are re-simulated - with seeds
the runs never used (``md_seed_offset``), so the check includes MD's own noise - outside the
timed runs, stratified by slice for the certified run, and the measured error is printed beside
alpha and the certificates. CPU seconds include every worker and child. Prints tables; not a
test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from foundry.contract import Candidate, SimulationFailed, Verdict

from ._twotier import BenchDomain, draw, fresh_check, print_report, run_case

TARGET_RATIO = 10.0
_OPTIONS_VAR = "FOUNDRY_BENCH_MATERIALS_OPTIONS"
#: the fresh check's seeds: far from any seed a run draws (hash mod 2^30, offset 0)
FRESH_SEED_OFFSET = 2**29
_GT: Any = None


def _verify(payload: dict[str, Any]) -> Verdict | None:
    """MD at the benchmark's settings with fresh seeds (options passed to the pool's children
    in the environment)."""
    global _GT
    if _GT is None:
        from foundry.domains.materials import MaterialsDomain

        from foundry.options import parse_options

        options = json.loads(os.environ.get(_OPTIONS_VAR, "{}"))
        options["md_seed_offset"] = FRESH_SEED_OFFSET
        _GT = MaterialsDomain(parse_options(MaterialsDomain, options)).ground_truth("md")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return _GT.verify(Candidate(payload=payload), tmp)
    except SimulationFailed:
        return None


def _bench(options: dict[str, Any]) -> BenchDomain:
    from foundry.domains.materials import MaterialsDomain

    from foundry.options import parse_options

    domain = MaterialsDomain(parse_options(MaterialsDomain, options))
    os.environ[_OPTIONS_VAR] = json.dumps(options)
    return BenchDomain(
        name="materials",
        verify=_verify,
        properties=domain.properties,
        tool="OpenMM MD",
        target_ratio=TARGET_RATIO,
        slices=tuple(domain.options.lattices),
        slice_kind="lattice family",
        domain_options=options,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="candidates of the surrogate runs")
    parser.add_argument("--baseline-n", type=int, default=120, help="candidates, MD only")
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--energy-tol", type=float, default=0.02, help="eV/atom")
    parser.add_argument("--audit-rate", type=float, default=0.03)
    parser.add_argument("--uncertain-share", type=float, default=0.1,
                        help="expected share of uncertain items labelled by MD (the rest "
                        "deferred)")  # fmt: skip
    parser.add_argument("--min-train-labels", type=int, default=400)
    parser.add_argument("--retrain-every", type=int, default=600)
    parser.add_argument("--challenger-audits", type=int, default=150)
    parser.add_argument("--lattices", type=str, default="fcc,bcc,hcp")
    parser.add_argument("--ladder", type=str, default="md", help="e.g. short-md,md")
    parser.add_argument("--fixed-accept-risk", type=float, default=0.05)
    parser.add_argument("--fresh", type=int, default=150, help="fresh MD sample, fixed band")
    parser.add_argument("--fresh-per-slice", type=int, default=60)
    parser.add_argument("--skip-fixed-band", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the run directories here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.baseline_n = min(args.n, 8_000), min(args.baseline_n, 60)
        args.min_train_labels = min(args.min_train_labels, 300)
        args.fresh, args.fresh_per_slice = min(args.fresh, 60), min(args.fresh_per_slice, 40)
    options: dict[str, Any] = {
        "lattices": args.lattices.split(","),
        "energy_tol_ev": args.energy_tol,
    }
    bench = _bench(options)
    common = dict(alpha=args.alpha, delta=args.delta)
    surrogate_cfg = dict(
        common,
        audit_rate=args.audit_rate,
        min_train_labels=args.min_train_labels,
        retrain_every=args.retrain_every,
        challenger_audits=args.challenger_audits,
        uncertain_share=args.uncertain_share,
        ladder=args.ladder.split(","),
        batch_size=200,
    )
    wall0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="foundry-bench-materials-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = [run_case(bench, "MD only", workdir, args.baseline_n, seed=1,
                            surrogate=False, ladder=["md"], **common)]  # fmt: skip
        results.append(run_case(bench, "certified", workdir, args.n, seed=2, **surrogate_cfg))
        if not args.skip_fixed_band:
            results.append(run_case(
                bench, "fixed band", workdir, args.n, seed=3, policy="fixed_band",
                fixed_accept_risk=args.fixed_accept_risk,
                fixed_reject_risk=args.fixed_accept_risk, **surrogate_cfg,
            ))  # fmt: skip
        samples = {
            r.label: (r, draw(r, args.fresh_per_slice if r.certified else None, args.fresh, 99))
            for r in results[1:]
        }
        n_fresh = sum(len(s) for _, s in samples.values())
        print(f"[bench] MD on fresh samples of released crystals ({n_fresh:,}, new seeds) ...",
              file=sys.stderr, flush=True)  # fmt: skip
        fresh_check(bench, samples)
    from foundry.domains.materials import MaterialsDomain

    from foundry.options import parse_options

    domain = MaterialsDomain(parse_options(MaterialsDomain, options))
    print(f"ground truth: {domain.ground_truth('md').version}; tolerances: "
          + ", ".join(f"{p.name} {p.abs_tol:g} + {p.rel_tol:g} x |value|"
                      for p in domain.properties)
          + f"; {os.cpu_count()} cores, python {sys.version.split()[0]}")  # fmt: skip
    print(f"alpha {args.alpha}, delta {args.delta}, audit rate {args.audit_rate}, uncertain "
          f"share {args.uncertain_share}, ladder {args.ladder}, first fit at "
          f"{args.min_train_labels} labels, retrain every {args.retrain_every}, challenger "
          f"audits {args.challenger_audits}, fresh {args.fresh_per_slice} a slice (certified) / "
          f"{args.fresh} (fixed band), total wall {time.perf_counter() - wall0:,.0f} s")
    print_report(bench, results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
