"""``foundry report``: one self-contained HTML page that summarises a run from its ledger.

The page holds its charts as inline SVG drawn here, its style inline, and no script: it opens
offline, from a mail attachment or a cluster's scratch space, and loads nothing. Sections:
summary (state, config, decisions), acceptance, audited surrogate error against the
guarantee (and the certificates in force), diversity and drift, real and synthetic shares,
compute per generation, events. A section without data in the ledger says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from foundry.files import atomic_write_text
from foundry.report.data import ReportData, load
from foundry.report.html import render

__all__ = ["ReportData", "add_report_parser", "cmd_report", "load", "render", "write_report"]

REPORT_NAME = "report.html"


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``),
    atomically; return its path. FileNotFoundError when the run dir has no ledger."""
    run_dir = Path(run_dir)
    page = render(load(run_dir))
    path = Path(out) if out is not None else run_dir / REPORT_NAME
    atomic_write_text(path, page)
    return path


def cmd_report(args: argparse.Namespace) -> int:
    print(write_report(Path(args.run_dir), args.out))
    return 0


def add_report_parser(subparsers: Any) -> None:
    """Add ``foundry report RUN_DIR [--out FILE]`` to ``foundry``'s subcommands."""
    p = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report of a run (charts inline, works offline)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", nargs="?", default="runs/latest")
    p.add_argument(
        "--out", type=Path, default=None, help="where to write it (default RUN_DIR/report.html)"
    )
    p.set_defaults(func=cmd_report)
