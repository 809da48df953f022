"""``foundry lineage ID``: everything the ledger knows about how one example came to be.

A released example is only as trustworthy as its chain: which parents it was made from (back
to real examples), which generator regime and steering made it, every tier that verified it
and with which simulator versions, what the surrogate thought, and the certificate it was
released under. All of that is in the run's ledger; this module only reads it - through a
read-only SQLite connection, so that looking at a live run or at someone else's run can never
change it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sqlite3
import urllib.parse
from pathlib import Path
from typing import Any

from foundry.contract import FoundryError, canonical_json

#: Most levels of ancestors followed (a generation loop's chains are far shorter; a corrupt
#: or adversarial ``parent_ids`` column must not make the lookup run away).
MAX_DEPTH = 64
#: Shortest content-id prefix accepted (8 hex digits: one in four billion collide by chance).
MIN_PREFIX = 8
#: What a parent missing from the ledger is: the generation loop draws parents from this
#: run's verified examples and from the domain's real reservoir, which has no ledger rows.
NOT_IN_LEDGER = "real (reservoir), not in this ledger"

_HEX = re.compile(r"[0-9a-f]+")


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write: ``mode=ro``, or - where SQLite cannot open a WAL
    database read-only (a killed run, no ``-shm`` file) - ``immutable``, which reads the main
    file as it is. Never a plain connection: recovering a WAL would modify the run."""
    if not path.is_file():
        raise FoundryError(f"no ledger at {path}")
    uri = "file:" + urllib.parse.quote(str(path.resolve()))
    last: sqlite3.Error | None = None
    for flags in ("mode=ro", "mode=ro&immutable=1"):
        try:
            db = sqlite3.connect(f"{uri}?{flags}", uri=True, check_same_thread=False)
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            last = exc
            continue
        db.row_factory = sqlite3.Row
        return db
    raise FoundryError(f"cannot read the ledger {path}: {last}")


def read_meta(db: sqlite3.Connection) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in db.execute("SELECT key, value FROM meta"):
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _parents(text: str | None) -> list[str]:
    """A row's ``parent_ids`` as a list of ids (a malformed column as no parents)."""
    value = _json(text)
    if not isinstance(value, list):
        return []
    return [p for p in value if isinstance(p, str)]


def resolve_id(db: sqlite3.Connection, example_id: str, run_dir: Path) -> sqlite3.Row:
    """The example row an id names: ``#seq``, a content id, or a unique prefix of one
    (>= 8 hex digits). Errors name the id and the run dir, in one line."""
    text = example_id.strip()
    if text.startswith("#"):
        try:
            seq = int(text[1:])
        except ValueError:
            raise FoundryError(f"{example_id!r} is not a seq number (#123)") from None
        row = db.execute("SELECT * FROM examples WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise FoundryError(f"no example with seq {seq} in the ledger of {run_dir}")
        return row
    row = db.execute("SELECT * FROM examples WHERE content_id = ?", (text,)).fetchone()
    if row is not None:
        return row
    prefix = text.lower()
    if len(prefix) < MIN_PREFIX or not _HEX.fullmatch(prefix):
        raise FoundryError(
            f"no example {example_id!r} in the ledger of {run_dir} (give a content id, a "
            f"prefix of at least {MIN_PREFIX} hex digits, or #seq)"
        )
    # a range scan uses the content-id index ('~' sorts after every hex digit)
    bounds = (prefix, prefix + "~")
    n = db.execute(
        "SELECT COUNT(*) FROM examples WHERE content_id >= ? AND content_id < ?", bounds
    ).fetchone()[0]
    if n == 0:
        raise FoundryError(f"no example {example_id!r} in the ledger of {run_dir}")
    if n > 1:
        raise FoundryError(
            f"{example_id!r} is ambiguous in the ledger of {run_dir}: {n} content ids start "
            "with it; give more digits"
        )
    return db.execute(
        "SELECT * FROM examples WHERE content_id >= ? AND content_id < ?", bounds
    ).fetchone()


def _regime(db: sqlite3.Connection, meta: dict[str, Any], generator_hash: str) -> dict[str, Any]:
    """The generator config and steering of a regime: from meta ``regimes`` when the run
    recorded it; for older runs, the run's initial and last steering are tried against the
    hash (it is a hash of domain, version, steering and seed, so a match is certain)."""
    config = meta.get("config") or {}
    out: dict[str, Any] = {
        "generator_hash": generator_hash,
        "domain": config.get("domain"),
        "seed": config.get("seed"),
        "domain_options": config.get("domain_options", {}),
    }
    if generator_hash == "external" or generator_hash.startswith("input:"):
        out["input"] = generator_hash.partition(":")[2] or "an external candidate stream"
    known = (meta.get("regimes") or {}).get(generator_hash)
    if isinstance(known, dict):
        out.update({k: known.get(k) for k in ("steering", "generation", "first_seq")})
    else:
        steering = _steering_for(meta, generator_hash)
        if steering is not None:
            out["steering"] = steering
        first = db.execute(
            "SELECT MIN(seq) FROM examples WHERE generator_hash = ?", (generator_hash,)
        ).fetchone()[0]
        out["first_seq"] = first
    if config.get("generations", {}).get("size"):
        out["generations"] = config["generations"]
    return out


def _steering_for(meta: dict[str, Any], generator_hash: str) -> dict[str, float] | None:
    domain = meta.get("domain") or {}
    config = meta.get("config") or {}
    initial = {**domain.get("steering_defaults", {}), **config.get("steering", {})}
    last = (meta.get("progress") or {}).get("steering")
    for steering in (initial, last):
        if not isinstance(steering, dict):
            continue
        steering = {k: float(v) for k, v in steering.items()}
        blob = canonical_json(
            {
                "domain": domain.get("name"),
                "version": domain.get("version"),
                "steering": steering,
                "seed": config.get("seed"),
            }
        )
        if hashlib.blake2b(blob.encode(), digest_size=8).hexdigest() == generator_hash:
            return steering
    return None


def _verifications(db: sqlite3.Connection, row: sqlite3.Row, top: str) -> list[dict[str, Any]]:
    """Every tier's verdict on the item: the ladder's table rows, and the top tier from the
    example row itself where the table does not hold it (a one-tier run)."""
    out = []
    for v in db.execute(
        "SELECT * FROM verifications WHERE seq = ? ORDER BY created_at", (row["seq"],)
    ):
        out.append(
            {
                "fidelity": v["fidelity"],
                "passed": None if v["passed"] is None else bool(v["passed"]),
                "properties": _json(v["properties"]),
                "measurements": _json(v["measurements"]),
                "reason": v["reason"],
                "simulator": v["simulator"],
                "simulator_version": v["simulator_version"],
                "walltime_s": v["walltime_s"],
                "host": v["host"],
                "failure_kind": v["failure_kind"],
                "error": v["error"],
            }
        )
    ran = row["simulator"] is not None or row["failure_kind"] is not None
    if ran and not any(v["fidelity"] == top for v in out):
        out.append(
            {
                "fidelity": top,
                "passed": None if row["gt_passed"] is None else bool(row["gt_passed"]),
                "properties": _json(row["gt_properties"]),
                "measurements": _json(row["gt_measurements"]),
                "reason": row["gt_reason"],
                "simulator": row["simulator"],
                "simulator_version": row["simulator_version"],
                "walltime_s": row["walltime_s"],
                "host": row["worker_host"],
                "failure_kind": row["failure_kind"],
                "error": row["error"],
                "attempts": row["attempts"],
            }
        )
    return out


def _surrogate(db: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any] | None:
    version = row["surrogate_version"]
    if version is None:
        return None
    out: dict[str, Any] = {
        "version": version,
        "p_pass": row["p_pass"],
        "predicted": _json(row["predicted"]),
        "uncertainty": _json(row["uncertainty"]),
        "accept_risk": row["accept_risk"],
        "reject_risk": row["reject_risk"],
        "route": row["route"],
        "audit": bool(row["audit"]),
    }
    fitted = db.execute("SELECT * FROM surrogates WHERE version = ?", (version,)).fetchone()
    if fitted is not None:
        out["n_labels"] = fitted["n_labels"]
        out["fit_s"] = fitted["fit_s"]
    opinions = db.execute(
        "SELECT surrogate_version, accept_risk, reject_risk, p_pass, predicted "
        "FROM audit_opinions WHERE seq = ? ORDER BY surrogate_version",
        (row["seq"],),
    ).fetchall()
    if opinions:  # an audit: every version that scored it, as journalled when it was routed
        out["audit_opinions"] = [{**dict(o), "predicted": _json(o["predicted"])} for o in opinions]
    return out


def _certificate(db: sqlite3.Connection, row: sqlite3.Row) -> dict[str, Any] | None:
    cal = row["calibration_version"]
    if cal is None:
        return None
    found = db.execute("SELECT * FROM calibrations WHERE version = ?", (cal,)).fetchone()
    if found is None:
        return {"version": cal, "missing": True}
    keys = (
        "version", "surrogate_version", "regime", "slice", "look", "audits_used",
        "last_audit_seq", "alpha", "reject_alpha", "delta_spent", "accept_threshold",
        "accept_n", "accept_errors", "accept_bound", "reject_threshold", "reject_n",
        "reject_errors", "reject_bound",
    )  # fmt: skip
    out = {k: found[k] for k in keys}
    out["estimate_at_release"] = row["bound"]
    return out


def _ancestors(
    db: sqlite3.Connection, ids: list[str], path: tuple[str, ...], shown: set[str]
) -> list[dict[str, Any]]:
    """Parent nodes, recursively: a compact summary of each ancestor and its own parents.
    A cycle (an id on its own path) and the depth cap end a branch with a note; an ancestor
    reached twice (shared by two parents) is expanded once."""
    out: list[dict[str, Any]] = []
    for pid in ids:
        if pid in path:
            out.append({"id": pid, "note": "cycle: this id is its own ancestor"})
            continue
        row = db.execute(
            "SELECT seq, content_id, source, generation, parent_ids, generator_hash, slice, "
            "decision, decided_by FROM examples WHERE content_id = ?",
            (pid,),
        ).fetchone()
        if row is None:
            out.append({"id": pid, "in_ledger": False, "note": NOT_IN_LEDGER})
            continue
        node: dict[str, Any] = {
            "id": pid,
            "in_ledger": True,
            "seq": row["seq"],
            "source": row["source"],
            "generation": row["generation"],
            "generator_hash": row["generator_hash"],
            "slice": row["slice"],
            "decision": row["decision"],
            "decided_by": row["decided_by"],
        }
        parents = _parents(row["parent_ids"])
        if pid in shown and parents:
            node["note"] = "ancestors shown above"
        elif len(path) >= MAX_DEPTH and parents:
            node["note"] = f"ancestors beyond {MAX_DEPTH} levels not followed"
        else:
            shown.add(pid)
            node["parents"] = _ancestors(db, parents, (*path, pid), shown)
        out.append(node)
    return out


def lineage(run_dir: Path, example_id: str) -> dict[str, Any]:
    """The full chain of one example of the run in ``run_dir``, as plain JSON data."""
    run_dir = Path(run_dir)
    db = connect_read_only(run_dir / "ledger.sqlite")
    try:
        row = resolve_id(db, example_id, run_dir)
        meta = read_meta(db)
        top = (meta.get("verifier") or {}).get("fidelity") or "ground-truth"
        verifications = _verifications(db, row, top)
        surrogate = _surrogate(db, row)
        certificate = _certificate(db, row)
        regime = _regime(db, meta, row["generator_hash"])
        parents = _ancestors(db, _parents(row["parent_ids"]), (row["content_id"],), set())
    finally:
        db.close()
    return {
        "run_dir": str(run_dir),
        "id": row["content_id"],
        "seq": row["seq"],
        "domain": row["domain"],
        "domain_version": row["domain_version"],
        "domain_options": _json(row["domain_options"]),
        "payload": _json(row["payload"]),
        "source": row["source"],
        "generation": row["generation"],
        "input_line": row["input_line"],
        "batch": row["batch"],
        "slice": row["slice"],
        "rule": {"ok": bool(row["rule_ok"]), "reason": row["rule_reason"]},
        "decision": row["decision"],
        "decided_by": row["decided_by"],
        "reason": row["reason"],
        "route": row["route"],
        "audit": bool(row["audit"]),
        "regime": regime,
        "surrogate": surrogate,
        "verifications": verifications,
        "certificate": certificate,
        "parents": parents,
    }


# -- text -------------------------------------------------------------------------------------


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _tree(nodes: list[dict[str, Any]], indent: str) -> list[str]:
    lines = []
    for node in nodes:
        if "seq" not in node:  # not in the ledger, or a cycle
            lines.append(f"{indent}{node['id']}  {node['note']}")
        else:
            who = f" by {node['decided_by']}" if node.get("decided_by") else ""
            note = f"  ({node['note']})" if node.get("note") else ""
            lines.append(
                f"{indent}{node['id']}  #{node['seq']} {node['source']}, generation "
                f"{node['generation']}, {node['decision']}{who}, slice {node['slice']}{note}"
            )
        lines.extend(_tree(node.get("parents", []), indent + "  "))
    return lines


def _fitted(s: dict[str, Any]) -> str:
    if "n_labels" not in s:
        return ""
    if s["n_labels"] == 0:  # installed, not trained (verify --surrogate-from)
        return " (given to the run, not fit on its labels)"
    return f" (fit on {s['n_labels']} labels)"


def format_lineage(d: dict[str, Any]) -> str:
    """The lineage as text for a terminal: the example, its regime, tiers, opinion,
    certificate and ancestors."""
    who = f" by {d['decided_by']}" if d["decided_by"] else ""
    lines = [
        f"example {d['id']}  (#{d['seq']} in {d['run_dir']})",
        f"  domain      {d['domain']} {d['domain_version']}  "
        f"options {json.dumps(d['domain_options'])}",
        f"  source      {d['source']}, generation {d['generation']}, slice {d['slice']}"
        + (f", input line {d['input_line']}" if d["input_line"] is not None else ""),
        f"  decision    {d['decision']}{who}  ({d['reason']})",
    ]
    if not d["rule"]["ok"]:
        lines.append(f"  rule check  failed: {d['rule']['reason']}")
    r = d["regime"]
    if "input" in r:
        regime = f"  regime      input {r['input']}"
    else:
        regime = f"  regime      {r['generator_hash']}"
        regime += f"  seed {r.get('seed')}, steering {json.dumps(r.get('steering', 'unknown'))}"
        if r.get("generation") is not None:
            regime += f", generation {r['generation']}"
    if r.get("first_seq") is not None:
        regime += f", from #{r['first_seq']}"
    lines.append(regime)
    s = d["surrogate"]
    if s is None:
        lines.append("  surrogate   none scored it")
    else:
        lines.append(
            f"  surrogate   v{s['version']}"
            + _fitted(s)
            + f": p_pass {_num(s['p_pass'])}, predicted {json.dumps(s['predicted'])}, "
            f"accept_risk {_num(s['accept_risk'])}, reject_risk {_num(s['reject_risk'])}, "
            f"route {s['route']}" + (", audited" if s["audit"] else "")
        )
        for o in s.get("audit_opinions", []):
            lines.append(
                f"              audit opinion of v{o['surrogate_version']}: accept_risk "
                f"{_num(o['accept_risk'])}, reject_risk {_num(o['reject_risk'])}"
            )
    if not d["verifications"]:
        lines.append("  verified    never by a simulator")
    for v in d["verifications"]:
        if v["failure_kind"]:
            verdict = f"failed ({v['failure_kind']}: {v['error']})"
        else:
            verdict = ("passed" if v["passed"] else "failed the spec") + (
                f", {json.dumps(v['properties'])}" if v["properties"] else ""
            )
        lines.append(
            f"  verified    [{v['fidelity']}] {v['simulator']} {v['simulator_version']}: "
            f"{verdict}; {_num(v['walltime_s'])} s on {v['host']}"
        )
    c = d["certificate"]
    if c is not None and not c.get("missing"):
        lines.append(
            f"  certificate #{c['version']} of surrogate v{c['surrogate_version']} for slice "
            f"{c['slice']} in regime {c['regime']}: look {c['look']} on {c['audits_used']} "
            f"audits; accept threshold {_num(c['accept_threshold'])} (estimate "
            f"{_num(c['accept_bound'])}), reject threshold {_num(c['reject_threshold'])} "
            f"(estimate {_num(c['reject_bound'])}); promised alpha {_num(c['alpha'])} with "
            f"delta {_num(c['delta_spent'])} spent on this look"
        )
    elif c is not None:
        lines.append(f"  certificate #{c['version']} (not in the calibrations table)")
    elif d["decided_by"] == "ground_truth":
        lines.append("  certificate none needed: labelled by the ground truth")
    if d["parents"]:
        lines.append("  parents")
        lines.extend(_tree(d["parents"], "    "))
    else:
        lines.append("  parents     none")
    return "\n".join(lines)


# -- command line -----------------------------------------------------------------------------


def cmd_lineage(args: argparse.Namespace) -> int:
    d = lineage(Path(args.run_dir), args.example_id)
    print(json.dumps(d, indent=2, sort_keys=True) if args.json else format_lineage(d))
    return 0


def add_lineage_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """``foundry lineage ID [--run-dir DIR] [--json]`` on the CLI's subparsers."""
    p = sub.add_parser(
        "lineage",
        help="an example's chain: parents, regime, verifications, surrogate, certificate",
    )
    p.add_argument("example_id", help="content id, a unique prefix (>= 8 hex digits), or #seq")
    p.add_argument("--run-dir", default="runs/latest")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lineage)
    return p
