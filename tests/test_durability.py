"""Durable runs: one live run per directory, stop signals, kills at random points, --resume.

What a resumed run must show, whatever the moment of the kill: no content id twice, every
candidate one final decision, every ground-truth result that was committed still there and
unchanged, no look at a stratum taken twice (confidence never re-spent), and - on the
in-process executor, where a run is a function of its seed - exactly the decisions of the
uninterrupted run. The statistical guarantee under kills is measured by a seeded sweep.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from analytic_domain import is_wrong, quadrant
from scipy import stats

from foundry.config import RunConfig
from foundry.contract import FoundryError
from foundry.ledger import Ledger, LedgerError
from foundry.loop import Scheduler

TESTS = Path(__file__).parent
REPO = TESTS.parent

INLINE = dict(
    domain="analytic_domain:SlicedAnalyticDomain", executor="inline", isolation="none",
    progress=False, min_train_labels=200, audit_rate=0.3, retrain_every=1500,
    challenger_audits=1000, alpha=0.1, delta=0.25,
)  # fmt: skip


def cfg_for(run_dir: Path, seed: int = 3, n: int = 6000, **kw) -> RunConfig:
    return RunConfig(run_dir=run_dir, seed=seed, budget={"max_candidates": n}, **{**INLINE, **kw})


def query(run_dir: Path, sql: str) -> list[tuple]:
    """Read a run dir as ``foundry status`` does (also a killed run's)."""
    ledger = Ledger(run_dir, read_only=True)
    try:
        return [tuple(r) for r in ledger.db.execute(sql).fetchall()]
    finally:
        ledger.close()


def decisions(run_dir: Path) -> dict[str, tuple]:
    rows = query(
        run_dir,
        "SELECT content_id, decision, decided_by, route, audit, surrogate_version, "
        "calibration_version FROM examples",
    )
    return {r[0]: r[1:] for r in rows}


def check_invariants(run_dir: Path, delta: float) -> None:
    """What every run dir must satisfy at the end, however often it was killed."""
    n, distinct = query(run_dir, "SELECT COUNT(*), COUNT(DISTINCT content_id) FROM examples")[0]
    assert n == distinct, "a content id twice"
    assert query(run_dir, "SELECT COUNT(*) FROM examples WHERE decision = 'pending'")[0][0] == 0
    looks = query(
        run_dir,
        "SELECT surrogate_version, regime, slice, look, COUNT(*) FROM calibrations "
        "GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1",
    )
    assert not looks, f"a look taken twice (its delta spent twice): {looks}"
    spent = query(run_dir, "SELECT COALESCE(SUM(delta_spent), 0) FROM calibrations")[0][0]
    assert spent <= delta + 1e-12
    lost = query(
        run_dir,
        "SELECT COUNT(*) FROM examples WHERE audit = 1 AND seq NOT IN "
        "(SELECT seq FROM audit_opinions) AND surrogate_version IS NOT NULL",
    )[0][0]
    assert lost == 0, "every audit routed with a surrogate opinion has it journalled"


# -- one live run per directory ------------------------------------------------------------------


def test_a_second_writer_is_refused_while_the_first_holds_the_dir(tmp_path):
    first = Ledger(tmp_path)
    with pytest.raises(LedgerError, match=r"in use by a live run \(pid"):
        Ledger(tmp_path)
    first.close()
    Ledger(tmp_path).close()  # released at close (and by the kernel when a process dies)


def test_a_finished_dir_needs_resume_and_resume_needs_the_same_config(tmp_path):
    run_dir = tmp_path / "run"
    Scheduler(cfg_for(run_dir, n=1000)).run()
    with pytest.raises(FoundryError, match="holds a finished run; add --resume"):
        Scheduler(cfg_for(run_dir, n=1000))
    with pytest.raises(FoundryError, match=r"config differs .* alpha \(0.1 -> 0.2\)"):
        Scheduler(cfg_for(run_dir, n=2000, alpha=0.2), resume=True)
    # extending the budget: the run goes on to 2000 candidates, nothing twice
    stats_ = Scheduler(cfg_for(run_dir, n=2000), resume=True).run()
    assert stats_.generated == 2000
    assert query(run_dir, "SELECT COUNT(*) FROM examples")[0][0] == 2000
    check_invariants(run_dir, 0.25)


def test_a_stopped_run_resumes_to_exactly_the_uninterrupted_decisions(tmp_path):
    """Stops at three loop points (before the first fit, mid-run, after a promotion), then a
    resume each time: the ledger ends as the uninterrupted run's, row for row (with
    ``deterministic = true``, results are folded in at batch boundaries, so what the loop
    decides cannot depend on when a stop came)."""
    whole = tmp_path / "whole"
    Scheduler(cfg_for(whole, deterministic=True)).run()
    parts = tmp_path / "parts"
    states = []
    for stop_at in (5, 17, 40, None):
        calls = {"n": 0}
        scheduler = Scheduler(cfg_for(parts, deterministic=True), resume=True)

        def progress(_stats, stop_at=stop_at, calls=calls, scheduler=scheduler):
            calls["n"] += 1
            if calls["n"] == stop_at:
                scheduler.request_stop()

        scheduler.progress = progress
        scheduler.run()
        states.append(query(parts, "SELECT value FROM meta WHERE key = 'state'")[0][0])
        if stop_at is not None:
            pending = query(parts, "SELECT COUNT(*) FROM examples WHERE decision = 'pending'")
            assert pending[0][0] > 0 or stop_at == 5, "in-flight items are left pending"
    assert states == ['"interrupted"'] * 3 + ['"finished"']
    assert decisions(parts) == decisions(whole)
    check_invariants(parts, 0.25)
    resumes = query(parts, "SELECT message FROM events WHERE kind = 'resume'")
    assert len(resumes) == 3


def test_steering_knobs_must_exist(tmp_path):
    with pytest.raises(ValueError, match=r"unknown steering knobs \['sprad'\]"):
        Scheduler(cfg_for(tmp_path / "r", steering={"sprad": 0.5}))


# -- the command line: signals, kills, errors ------------------------------------------------------


def foundry(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)])}
    return subprocess.Popen(
        [sys.executable, "-m", "foundry.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def write_config(path: Path, run_dir: Path, n: int, **extra) -> Path:
    lines = [
        'domain = "analytic_domain:SlicedAnalyticDomain"',
        f'run_dir = "{run_dir}"',
        'executor = "inline"',
        'isolation = "none"',
        "progress = false",
        "min_train_labels = 200",
        "audit_rate = 0.3",
        "retrain_every = 1500",
        "challenger_audits = 1000",
        "alpha = 0.1",
        "delta = 0.25",
        "seed = 11",
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
        "[budget]",
        f"max_candidates = {n}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def starts(run_dir: Path) -> int:
    """How often a run has started in ``run_dir`` (first start and resumes), as committed."""
    try:
        meta = dict(query(run_dir, "SELECT key, value FROM meta"))
    except (sqlite3.Error, FileNotFoundError, LedgerError):
        return 0
    return ("started_at" in meta) + len(json.loads(meta.get("resumed_at", "[]")))


def wait_running(
    run_dir: Path, after: int = 0, proc: subprocess.Popen | None = None, timeout_s: float = 60.0
) -> None:
    """Until the run has committed its start number ``after + 1`` (or ``proc`` ended)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if starts(run_dir) > after or (proc is not None and proc.poll() is not None):
            return
        time.sleep(0.02)
    raise AssertionError("the run did not start")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_commits_marks_interrupted_and_resume_finishes(tmp_path, sig, code):
    cfg = write_config(tmp_path / "c.toml", tmp_path / "run", 20_000)
    proc = foundry("run", "--config", str(cfg))
    wait_running(tmp_path / "run")
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "continue with: foundry run --resume" in err
    assert "terminate called" not in err and "Traceback" not in err
    state = query(tmp_path / "run", "SELECT value FROM meta WHERE key IN ('state')")
    assert state == [('"interrupted"',)]
    proc = foundry("run", "--config", str(cfg), "--resume")
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    check_invariants(tmp_path / "run", 0.25)
    assert query(tmp_path / "run", "SELECT COUNT(*) FROM examples")[0][0] == 20_000


def test_a_second_signal_exits_at_once_and_the_ledger_stays_usable(tmp_path):
    cfg = write_config(tmp_path / "c.toml", tmp_path / "run", 20_000)
    proc = foundry("run", "--config", str(cfg))
    wait_running(tmp_path / "run")
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    proc = foundry("run", "--config", str(cfg), "--resume")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    check_invariants(tmp_path / "run", 0.25)


def test_a_live_dir_is_refused_with_one_line(tmp_path):
    cfg = write_config(tmp_path / "c.toml", tmp_path / "run", 50_000)
    first = foundry("run", "--config", str(cfg))
    try:
        wait_running(tmp_path / "run")
        second = foundry("run", "--config", str(cfg), "--resume")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 2
        assert err.strip().count("\n") == 0 and "in use by a live run (pid" in err
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


@pytest.mark.slow
def test_twenty_kills_at_random_points_lose_and_duplicate_nothing(tmp_path):
    """SIGKILL the coordinator at >= 20 random moments of one run, resuming after each; the
    result is row for row the uninterrupted run's (``deterministic = true``: decisions are a
    function of seed, config and ground-truth results, not of timing - and a kill is timing),
    and nothing committed before a kill is ever changed or lost."""
    n = 80_000
    whole_cfg = write_config(tmp_path / "whole.toml", tmp_path / "whole", n, deterministic=True)
    proc = foundry("run", "--config", str(whole_cfg))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err

    run_dir = tmp_path / "killed"
    cfg = write_config(tmp_path / "killed.toml", run_dir, n, deterministic=True)
    rng = random.Random(20261201)
    kills, committed, lag_s = 0, {}, []
    # Kills land uniformly in [0, window_s] after a resume has started. A resume redoes what
    # the kill cut off (a synchronous fit is started again on the same labels), so on a slow
    # machine a fixed window can end every time inside the same redo and the run livelocks;
    # the window doubles after each kill that let nothing new be committed.
    window_s, last_progress, stalls = 0.45, None, 0
    max_window_s = window_s
    started = time.monotonic()
    while True:
        proc = foundry("run", "--config", str(cfg), "--resume")
        try:
            wait_running(run_dir, after=starts(run_dir), proc=proc)
        except AssertionError:
            proc.kill()
            raise
        time.sleep(rng.uniform(0.0, window_s))
        if proc.poll() is not None:  # finished before the kill
            assert proc.returncode == 0, proc.communicate()[1]
            break
        proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        proc.communicate(timeout=60)
        kills += 1
        progress = json.loads(query(run_dir, "SELECT value FROM meta WHERE key='progress'")[0][0])
        lag_s.append(killed_at - progress["committed_at"])  # the work a kill lost, at most
        moved = (progress["generated"], progress["labels_at_fit"]) != last_progress
        window_s = 0.45 if moved else min(2.0 * window_s, 30.0)
        stalls = 0 if moved else stalls + 1
        max_window_s = max(max_window_s, window_s)
        assert stalls < 8, f"no commit in 8 kill cycles, the last {window_s / 2:.1f} s after start"
        last_progress = progress["generated"], progress["labels_at_fit"]
        rows = query(run_dir, "SELECT seq, content_id, gt_properties FROM examples "
                     "WHERE decided_by = 'ground_truth'")  # fmt: skip
        now = {seq: (cid, props) for seq, cid, props in rows}
        changed = [seq for seq, v in committed.items() if now.get(seq) != v]
        assert not changed, f"committed ground truth lost or changed: {changed[:5]}"
        committed = now
        # a killed run reads "running", or "finished" if the kill came after the end
        # (during the export): never falsely finished
        state = query(run_dir, "SELECT value FROM meta WHERE key='state'")[0][0]
        pending = query(run_dir, "SELECT COUNT(*) FROM examples WHERE decision='pending'")
        assert state == '"running"' or (state == '"finished"' and pending[0][0] == 0)
        if state == '"finished"':  # killed while exporting: once more, to the end
            proc = foundry("run", "--config", str(cfg), "--resume")
            assert proc.wait(timeout=300) == 0, proc.communicate()[1]
            break
    check_invariants(run_dir, 0.25)
    assert decisions(run_dir) == decisions(tmp_path / "whole")
    assert kills >= 20, f"only {kills} kills landed before the run finished: grow n"
    final = {
        seq: (cid, props)
        for seq, cid, props in query(
            run_dir,
            "SELECT seq, content_id, gt_properties FROM examples WHERE decided_by='ground_truth'",
        )
    }
    assert all(final.get(seq) == v for seq, v in committed.items())
    resumes = query(run_dir, "SELECT COUNT(*) FROM events WHERE kind = 'resume'")[0][0]
    print(
        f"\n{kills} kills, {resumes} resumes, {time.monotonic() - started:.0f} s, widest kill "
        f"window {max_window_s:.2f} s; time since "
        f"the last commit at a kill: mean {np.mean(lag_s):.2f} s, max {max(lag_s):.2f} s"
    )
    # a commit comes every COMMIT_INTERVAL_S, plus the step under way (a fold or a batch: about
    # 0.1 s here, 0.5 s with both cores taken by other work)
    assert max(lag_s) < 4 * Ledger.COMMIT_INTERVAL_S, "a kill lost more than one commit interval"


# -- the guarantee under kills ---------------------------------------------------------------------

ALPHA, DELTA, FALSE_ALARM = 0.1, 0.25, 0.01
RUNS = 150
#: the sweep must detect a true per-run violation rate of 1.5 delta with this probability
MIN_POWER = 0.8


def killed_run(run_dir: Path, seed: int, n: int, rng: np.random.Generator) -> int:
    """One run, SIGKILLed by a timer at a random moment of each forked child's run (after it
    has rebuilt its state: the kill lands in the loop) and resumed in the next child; returns
    the number of kills that landed.

    A segment that ends without a new committed row (the resumed run was still redoing a cut
    off fit, say, on a loaded machine) doubles the next window, up to 32x: kills keep landing
    at random moments, but a run whose resume needs longer than the window cannot be starved."""
    rows_before, stalled = -1, 0
    for kills in range(200):
        delay = float(rng.uniform(0.03, 0.3)) * 2 ** min(stalled, 5)
        pid = os.fork()
        if pid == 0:  # the child: run until done or killed mid-whatever
            code = 1
            try:
                import threading

                scheduler = Scheduler(cfg_for(run_dir, seed=seed, n=n), resume=True,
                                      handle_signals=False)  # fmt: skip
                threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
                scheduler.run()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return kills
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        rows = _committed_rows(run_dir)
        stalled = stalled + 1 if rows <= rows_before else 0
        rows_before = max(rows, rows_before)
    raise AssertionError(f"run {seed} did not finish in 200 segments")


def _committed_rows(run_dir: Path) -> int:
    """Rows a killed run's ledger holds (a plain connection: it recovers the WAL)."""
    path = run_dir / "ledger.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM examples").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0
    finally:
        db.close()


@pytest.mark.slow
def test_the_guarantee_holds_per_slice_with_kills_and_resumes(tmp_path):
    """A seeded sweep of runs each killed at random moments (several kills a run): the share of
    runs in which some slice's released error exceeds alpha must stay within the binomial
    limit for delta (false-alarm rate <= 1 %, power >= 0.8 against 1.5 delta)."""
    limit = int(stats.binom.ppf(1 - FALSE_ALARM, RUNS, DELTA))
    assert stats.binom.sf(limit, RUNS, DELTA) <= FALSE_ALARM
    assert stats.binom.sf(limit, RUNS, 1.5 * DELTA) >= MIN_POWER
    rng = np.random.default_rng(7)
    bad, total_kills, releasing = 0, 0, 0
    started = time.perf_counter()
    for seed in range(RUNS):
        run_dir = tmp_path / f"r{seed}"
        total_kills += killed_run(run_dir, seed, 6000, rng)
        check_invariants(run_dir, DELTA)
        rows = query(run_dir, "SELECT payload, predicted, slice FROM examples "
                     "WHERE decided_by='surrogate' AND decision='accepted'")  # fmt: skip
        if len(rows) >= 100:
            releasing += 1
        if not rows:
            continue
        x = np.array([json.loads(r[0])["x"] for r in rows], dtype=float).reshape(-1, 2)
        y_hat = np.array([json.loads(r[1])["y"] for r in rows], dtype=float)
        wrong = is_wrong(x, y_hat)
        slices = np.array([r[2] for r in rows])
        assert (slices == quadrant(x)).all()
        worst = max(wrong[slices == q].mean() for q in np.unique(slices))
        bad += worst > ALPHA
    print(
        f"\nkilled sweep: {bad}/{RUNS} runs with a slice above alpha (limit {limit}); "
        f"{total_kills} kills; {releasing} runs released >= 100; "
        f"{time.perf_counter() - started:.0f} s"
    )
    assert total_kills >= 1.5 * RUNS, "the kills must land"
    assert releasing >= 0.8 * RUNS, "the guarantee must not come from releasing nothing"
    assert bad <= limit


# -- one-line errors, exit status, read-only readers, atomic files ---------------------------------


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)])}
    return subprocess.run(
        [sys.executable, "-m", "foundry.cli", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_inputs_end_in_one_line_and_exit_2(tmp_path):
    (tmp_path / "bad.yaml").write_text("domain: [unclosed\n")
    one_line_error(run_cli("run", "--config", str(tmp_path / "bad.yaml")), "foundry run: error")
    (tmp_path / "cfgdir.toml").mkdir()
    one_line_error(run_cli("run", "--config", str(tmp_path / "cfgdir.toml")), "cfgdir.toml")
    base = write_config(tmp_path / "c.toml", tmp_path / "r", 100)
    (tmp_path / "afile").write_text("x")
    one_line_error(
        run_cli("run", "--config", str(base), "--run-dir", str(tmp_path / "afile")),
        "not a directory",
    )
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "ledger.sqlite").write_bytes(b"this is not a database" * 100)
    one_line_error(
        run_cli("run", "--config", str(base), "--run-dir", str(corrupt)), "ledger", "not a database"
    )
    one_line_error(run_cli("status", str(corrupt)), "ledger")
    one_line_error(
        run_cli("run", "--config", str(base), "--set", "steering.sprad=0.5"),
        "unknown steering knobs ['sprad']",
    )
    one_line_error(run_cli("run", "--config", str(base), "--timeout-s", "inf"), "timeout_s")
    one_line_error(run_cli("run", "--config", str(base), "--seed", "-1"), "seed")
    multi = run_cli("run", "--config", str(base), "--set", "alpha=2", "--set", "delta=-1")
    one_line_error(multi, "alpha", "(and 1 more)")


def test_a_run_whose_ground_truth_always_fails_exits_3_with_the_reasons(tmp_path):
    """HostileDomain payloads that say "crash": every ground-truth call fails."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "\n".join(
            [
                'domain = "analytic_domain:AlwaysFailingDomain"',
                f'run_dir = "{tmp_path / "run"}"',
                'executor = "inline"',
                'isolation = "process"',
                "progress = false",
                "gt_max_attempts = 1",
                "[budget]",
                "max_candidates = 20",
            ]
        )
        + "\n"
    )
    proc = run_cli("run", "--config", str(cfg))
    assert proc.returncode == 3, proc.stderr
    assert "20 of 20 ground-truth calls failed" in proc.stderr
    assert "crash" in proc.stderr


def test_status_and_export_read_a_run_on_read_only_storage(tmp_path):
    """A finished run, bind-mounted read-only (bubblewrap: real read-only storage, which a
    root process cannot write either): status and export to elsewhere work."""
    import shutil

    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is needed (scripts/setup.sh installs it)")
    run_dir = tmp_path / "run"
    Scheduler(cfg_for(run_dir, n=500)).run()
    assert not (run_dir / "ledger.sqlite-wal").exists(), "a finished run leaves no WAL behind"
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)])}
    for args in (
        ["status", str(run_dir)],
        ["export", str(run_dir), "--out", str(out / "x.parquet")],
    ):
        proc = subprocess.run(
            ["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(run_dir), str(run_dir),
             sys.executable, "-m", "foundry.cli", *args],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    assert (out / "x.parquet").stat().st_size > 0
    touch = subprocess.run(
        ["bwrap", "--dev-bind", "/", "/", "--ro-bind", str(run_dir), str(run_dir),
         "touch", str(run_dir / "probe")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert touch.returncode != 0, "the mount must really be read-only"


def test_a_failed_export_keeps_the_previous_file(tmp_path, monkeypatch):
    """A write that dies half-way (a fake failure injected into the row reader, standing in
    for a kill or a full disk) leaves the last good export untouched; so does a bad
    --decision."""
    from foundry.ledger import export as export_mod

    run_dir = tmp_path / "run"
    Scheduler(cfg_for(run_dir, n=500)).run()
    path, n = export_mod.export_run(run_dir, fmt="jsonl")
    good = path.read_bytes()
    assert n > 0 and good

    def dying(*_a, **_k):
        yield [{"seq": 1}]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod, "iter_export_rows", dying)
    with pytest.raises(OSError, match="No space"):
        export_mod.export_run(run_dir, fmt="jsonl")
    assert path.read_bytes() == good
    assert not list(run_dir.glob(".examples.jsonl.*")), "no temporary file left behind"
    monkeypatch.undo()
    proc = run_cli("export", str(run_dir), "--format", "jsonl", "--decision", "bogus")
    one_line_error(proc, "unknown decision")
    assert path.read_bytes() == good
