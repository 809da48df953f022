"""The ``foundry`` command: run, verify, status, export, domains, new-domain."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from foundry.contract import FoundryError

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
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir (after a kill, a requeue, or to extend its budget)",
    )


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
        if stats.deferred:
            info += f" | deferred {stats.deferred:,}"
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
    scheduler = Scheduler(cfg, resume=args.resume)
    progress = _Progress(cfg.budget.max_candidates, cfg.progress)
    scheduler.progress = progress
    if scheduler.previous is not None:
        print(f"resuming the run in {cfg.run_dir}", file=sys.stderr)
    try:
        stats = scheduler.run()
    finally:
        progress.close(scheduler.stats)
    if scheduler.stop_signal is not None:
        print(
            f"run interrupted ({stats.stop_reason}) after {stats.elapsed_s:.1f} s; everything "
            f"decided is in {cfg.run_dir}/ledger.sqlite; continue with: foundry run --resume "
            f"--run-dir {cfg.run_dir}" + (f" --config {args.config}" if args.config else ""),
            file=sys.stderr,
        )
        return 128 + scheduler.stop_signal
    path, n = export_run(cfg.run_dir)
    print(f"run finished ({stats.stop_reason}) in {stats.elapsed_s:.1f} s")
    print(f"ledger: {cfg.run_dir}/ledger.sqlite   export: {path} ({n} accepted examples)")
    _print_status(cfg.run_dir)
    return _failure_status(cfg.run_dir, cfg.max_failure_share)


def _failure_status(run_dir: Path, max_share: float) -> int:
    """3 when more than ``max_share`` of the run's ground-truth calls failed (every call, in
    the worst case): the run "finished" but its ground truth did not work; the first reasons
    are printed."""
    from foundry.ledger import Ledger

    ledger = Ledger(Path(run_dir), read_only=True)
    try:
        row = ledger.db.execute(
            "SELECT COUNT(*), SUM(decision = 'failed') FROM examples "
            "WHERE decided_by = 'ground_truth' OR decision = 'failed'"
        ).fetchone()
        calls, failed = int(row[0]), int(row[1] or 0)
        if not calls or failed / calls <= max_share:
            return 0
        reasons = ledger.db.execute(
            "SELECT failure_kind, error, COUNT(*) FROM examples WHERE decision = 'failed' "
            "GROUP BY failure_kind, error ORDER BY COUNT(*) DESC LIMIT 3"
        ).fetchall()
    finally:
        ledger.close()
    print(
        f"foundry run: error: {failed} of {calls} ground-truth calls failed "
        f"(more than max_failure_share = {max_share:g})",
        file=sys.stderr,
    )
    for kind, error, count in reasons:
        first = error.splitlines()[0][:200] if error else ""
        print(f"  {count} x {kind}: {first}", file=sys.stderr)
    return 3


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify a user's JSONL: every line ends as a ledger row or a verdict of its own, and
    ``<run_dir>/verdicts.jsonl`` has one verdict per line, in the file's order."""
    from foundry.config import load_config
    from foundry.inputs import (
        JsonlInput,
        ledger_lines,
        load_saved_surrogate,
        record_duplicates,
        write_verdicts,
    )
    from foundry.ledger.export import export_run
    from foundry.loop import Scheduler
    from foundry.registry import load_domain

    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"no input file {args.input}")
    over = _overrides(args)
    over.setdefault("run_dir", str(Path("runs") / f"verify-{path.stem}"))
    over["surrogate"] = False
    over.setdefault("budget", {})["max_candidates"] = None
    cfg = load_config(args.config, **over)
    domain = load_domain(cfg.domain, cfg.allowed_domains, cfg.domain_options)
    source = JsonlInput.scan(path, domain.name, domain.identity)
    resume = bool(args.resume)
    # a resumed run feeds only the lines its ledger has no row for yet
    skip = ledger_lines(Path(cfg.run_dir), source.stream_id) if resume else ()
    saved = load_saved_surrogate(Path(args.surrogate_from)) if args.surrogate_from else None
    scheduler = Scheduler(
        cfg,
        domain,
        candidates=source.batches(cfg.batch_size, cfg.seed, skip_lines=skip),
        stream_id=source.stream_id,
        resume=resume,
    )
    resumed = scheduler.previous is not None
    if resumed:
        print(f"resuming the verification in {cfg.run_dir} ({len(skip):,} lines in its ledger)",
              file=sys.stderr)  # fmt: skip
    record_duplicates(scheduler.ledger, source.duplicates())
    if saved is not None and not resumed:  # a resumed run restores the model it had
        model, version, why = saved
        scheduler.add_challenger(model)
        print(
            f"surrogate v{version} of {args.surrogate_from} ({why}) must earn its certificate "
            "on audits of these inputs; until then every item goes to the ground truth"
        )
    stats = scheduler.run()
    export, _n = export_run(cfg.run_dir, fmt="jsonl", decisions=None)
    verdicts, counts = write_verdicts(Path(cfg.run_dir), source)
    print(
        f"verified {source.n_lines - source.n_blank} inputs: {counts['accepted']} accepted, "
        f"{counts['rejected']} rejected, {counts['invalid']} invalid, {counts['failed']} "
        f"failed, {counts['deferred']} deferred, {counts['duplicate']} duplicate, "
        f"{counts['pending']} pending; "
        f"{counts['skipped']} blank lines skipped"
    )
    print(f"verdicts: {verdicts} (one line per input line)   ledger export: {export}")
    if source.unrecorded:  # a bug, should it happen: said, not hidden
        print(f"warning: {source.unrecorded} lines were read but have no ledger row (pending "
              "in the verdicts)", file=sys.stderr)  # fmt: skip
    stop_signal = scheduler.stop_signal
    if stop_signal is not None:
        print(
            f"verification interrupted ({stats.stop_reason}); continue with: foundry verify "
            f"{path} --resume --run-dir {cfg.run_dir}"
            + (f" --config {args.config}" if args.config else ""),
            file=sys.stderr,
        )
        return 128 + stop_signal
    return _failure_status(Path(cfg.run_dir), cfg.max_failure_share)


def _print_status(run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from foundry.ledger.export import summarize

    s = summarize(Path(run_dir))
    console = Console()
    table = Table(title=f"foundry run {s['run_dir']} ({s['domain']})", show_header=False)
    state = s["state"]
    if state == "running":
        state = "running, or killed (foundry run --resume continues it)"
    elif state == "interrupted":
        state = f"interrupted ({s['stop_reason']}); foundry run --resume continues it"
    else:
        state = f"{state}: {s['stop_reason']}"
    table.add_row("state", state)
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
    gen = s["generation_last"]
    if gen is not None:
        ratio = (
            f"Vendi {gen['vendi'] / gen['reference_vendi']:.0%} of generation 0's"
            if gen.get("vendi") and gen.get("reference_vendi")
            else "Vendi -"
        )
        mmd = f", MMD^2 to the reservoir {gen['mmd2']:.3g}" if gen.get("mmd2") is not None else ""
        rate = gen.get("acceptance_rate")
        table.add_row(
            "generations",
            f"{s['generations_closed']} closed; generation {gen['generation']}: {ratio}{mmd}, "
            + (f"acceptance {rate:.0%}, " if rate is not None else "")
            + f"real parents {gen.get('real_fraction', 0):.0%}",
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
    path, n = export_run(
        Path(args.run_dir), args.out, fmt=args.format, decisions=decisions,
        real_share=args.real_share,
    )  # fmt: skip
    mixed = (
        f" (real examples: {args.real_share:.0%} of the sample weight)" if args.real_share else ""
    )
    print(f"wrote {n} rows to {path}{mixed}")
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

    from foundry.submit import add_submit_parser

    add_submit_parser(sub, _add_run_flags)

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
    p.add_argument(
        "--real-share",
        type=float,
        metavar="F",
        help="add a sample_weight column giving the run's verified real examples this share",
    )
    p.set_defaults(func=cmd_export)

    from foundry.ledger.lineage import add_lineage_parser
    from foundry.ledger.replay import add_replay_parser
    from foundry.report import add_report_parser

    add_report_parser(sub)
    add_lineage_parser(sub)
    add_replay_parser(sub)

    p = sub.add_parser("domains", help="list installed domain plugins")
    p.set_defaults(func=cmd_domains)

    p = sub.add_parser("new-domain", help="scaffold a plugin that passes check_domain")
    p.add_argument("name")
    p.add_argument("--dest", default=".")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_new_domain)
    return parser


def _one_line(exc: BaseException) -> str:
    """An error as one line: the first line of its message, with what kind it was when that
    says something the message does not."""
    import sqlite3

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, sqlite3.DatabaseError):
        return f"the ledger cannot be used: {text}"
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        return f"{text}: {exc.filename}"
    return text


def main(argv: list[str] | None = None) -> int:
    import sqlite3
    import tomllib

    import yaml

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (
        FoundryError,
        OSError,
        ValueError,
        sqlite3.DatabaseError,
        yaml.YAMLError,
        tomllib.TOMLDecodeError,
    ) as exc:
        print(f"foundry {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the ledger keeps everything committed so far", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
