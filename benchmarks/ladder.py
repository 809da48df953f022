"""The fidelity ladder: top-tier calls with one, two and three tiers at the same alpha.

Run from the repository root: ``python -m benchmarks.ladder [--n N] [--seeds K]``. Prints a
table; not a test. The domain is ``tests/ladder_domain.py``: a known truth (the ``exact``
tier) and two cheaper tiers (``coarse``: error up to 0.3, three times the tolerance;
``fine``: up to 0.05). Each cheaper tier runs on every rule-valid candidate before the
surrogate scores it, and the surrogate learns the correction over the best one it sees; the
certificate is always against ``exact``. The released error is measured against the truth.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LADDERS = {
    "1 tier: exact": None,
    "2 tiers: coarse, exact": ["coarse", "exact"],
    "3 tiers: coarse, fine, exact": ["coarse", "fine", "exact"],
}


def _released_error(run_dir: Path) -> tuple[int, int]:
    """(wrong, released) among what the surrogate released, judged against the truth."""
    from analytic_domain import released_wrong

    wrong = released_wrong(run_dir)
    return int(wrong.sum()), len(wrong)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="candidates per run")
    parser.add_argument("--seeds", type=int, default=3, help="runs per ladder")
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from rich.console import Console
    from rich.table import Table

    from foundry.config import RunConfig
    from foundry.loop import Scheduler

    table = Table(title=f"fidelity ladder, alpha {args.alpha:.0%}, {args.seeds} x {args.n:,}")
    for col in ("ladder", "top-tier calls", "cheaper-tier calls", "surrogate-released",
                "released error (true)", "top calls vs 2 tiers"):  # fmt: skip
        table.add_column(col, justify="left" if col == "ladder" else "right")
    rows = []
    with tempfile.TemporaryDirectory(prefix="foundry-ladder-") as tmp:
        for label, ladder in LADDERS.items():
            top = cheap = released = wrong = 0
            for seed in range(args.seeds):
                cfg = RunConfig(
                    domain="ladder_domain:LadderDomain", run_dir=Path(tmp) / f"{label}{seed}",
                    executor="inline", isolation="none", progress=False, seed=seed,
                    alpha=args.alpha, delta=0.1, min_train_labels=200, retrain_every=2000,
                    challenger_audits=400, ladder=ladder, budget={"max_candidates": args.n},
                )  # fmt: skip
                stats = Scheduler(cfg).run()
                top += stats.gt_calls
                cheap += sum(v for k, v in stats.tier_calls.items() if k in ("coarse", "fine"))
                k, n = _released_error(cfg.run_dir)
                wrong += k
                released += n
            rows.append((label, top, cheap, released, wrong))
    two = rows[1][1]
    for label, top, cheap, released, wrong in rows:
        table.add_row(
            label, f"{top:,}", f"{cheap:,}", f"{released:,}",
            f"{wrong / released:.2%}" if released else "-", f"{top / two:.2f}",
        )  # fmt: skip
    Console(width=140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
