"""The ``foundry`` command: run, verify, status, export, domains, new-domain."""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from foundry.contract import Candidate, FoundryError

#: run-config keys settable by a flag of the same name (dashes for underscores)
RUN_FLAGS: dict[str, type] = {
    "domain": str,
    "run_dir": str,
    "seed": int,
    "alpha": float,
    "delta": float,
    "audit_rate": float,
    "policy": str,
    "executor": str,
    "n_workers": int,
    "isolation": str,
    "batch_size": int,
    "chunk_size": int,
    "min_train_labels": int,
    "retrain_every": int,
}
BUDGET_FLAGS: dict[str, type] = {
    "max_candidates": int,
    "max_ground_truth_calls": int,
    "walltime_s": float,
    "target_accepted": int,
}


def _parse_set(values: list[str]) -> dict[str, Any]:
    """``--set a.b=1`` -> {"a": {"b": 1}}; values parse as JSON when they can."""
    out: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {}
    for key in RUN_FLAGS:
        value = getattr(args, key, None)
        if value is not None:
            over[key] = value
    budget = {k: getattr(args, k) for k in BUDGET_FLAGS if getattr(args, k, None) is not None}
    if budget:
        over["budget"] = budget
    if getattr(args, "timeout_s", None) is not None:
        over["resources"] = {"timeout_s": args.timeout_s}
    if getattr(args, "no_progress", False):
        over["progress"] = False
    from foundry.config import merge

    return merge(over, _parse_set(getattr(args, "set", None) or []))


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML/YAML run config (flags override it)")
    for key, kind in {**RUN_FLAGS, **BUDGET_FLAGS}.items():
        p.add_argument("--" + key.replace("_", "-"), dest=key, type=kind, default=None)
    p.add_argument(
        "--timeout-s",
        dest="timeout_s",
        type=float,
        default=None,
        help="wall time per ground-truth item (sets resources.timeout_s)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any config key, e.g. resources.threads=4 or domain_options.basis=def2-svp",
    )
    p.add_argument("--no-progress", action="store_true")


class _Progress:
    """A rich progress bar fed by the scheduler's stats (throttled)."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total
        self._last = 0.0
        self._bar = None
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]foundry"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._task = self._bar.add_task("run", total=total, info="starting")
            self._bar.start()

    def __call__(self, stats: Any) -> None:
        now = time.monotonic()
        if self._bar is None or now - self._last < 0.25:
            return
        self._last = now
        rate = stats.generated / max(stats.elapsed_s, 1e-9)
        decided = stats.accepted + stats.rejected
        acc = stats.accepted / decided if decided else 0.0
        strata = f"{stats.certified_strata} certified" if stats.certified_strata else "none yet"
        info = (
            f"{rate:,.0f} cand/s | accept {acc:.1%} | GT calls {stats.gt_calls:,} | "
            f"surrogate-released {stats.surrogate_accepted:,} | slices {strata}"
        )
        self._bar.update(self._task, completed=stats.generated, info=info)

    def close(self, stats: Any) -> None:
        if self._bar is not None:
            self._last = 0.0
            self(stats)
            self._bar.stop()


def cmd_run(args: argparse.Namespace) -> int:
    from foundry.config import load_config
    from foundry.ledger.export import export_run
    from foundry.loop import Scheduler

    cfg = load_config(args.config, **_overrides(args))
    progress = _Progress(cfg.budget.max_candidates, cfg.progress)
    scheduler = Scheduler(cfg, progress=progress)
    stats = scheduler.run()
    progress.close(stats)
    path, n = export_run(cfg.run_dir)
    print(f"run finished ({stats.stop_reason}) in {stats.elapsed_s:.1f} s")
    print(f"ledger: {cfg.run_dir}/ledger.sqlite   export: {path} ({n} accepted examples)")
    _print_status(cfg.run_dir)
    return 0


def _read_jsonl(path: Path, batch: int, seed: int) -> Iterator[list[Candidate]]:
    """The file's candidates in a seeded random order, in batches.

    Shuffled because audits are a uniform sample only of a stream in random order: a file
    sorted by size or difficulty would otherwise have its first, easy part certify the rest.
    """
    from foundry.loop import INVALID_INPUT

    cands: list[Candidate] = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
                payload = obj["payload"] if isinstance(obj.get("payload"), dict) else obj
                cand = Candidate(
                    payload=payload,
                    source="injected",
                    generation=int(obj.get("generation", 0)) if "payload" in obj else 0,
                    parent_ids=tuple(obj.get("parent_ids", ())) if "payload" in obj else (),
                )
            except (ValueError, TypeError) as exc:
                reason = f"{path.name} line {lineno}: unreadable ({exc})"
                cand = Candidate({INVALID_INPUT: reason, "line": line[:2000]}, source="injected")
            cands.append(cand)
    order = np.random.default_rng(seed).permutation(len(cands))
    for start in range(0, len(cands), batch):
        yield [cands[i] for i in order[start : start + batch]]


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=8)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cmd_verify(args: argparse.Namespace) -> int:
    from foundry.config import load_config
    from foundry.ledger.export import export_run
    from foundry.loop import Scheduler

    if not Path(args.input).is_file():
        raise FileNotFoundError(f"no input file {args.input}")
    over = _overrides(args)
    over.setdefault("run_dir", str(Path("runs") / f"verify-{Path(args.input).stem}"))
    over["surrogate"] = False
    over.setdefault("budget", {})["max_candidates"] = None
    cfg = load_config(args.config, **over)
    path = Path(args.input)
    scheduler = Scheduler(
        cfg,
        candidates=_read_jsonl(path, cfg.batch_size, cfg.seed),
        stream_id=f"{path.name}:{_file_digest(path)}",
    )
    if args.surrogate_from:
        model_dir = Path(args.surrogate_from) / "surrogates"
        models = sorted(model_dir.glob("v*.pkl"), key=lambda p: int(p.stem[1:]))
        if not models:
            raise FoundryError(f"no saved surrogate in {model_dir}")
        with models[-1].open("rb") as fh:
            scheduler.add_challenger(pickle.load(fh))
        print(
            f"surrogate {models[-1].name} must earn its certificate on audits of these inputs; "
            "until then every item goes to the ground truth"
        )
    stats = scheduler.run()
    path, _n = export_run(cfg.run_dir, fmt="jsonl", decisions=None)
    print(
        f"verified {stats.generated} inputs: {stats.accepted} accepted, {stats.rejected} "
        f"rejected, {stats.invalid} invalid, {stats.failed} failed -> {path}"
    )
    return 0


def _print_status(run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from foundry.ledger.export import summarize

    s = summarize(Path(run_dir))
    console = Console()
    table = Table(title=f"foundry run {s['run_dir']} ({s['domain']})", show_header=False)
    table.add_row(
        "state", "finished: " + s["stop_reason"] if s["finished"] else "running/incomplete"
    )
    table.add_row("candidates in ledger", f"{s['total']:,}")
    for decision, count in sorted(s["by_decision"].items()):
        table.add_row(f"  {decision}", f"{count:,}")
    for decision, tier, count in s["by_tier"]:
        if tier:
            table.add_row(f"  {decision} by {tier}", f"{count:,}")
    table.add_row(
        "ground-truth calls",
        f"{s['ground_truth_calls']:,} ({s['audits']:,} audits, "
        f"{s['ground_truth_walltime_s']:.1f} s)",
    )
    if s["failures"]:
        table.add_row("failures", ", ".join(f"{k}: {v}" for k, v in s["failures"].items()))
    table.add_row("surrogate versions", str(s["surrogate_versions"]))
    released = s["released_by_slice"]
    if released:
        table.add_row(
            "guarantee",
            f"per slice: error <= alpha = {s['alpha']:.2%} among "
            f"surrogate-released examples, confidence {1 - s['delta']:.0%}",
        )
        for name, r in released.items():
            est = r["accept_estimate_weighted"]
            shown = f"{est:.2%}" if est is not None else "-"
            worst = r["accept_estimate_max"]
            table.add_row(
                f"  slice {name}",
                f"{r['accepted']:,} released, {r['rejected']:,} rejected by surrogate(s) "
                f"{', '.join(f'v{v}' for v in r['surrogate_versions'])} under "
                f"{r['certificates']} certificate(s); Clopper-Pearson estimate "
                f"{shown} release-weighted"
                + (f", {worst:.2%} at most" if worst is not None else ""),
            )
    else:
        table.add_row("certified release", "none: every accepted example is ground truth")
    for message in s["promotions"]:
        table.add_row("promotion", message)
    if s["events"]:
        table.add_row("events", ", ".join(f"{k}: {v}" for k, v in s["events"].items()))
    mon = s["monitor_last"]
    if mon and "diversity" in mon:
        table.add_row(
            "diversity / drift",
            f"{mon['diversity']:.3g} (ref {mon['reference_diversity']:.3g}) "
            f"/ {mon['drift_sd']:.3g} sd",
        )
    console.print(table)
    for event in s["recent_problems"]:
        console.print(f"[yellow]{event['level']}[/] {event['kind']}: {event['message']}")


def cmd_status(args: argparse.Namespace) -> int:
    if args.json:
        from foundry.ledger.export import summarize

        print(json.dumps(summarize(Path(args.run_dir)), indent=2, default=str))
    else:
        _print_status(Path(args.run_dir))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from foundry.ledger.export import export_run

    decisions = None if args.all else tuple(args.decision or ("accepted",))
    path, n = export_run(Path(args.run_dir), args.out, fmt=args.format, decisions=decisions)
    print(f"wrote {n} rows to {path}")
    return 0


def cmd_domains(args: argparse.Namespace) -> int:
    from foundry.registry import available_domains, load_domain

    for name, target in sorted(available_domains().items()):
        try:
            info = load_domain(name).describe()
            props = ", ".join(f"{p['name']} [{p['unit']}]" for p in info["properties"]) or "-"
            print(
                f"{name:12s} v{info['version']:8s} {target}\n{'':12s} properties: {props}; "
                f"pass/fail: {info['has_pass_fail']}; fidelities: {info['fidelities']}"
            )
        except Exception as exc:
            print(f"{name:12s} {target}  (cannot load: {exc})")
    return 0


def cmd_new_domain(args: argparse.Namespace) -> int:
    from foundry.scaffold import new_domain

    path = new_domain(args.name, Path(args.dest), force=args.force)
    print(f"created {path}\nnext: pip install -e {path} && pytest {path}/tests")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foundry", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="generate, screen, certify and verify until the budget ends")
    _add_run_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("verify", help="verify your own JSONL of candidates")
    p.add_argument("input", help="JSONL: one payload (or {'payload': ...}) per line")
    p.add_argument(
        "--surrogate-from",
        metavar="RUN_DIR",
        help="screen with the latest surrogate of that run (it must re-certify here)",
    )
    _add_run_flags(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("status", help="summarise a run directory")
    p.add_argument("run_dir", nargs="?", default="runs/latest")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("export", help="export examples to Parquet or JSONL")
    p.add_argument("run_dir", nargs="?", default="runs/latest")
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    p.add_argument("--out", type=Path)
    p.add_argument("--decision", action="append", help="decisions to export (default accepted)")
    p.add_argument("--all", action="store_true", help="every row, whatever its decision")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("domains", help="list installed domain plugins")
    p.set_defaults(func=cmd_domains)

    p = sub.add_parser("new-domain", help="scaffold a plugin that passes check_domain")
    p.add_argument("name")
    p.add_argument("--dest", default=".")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_new_domain)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FoundryError, FileNotFoundError, ValueError) as exc:
        print(f"foundry {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the ledger keeps everything decided so far", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
