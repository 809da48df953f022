"""``foundry report``: a self-contained HTML page of a run, checked in a real headless Chromium.

The run is real (the scheduler on the sliced analytic domain). The generation loop lands
separately, so its ledger traces - monitor rows of kind "generation", the meta key
``compute``, generation numbers other than 0 - are hand-written into the finished ledger here.

The browser test needs Chromium and its driver (Debian: ``apt-get install chromium
chromium-driver``) and Selenium; without them it skips, unless FOUNDRY_BROWSER_REQUIRED=1,
which makes it fail instead (CI).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest

from foundry.config import RunConfig
from foundry.ledger import Ledger
from foundry.loop import Scheduler
from foundry.report import add_report_parser, load, write_report
from foundry.report.svg import nice_scale

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HOSTILE = "<script>alert(1)</script>"
SLICES = ("q1", "q2", "q3", "q4")
N_GENERATIONS = 4
#: charts the full run's report must draw, with marks in each
CHARTS = (
    "acceptance", "acceptance-generation", "audit-error", "diversity", "drift",
    "drift-wasserstein", "drift-kl", "diversity-window", "drift-window", "real-ratio",
    "synthetic-to-real", "source-mix", "compute",
)  # fmt: skip
SECTIONS = ("summary", "acceptance", "audit-error", "diversity", "real-ratio", "compute", "events")


def _config(run_dir: Path, domain: str = "analytic_domain:SlicedAnalyticDomain", **kw) -> RunConfig:
    base = dict(
        domain=domain, run_dir=run_dir, executor="inline", isolation="none", progress=False,
        min_train_labels=200, audit_rate=0.3, retrain_every=1500, challenger_audits=1000,
        alpha=0.1, delta=0.25, seed=3, budget={"max_candidates": 3000},
    )  # fmt: skip
    return RunConfig(**{**base, **kw})


def _generation_rows(db: sqlite3.Connection) -> None:
    """Monitor rows as the generation loop writes them (hand-written: it lands separately)."""
    n_seen = db.execute("SELECT MAX(seq) FROM examples").fetchone()[0]
    for g in range(N_GENERATIONS):
        for k, name in enumerate(("__all__", *SLICES)):
            metrics = {
                "kind": "generation", "generation": g, "slice": name, "n": 750,
                "vendi": 9.0 - g - 0.3 * k, "reference_vendi": 10.0 - 0.2 * k,
                "mmd2": 0.01 * (g + 1) * (1 + 0.1 * k),
                "wasserstein": {"y": 0.05 * (g + 1), "x0": 0.03 * (g + 1)},
                "kl": {"y": 0.1 * (g + 1), "x0": 0.02 * (g + 1)},
                "acceptance_rate": 0.5, "real_fraction": 0.2 - 0.04 * g,
                "synthetic_to_real": (0.8 + 0.04 * g) / (0.2 - 0.04 * g),
            }  # fmt: skip
            db.execute(
                "INSERT INTO monitor VALUES (?, ?, ?)", (1e9 + g, n_seen, json.dumps(metrics))
            )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real finished run, plus the generation loop's traces written by hand."""
    run_dir = tmp_path_factory.mktemp("report") / "run"
    Scheduler(_config(run_dir)).run()
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    with db:
        # stand-ins for the generation loop: four generations over the seq range ...
        n = db.execute("SELECT MAX(seq) FROM examples").fetchone()[0]
        db.execute(f"UPDATE examples SET generation = (seq - 1) * {N_GENERATIONS} / ?", (n,))
        _generation_rows(db)
        compute = {
            str(g): {
                "generate_s": 0.5 + g, "surrogate_s": 0.2, "training_s": 1.0 + 0.5 * g,
                "ground_truth_s": {"ground-truth": 2.0 + g},
            }
            for g in range(N_GENERATIONS)
        }  # fmt: skip
        db.execute("INSERT OR REPLACE INTO meta VALUES ('compute', ?)", (json.dumps(compute),))
        # ... and a steering action among the events
        db.execute(
            "INSERT INTO events VALUES ((SELECT MAX(t) FROM events) + 1, 'info', 'steer', "
            "'steering: spread 1.0 -> 0.8')"
        )
    db.close()
    return run_dir


@pytest.fixture(scope="module")
def report(run_dir) -> Path:
    return write_report(run_dir)


def _self_contained(html: str) -> None:
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(?i)\b(src|href)\s*=\s*["']?\s*(\w+:)?//""", html)
    assert not re.search(r"(?i)<script[^>]*\bsrc", html)
    assert not re.search(r"(?i)<link[^>]*stylesheet", html)
    assert "@import" not in html and "url(" not in html


def test_report_is_one_self_contained_file_of_real_data(run_dir, report):
    assert report == run_dir / "report.html"
    html = report.read_text()
    _self_contained(html)
    assert "<script" not in html  # no script at all
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    for name in CHARTS:
        assert f'data-chart="{name}"' in html, name
    assert "no data" not in html  # every section of this run has data

    data = load(run_dir)
    counts = dict(
        sqlite3.connect(run_dir / "ledger.sqlite")
        .execute("SELECT decision, COUNT(*) FROM examples GROUP BY 1")
        .fetchall()
    )
    assert data.decisions == counts and data.total == 3000
    assert sum(w[2] for w in data.windows) == counts["accepted"]
    assert sorted(data.generations) == list(range(N_GENERATIONS))
    # the audited error: what the ledger's audits say, recomputed here
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    for name in (*SLICES, "all"):
        where = "" if name == "all" else f"AND slice = '{name}'"
        n, errors = db.execute(
            "SELECT COUNT(*), SUM((p_pass >= 0.5) != gt_passed) FROM examples WHERE audit = 1 "
            f"AND gt_passed IS NOT NULL AND p_pass IS NOT NULL {where}"
        ).fetchone()
        assert n > 0 and data.audit_totals[name] == (errors, n)
        assert data.audit_curves[name][-1][1] == pytest.approx(errors / n)
    in_force = db.execute("SELECT COUNT(*) FROM calibrations WHERE in_force = 1").fetchone()[0]
    assert in_force > 0 and len(data.calibrations) == in_force
    db.close()
    assert data.compute[3] == {
        "generate_s": 3.5, "surrogate_s": 0.2, "training_s": 2.5, "ground truth": 5.0
    }  # fmt: skip
    assert len(data.window_monitor) >= 1
    assert len(data.generation_monitor) == N_GENERATIONS * 5
    assert 'class="action"' in html  # the steering event is highlighted


def test_compute_per_fidelity_tier_from_verifications(tmp_path):
    run_dir = tmp_path / "ladder"
    ladder = ["coarse", "fine", "exact"]
    Scheduler(
        _config(run_dir, "ladder_domain:LadderDomain", ladder=ladder, retrain_every=800,
                challenger_audits=300, budget={"max_candidates": 1500})
    ).run()  # fmt: skip
    with sqlite3.connect(run_dir / "ledger.sqlite") as db:  # as an older run: no meta compute
        db.execute("DELETE FROM meta WHERE key = 'compute'")
        per_tier = dict(
            db.execute("SELECT fidelity, SUM(walltime_s) FROM verifications GROUP BY 1")
        )
    db.close()
    data = load(run_dir)
    assert data.compute[0] == pytest.approx({f"ground truth: {t}": per_tier[t] for t in ladder})
    assert 'data-chart="compute"' in write_report(run_dir).read_text()


def test_a_real_generation_loop_fills_the_generation_sections(tmp_path):
    """With the closed loop in this tree, its own monitor rows and compute account."""
    pytest.importorskip("foundry.loop.generations")
    import analytic_domain

    if not hasattr(analytic_domain, "EvolvingAnalyticDomain"):
        pytest.skip("no evolving test domain")
    run_dir = tmp_path / "generations"
    cfg = _config(
        run_dir, "analytic_domain:EvolvingAnalyticDomain", budget={"max_candidates": 4000},
        generations={"size": 1000, "parent_selection": "confident", "pool": "latest"},
    )  # fmt: skip
    Scheduler(cfg).run()
    data = load(run_dir)
    assert len({g for g, _ in data.generation_monitor}) >= 3
    assert len(data.compute) >= 3 and all("generate_s" in c for c in data.compute.values())
    html = write_report(run_dir).read_text()
    for name in ("acceptance-generation", "diversity", "drift", "real-ratio", "compute"):
        assert f'data-chart="{name}"' in html, name
    assert "no generation-monitor rows" not in html


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def browser(tmp_path):
    """A headless Chromium driven by Selenium (skip without one, unless required)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install selenium)")
    if missing:
        message = f"no browser to test in: {', '.join(missing)} missing"
        if os.environ.get("FOUNDRY_BROWSER_REQUIRED", "") not in ("", "0"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1100,1000",
    ):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_renders_in_a_real_browser(report, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(report.resolve().as_uri())
    assert browser.title == f"foundry report: {report.parent.name} (analytic_sliced)"
    for name in CHARTS:
        svgs = browser.find_elements(By.CSS_SELECTOR, f'svg[data-chart="{name}"]')
        assert len(svgs) == 1, name
        svg = svgs[0]
        assert svg.is_displayed() and svg.size["width"] > 100 and svg.size["height"] > 100, name
        marks = svg.find_elements(
            By.CSS_SELECTOR, "g.series polyline, g.series circle, g.series rect"
        )
        assert len(marks) > 0, name
        assert svg.find_elements(By.CSS_SELECTOR, "text.tick"), name  # tick labels
        assert svg.find_elements(By.CSS_SELECTOR, "g.legend-item"), name
    # the alpha line of the guarantee is drawn, the calibrations table filled
    assert browser.find_elements(By.CSS_SELECTOR, 'svg[data-chart="audit-error"] line.hline')
    assert "Calibrations in force" in browser.find_element(By.ID, "audit-error").text
    severe = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == []
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1100, min(int(height) + 50, 8000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    width, tall = _png_size(shot)
    assert width >= 800 and tall >= 1000 and shot.stat().st_size > 50_000


def test_a_run_without_optional_data_renders_no_data_sections(tmp_path):
    run_dir = tmp_path / "bare"
    ledger = Ledger(run_dir)  # a ledger with no examples, monitor, calibrations or compute
    ledger.set_meta("state", "running")
    for i in range(600):
        ledger.event("info", "note", f"routine {i}")
    ledger.event("error", "generate", f"ValueError: bad candidate {HOSTILE} & more")
    ledger.close()
    html = write_report(run_dir).read_text()
    _self_contained(html)
    assert html.count('class="nodata"') >= 6
    assert "data-chart=" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "<script" not in html
    # at most 500 events, the error among them, and a note saying so
    events = html.split('<section id="events">')[1]
    assert "500 of 601 events shown" in events and events.count("<tr") == 1 + 500
    assert '<tr class="error">' in events


def test_an_old_minimal_ledger_renders(tmp_path):
    """A ledger of an older foundry: meta and a few example columns, no other table."""
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    db.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE examples (seq INTEGER PRIMARY KEY, decision TEXT NOT NULL);"
    )
    db.execute("INSERT INTO meta VALUES ('domain', ?)", (json.dumps({"name": HOSTILE}),))
    db.execute("INSERT INTO meta VALUES ('config', '{\"alpha\": 0.1}')")
    db.executemany(
        "INSERT INTO examples VALUES (?, ?)",
        [(i, ("accepted", "rejected", "pending")[i % 3]) for i in range(1, 301)],
    )
    db.commit()
    db.close()
    out = write_report(run_dir, tmp_path / "elsewhere.html")
    html = out.read_text()
    assert out == tmp_path / "elsewhere.html" and not (run_dir / "report.html").exists()
    assert 'data-chart="acceptance"' in html
    assert "&lt;script&gt;" in html and "<script" not in html
    assert "no data" in html


def test_a_missing_ledger_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        write_report(tmp_path / "nope")


def test_the_report_subcommand(run_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="foundry")
    sub = parser.add_subparsers(dest="command", required=True)
    add_report_parser(sub)
    out = tmp_path / "r.html"
    args = parser.parse_args(["report", str(run_dir), "--out", str(out)])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert parser.parse_args(["report"]).run_dir == "runs/latest"
    # the default place, in a copy of the run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report.html"))
    args = parser.parse_args(["report", str(copy)])
    assert args.func(args) == 0 and (copy / "report.html").is_file()


@pytest.mark.parametrize(
    "lo, hi, integer, ticks",
    [
        (0, 1, False, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (0, 0.1, False, [0, 0.02, 0.04, 0.06, 0.08, 0.1]),
        (0, 3, True, [0, 1, 2, 3]),
        (5, 5, False, [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6]),
    ],
)
def test_nice_scale(lo, hi, integer, ticks):
    first, last, got = nice_scale(lo, hi, 5, integer=integer)
    assert got == pytest.approx(ticks) and (first, last) == (got[0], got[-1])
