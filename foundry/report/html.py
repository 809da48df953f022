"""The report page: one self-contained HTML document (inline CSS and SVG, no script, nothing
fetched at view time). Every text that comes from the ledger is escaped."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from foundry.report.data import ACTION_WORDS, ALL_SLICES, MAX_EVENTS, ReportData, number
from foundry.report.svg import PALETTE, HLine, Series, bar_chart, fmt, line_chart

#: config keys shown in the header (the whole config is in a collapsed block below)
CONFIG_KEYS = (
    "domain", "policy", "alpha", "delta", "audit_rate", "seed", "budget", "executor",
    "n_workers", "batch_size", "fidelity", "ladder", "steering", "domain_options",
    "min_train_labels", "retrain_every",
)  # fmt: skip

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1000px;padding:1em 1.5em;color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em}h3{font-size:1.05em}
nav a{margin-right:.8em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.nodata{color:#777;font-style:italic}.note{color:#555;font-size:.9em}
svg.chart{display:block;max-width:100%;height:auto;margin:.6em 0;background:#fff;
border:1px solid #eee}
svg .grid{stroke:#eee}svg .axis,svg .tickmark{stroke:#555}
svg text{font-size:11px;fill:#333}svg .chart-title{font-size:13px;font-weight:600}
svg .axis-label{font-size:12px}
tr.action td{background:#e8f1fb}tr.warning td{background:#fff7dd}
tr.error td,tr.critical td{background:#fde8e8}
pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.85em;max-height:30em}
td.msg{white-space:pre-wrap;word-break:break-word;max-width:40em}
"""

SECTIONS = (
    ("summary", "Summary"),
    ("acceptance", "Acceptance"),
    ("audit-error", "Audited error vs guarantee"),
    ("diversity", "Diversity and drift"),
    ("real-ratio", "Real and synthetic"),
    ("compute", "Compute"),
    ("events", "Events"),
)


def _nodata(why: str = "") -> str:
    return f'<p class="nodata">no data{": " + escape(why) if why else ""}</p>'


def _chart(svg: str | None, why: str = "") -> str:
    return svg if svg is not None else _nodata(why)


def _table(
    head: Sequence[str] | None,
    rows: Iterable[Sequence[Any]],
    numeric: frozenset[int] | set[int] = frozenset(),
) -> str:
    out = ["<table>"]
    if head is not None:
        out += ["<tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            out.append(f"<td{cls}>{escape(_text(cell))}</td>")
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _text(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return fmt(v)
    if isinstance(v, str):
        return v
    return json.dumps(v, default=str)


def _slice_label(name: str) -> str:
    return "all" if name == ALL_SLICES else name


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _relative(t: Any, start: float | None) -> str:
    t = number(t)
    if t is None or start is None:
        return "-"
    s = t - start
    if abs(s) < 120:
        return f"+{s:.2f} s"
    h, rest = divmod(int(s), 3600)
    return f"+{h}:{rest // 60:02d}:{rest % 60:02d}"


# -- sections -------------------------------------------------------------------------------
def _summary(d: ReportData) -> str:
    meta, cfg, dom = d.meta, d.config, d.domain
    state = meta.get("state") or ("finished" if "finished_at" in meta else "running, or killed")
    stats = meta.get("stats") if isinstance(meta.get("stats"), dict) else {}
    stop = meta.get("stop_reason") or stats.get("stop_reason") or "-"
    rows: list[tuple[str, Any]] = [
        ("run dir", str(d.run_dir)),
        ("domain", f"{dom.get('name', '?')} {dom.get('version', '')}".strip()),
        ("state", state),
        ("stop reason", stop),
        ("started", _when(number(meta.get("started_at")) or d.start)),
        ("finished", _when(number(meta.get("finished_at")))),
        ("elapsed", f"{e:.1f} s" if (e := number(stats.get("elapsed_s"))) is not None else "-"),
        ("foundry", meta.get("foundry_version", "-")),
        ("candidates in ledger", f"{d.total:,}"),
    ]
    if isinstance(dom.get("slices"), list):
        rows.append(("slices", ", ".join(map(str, dom["slices"]))))
    out = [_table(None, rows)]
    out.append("<h3>Decisions</h3>")
    if d.decisions:
        out.append(
            _table(
                ("decision", "rows", "share"),
                (
                    (k, f"{n:,}", f"{n / d.total:.1%}")
                    for k, n in sorted(d.decisions.items(), key=lambda kv: -kv[1])
                ),
                {1, 2},
            )
        )
        if d.by_tier:
            out.append(
                _table(
                    ("decision", "decided by", "rows"),
                    ((a, b, f"{n:,}") for a, b, n in d.by_tier),
                    {2},
                )
            )
    else:
        out.append(_nodata("the ledger holds no examples"))
    out.append("<h3>Configuration</h3>")
    if cfg:
        shown = [(k, cfg[k]) for k in CONFIG_KEYS if k in cfg and cfg[k] not in (None, {}, [])]
        out.append(_table(("key", "value"), shown))
        full = json.dumps(cfg, indent=2, sort_keys=True, default=str)
        out.append(f"<details><summary>full config</summary><pre>{escape(full)}</pre></details>")
    else:
        out.append(_nodata("no config recorded"))
    return "".join(out)


def _acceptance(d: ReportData) -> str:
    windows = [w for w in d.windows if w[3] > 0]
    rate = [((a + b) / 2, acc / dec) for a, b, acc, dec, _ in windows]
    surrogate = [((a + b) / 2, sur / dec) for a, b, _, dec, sur in windows]
    out = [
        '<p class="note">Accepted share of decided rows (pending and deferred left out) per '
        "window of the ledger's sequence numbers, and the share the surrogate decided.</p>",
        _chart(
            line_chart(
                "acceptance",
                "acceptance rate per seq window",
                [Series("accepted", rate), Series("decided by surrogate", surrogate)],
                x_label="seq (candidate number)",
                y_label="share of decided rows",
                y_percent=True,
            ),
            "no decided rows",
        ),
    ]
    gens = {g: (a, n) for g, (a, n) in d.generations.items() if n}
    if len(gens) > 1:
        out.append(
            _chart(
                bar_chart(
                    "acceptance-generation",
                    "acceptance rate per generation",
                    [str(g) for g in gens],
                    [("accepted share", [a / n for a, n in gens.values()])],
                    x_label="generation",
                    y_label="share of decided rows",
                    y_percent=True,
                )
            )
        )
    elif gens:
        out.append('<p class="note">One generation: no per-generation breakdown.</p>')
    return "".join(out)


def _audit_error(d: ReportData) -> str:
    alpha = number(d.config.get("alpha"))
    out = [
        '<p class="note">Audits: items the ground truth checked at random. The surrogate errs '
        "on an audit when its prediction (p_pass &ge; 0.5: pass) disagrees with the ground "
        "truth; the curves are cumulative error rates per slice over seq. The guarantee "
        "(alpha) bounds the error of what the surrogate releases under a certificate.</p>"
    ]
    if d.domain.get("has_pass_fail") is False:
        out.append(_nodata("the domain has no pass/fail verdict"))
    else:
        keys = sorted(d.audit_curves, key=lambda k: (k != "all", k))
        series = [Series(f"{k} (n={d.audit_totals[k][1]:,})", d.audit_curves[k]) for k in keys]
        hlines = [HLine(f"alpha = {fmt(alpha)}", alpha)] if alpha is not None else []
        out.append(
            _chart(
                line_chart(
                    "audit-error",
                    "cumulative audited surrogate error per slice",
                    series,
                    x_label="seq (candidate number)",
                    y_label="error rate",
                    hlines=hlines,
                    y_percent=True,
                ),
                "no audit with a surrogate opinion",
            )
        )
        if d.audit_totals:
            out.append(
                _table(
                    ("slice", "audits", "errors", "error rate"),
                    (
                        (k, f"{n:,}", f"{e:,}", f"{e / n:.2%}")
                        for k, (e, n) in sorted(d.audit_totals.items())
                    ),
                    {1, 2, 3},
                )
            )
    out.append("<h3>Calibrations in force</h3>")
    if d.calibrations:
        head = (
            "slice", "regime", "surrogate", "accept threshold", "accept bound", "accept n",
            "reject threshold", "reject bound", "reject n", "alpha", "look",
        )  # fmt: skip
        keys = (
            "slice", "regime", "surrogate_version", "accept_threshold", "accept_bound",
            "accept_n", "reject_threshold", "reject_bound", "reject_n", "alpha", "look",
        )  # fmt: skip
        rows = sorted(([c.get(k) for k in keys] for c in d.calibrations), key=lambda r: str(r[0]))
        out.append(_table(head, rows, set(range(2, len(head)))))
    else:
        out.append(_nodata("no certificate in force"))
    return "".join(out)


def _per_generation(
    d: ReportData, key: str, *, reference: str | None = None, slices: bool = True
) -> list[Series]:
    """One series of metric ``key`` per slice (``reference``: its dashed companion)."""
    names = sorted({s for _, s in d.generation_monitor}, key=lambda s: (s != ALL_SLICES, s))
    if not slices:
        names = [s for s in names if s == ALL_SLICES] or names
    out: list[Series] = []
    for i, name in enumerate(names):
        rows = sorted((g, m) for (g, s), m in d.generation_monitor.items() if s == name)
        color = PALETTE[i % len(PALETTE)]
        pts = [(g, v) for g, m in rows if (v := number(m.get(key))) is not None]
        out.append(Series(_slice_label(name), pts, color=color))
        if reference:
            ref = [(g, v) for g, m in rows if (v := number(m.get(reference))) is not None]
            out.append(Series(f"{_slice_label(name)} reference", ref, dashed=True, color=color))
    return out


def _per_property(d: ReportData, key: str) -> list[Series]:
    """One series per property of the per-property metric ``key`` (whole generations)."""
    rows = {k: m for k, m in d.generation_monitor.items() if k[1] == ALL_SLICES}
    rows = rows or d.generation_monitor
    points: dict[str, list[tuple[float, float]]] = {}
    for (g, s), m in sorted(rows.items()):
        values = m.get(key)
        if isinstance(values, dict):
            for prop, v in values.items():
                if (x := number(v)) is not None:
                    label = prop if s == ALL_SLICES else f"{prop} @ {s}"
                    points.setdefault(str(label), []).append((g, x))
    return [Series(name, pts) for name, pts in sorted(points.items())]


def _diversity(d: ReportData) -> str:
    out = ["<h3>Per generation</h3>"]
    if d.generation_monitor:
        out.append(
            '<p class="note">Vendi score (effective number of distinct items) per generation '
            "and slice on a fixed number of points and a fixed kernel, dashed: generation 0's "
            "(the reference); MMD&sup2;, Wasserstein distance and KL divergence of the "
            "generation against the real reservoir.</p>"
        )
        charts = (
            ("diversity", "Vendi score per generation", "Vendi score",
             _per_generation(d, "vendi", reference="reference_vendi")),
            ("drift", "MMD² to the reservoir per generation", "MMD²",
             _per_generation(d, "mmd2")),
            ("drift-wasserstein", "Wasserstein distance per property", "Wasserstein",
             _per_property(d, "wasserstein")),
            ("drift-kl", "KL divergence per property", "KL", _per_property(d, "kl")),
        )  # fmt: skip
        for name, title, y_label, series in charts:
            svg = line_chart(
                name, title, series, x_label="generation", y_label=y_label, x_integer=True
            )
            out.append(_chart(svg, f"no {y_label} in the generation monitor"))
    else:
        out.append(_nodata("no generation-monitor rows"))
    out.append("<h3>Per window of candidates</h3>")
    rows = d.window_monitor
    div = [(n, v) for n, m in rows if (v := number(m.get("diversity"))) is not None]
    ref = [(n, v) for n, m in rows if (v := number(m.get("reference_diversity"))) is not None]
    drift = [(n, v) for n, m in rows if (v := number(m.get("drift_sd"))) is not None]
    if div or drift:
        out.append(
            '<p class="note">The window monitor: mean pairwise distance of standardised '
            "features (diversity) against the reference's, and the drift of the window's mean "
            "in reference standard deviations.</p>"
        )
        out.append(
            _chart(
                line_chart(
                    "diversity-window",
                    "diversity per window",
                    [Series("diversity", div), Series("reference", ref, dashed=True)],
                    x_label="candidates seen",
                    y_label="mean pairwise distance",
                ),
                "no diversity in the window monitor",
            )
        )
        out.append(
            _chart(
                line_chart(
                    "drift-window",
                    "drift per window",
                    [Series("drift", drift)],
                    x_label="candidates seen",
                    y_label="drift (sd)",
                ),
                "no drift in the window monitor",
            )
        )
    else:
        out.append(_nodata("no window-monitor rows with features"))
    return "".join(out)


def _real_ratio(d: ReportData) -> str:
    out = [
        '<p class="note">From the generation monitor: the share of each generation\'s parents '
        "drawn from the real reservoir, and synthetic parents per real one. Below: the "
        "accepted examples by source.</p>"
    ]
    if d.generation_monitor:
        out.append(
            _chart(
                line_chart(
                    "real-ratio",
                    "share of real parents per generation",
                    _per_generation(d, "real_fraction", slices=False),
                    x_label="generation",
                    y_label="real parents",
                    x_integer=True,
                    y_percent=True,
                ),
                "no real_fraction in the generation monitor",
            )
        )
        out.append(
            _chart(
                line_chart(
                    "synthetic-to-real",
                    "synthetic parents per real parent",
                    _per_generation(d, "synthetic_to_real", slices=False),
                    x_label="generation",
                    y_label="synthetic : real",
                    x_integer=True,
                ),
                "no synthetic_to_real in the generation monitor",
            )
        )
    else:
        out.append(_nodata("no generation-monitor rows"))
    out.append("<h3>Accepted examples by source</h3>")
    gens = sorted(d.sources)
    sources = sorted({s for per in d.sources.values() for s in per})
    out.append(
        _chart(
            bar_chart(
                "source-mix",
                "accepted examples by source per generation",
                [str(g) for g in gens],
                [(s, [d.sources[g].get(s, 0) for g in gens]) for s in sources],
                x_label="generation",
                y_label="accepted examples",
            ),
            "no accepted examples",
        )
    )
    return "".join(out)


def _part_label(part: str) -> str:
    """``generate_s`` -> ``generate``."""
    return part.removesuffix("_s").replace("_", " ")


def _compute(d: ReportData) -> str:
    gens = sorted(d.compute)
    order = ("generate_s", "surrogate_s", "training_s")
    parts = sorted({p for per in d.compute.values() for p in per}, key=lambda p: (
        order.index(p) if p in order else len(order), p))  # fmt: skip
    note = (
        '<p class="note">Seconds per generation: the loop\'s own phases (meta '
        "<code>compute</code>) and the ground truth's wall time per fidelity tier.</p>"
    )
    svg = bar_chart(
        "compute",
        "compute per generation",
        [str(g) for g in gens],
        [(_part_label(p), [d.compute[g].get(p, 0.0) for g in gens]) for p in parts],
        x_label="generation",
        y_label="seconds",
    )
    rows = [(_part_label(p), *(d.compute[g].get(p) for g in gens)) for p in parts]
    table = _table(("part", *(f"gen {g}" for g in gens)), rows, set(range(1, len(gens) + 1)))
    return note + (svg + table if svg is not None else _nodata("no compute recorded"))


def _events(d: ReportData) -> str:
    if not d.events:
        return _nodata("no events")
    out = []
    if d.n_events > len(d.events):
        out.append(
            f'<p class="note">{len(d.events)} of {d.n_events:,} events shown (at most '
            f"{MAX_EVENTS}: warnings, errors and actions first).</p>"
        )
    out.append("<table><tr><th>time</th><th>level</th><th>kind</th><th>message</th></tr>")
    for e in d.events:
        kind, level = str(e["kind"]), str(e["level"])
        cls = "action" if any(w in kind.lower() for w in ACTION_WORDS) else level.lower()
        out.append(
            f'<tr class="{escape(cls)}"><td class="num">{escape(_relative(e["t"], d.start))}'
            f"</td><td>{escape(level)}</td><td>{escape(kind)}</td>"
            f'<td class="msg">{escape(str(e["message"]))}</td></tr>'
        )
    out.append("</table>")
    return "".join(out)


def render(d: ReportData) -> str:
    """The whole page."""
    name = str(d.domain.get("name", "?"))
    title = f"foundry report: {d.run_dir.name} ({name})"
    bodies = {
        "summary": _summary,
        "acceptance": _acceptance,
        "audit-error": _audit_error,
        "diversity": _diversity,
        "real-ratio": _real_ratio,
        "compute": _compute,
        "events": _events,
    }
    nav = " ".join(f'<a href="#{sid}">{escape(label)}</a>' for sid, label in SECTIONS)
    sections = "".join(
        f'<section id="{sid}"><h2>{escape(label)}</h2>{bodies[sid](d)}</section>'
        for sid, label in SECTIONS
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>"
        f'<p class="note">written {escape(_when(time.time()))} from {escape(str(d.run_dir))}'
        f"/ledger.sqlite</p><nav>{nav}</nav>{sections}</body></html>\n"
    )
