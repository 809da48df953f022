"""The ``foundry`` command line: run, status, export, verify, domains, and its error messages.

Most tests call :func:`foundry.cli.main` in-process on the analytic domain (fast, inline).
One test runs the installed console script end to end on the embedded default executor (a
Dask LocalCluster with process-isolated verifiers), as a user would.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from foundry.calibration import min_audits, spend_delta
from foundry.cli import main

ANALYTIC = "analytic_domain:AnalyticDomain"
TESTS = Path(__file__).parent
FAST = ["--executor", "inline", "--isolation", "none", "--no-progress"]


def _run(tmp_path: Path, *extra: str) -> Path:
    run_dir = tmp_path / "run"
    args = ["run", "--domain", ANALYTIC, "--run-dir", str(run_dir), *FAST]
    args += ["--alpha", "0.05", "--delta", "0.1", *extra]
    assert main(args) == 0
    return run_dir


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("cli"), "--max-candidates", "6000")


def test_run_writes_ledger_export_and_resolved_config(finished_run: Path) -> None:
    db = sqlite3.connect(finished_run / "ledger.sqlite")
    total, accepted = db.execute(
        "SELECT COUNT(*), SUM(decision = 'accepted') FROM examples"
    ).fetchone()
    db.close()
    assert total == 6000
    table = pq.read_table(finished_run / "examples.parquet")
    assert table.num_rows == accepted > 0
    assert set(table.column("decision").to_pylist()) == {"accepted"}
    config = json.loads((finished_run / "config.json").read_text())
    assert config["domain"] == ANALYTIC and config["alpha"] == 0.05
    assert config["budget"]["max_candidates"] == 6000
    # defaults are written out too, so the file alone reproduces the run
    assert config["audit_rate"] == 0.1 and config["seed"] == 0


def test_status_json_and_table(finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(finished_run), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["total"] == 6000 and summary["finished"]
    assert summary["by_decision"]["accepted"] > 0
    released = summary["released_by_slice"]["all"]
    assert released["accepted"] > 0 and released["certificates"] >= 1
    assert released["accept_estimate_max"] <= 0.05  # every certificate used was below alpha
    assert "confidence 1 - delta = 0.9" in summary["guarantee"]
    assert main(["status", str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert "guarantee" in out and "error <= alpha" in out and "6,000" in out
    assert "release-weighted" in out


def test_export_jsonl_of_every_row(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "all.jsonl"
    assert main(["export", str(finished_run), "--format", "jsonl", "--all", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6000
    assert {"accepted", "rejected"} <= {r["decision"] for r in rows}
    surrogate_rows = [r for r in rows if r["label_source"] == "surrogate"]
    assert surrogate_rows and all(r["bound"] is not None for r in surrogate_rows)
    assert "wrote 6000 rows" in capsys.readouterr().out


def test_config_file_with_flag_overrides(tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        f'domain = "{ANALYTIC}"\nseed = 7\nalpha = 0.03\n'
        "[budget]\nmax_candidates = 1500\n"
        "[steering]\nspread = 0.5\n"
    )
    run_dir = tmp_path / "r"
    args = ["run", "--config", str(config), "--run-dir", str(run_dir), "--alpha", "0.04", *FAST]
    assert main(args) == 0
    resolved = json.loads((run_dir / "config.json").read_text())
    assert resolved["seed"] == 7 and resolved["alpha"] == 0.04  # the flag wins over the file
    assert resolved["steering"] == {"spread": 0.5}
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    xs = [json.loads(p)["x"] for (p,) in db.execute("SELECT payload FROM examples")]
    db.close()
    assert len(xs) == 1500 and max(abs(v) for x in xs for v in x) <= 0.5  # steering applied


def test_yaml_config_and_set_override(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"domain: {ANALYTIC}\nbudget:\n  max_candidates: 800\n")
    run_dir = tmp_path / "r"
    args = ["run", "--config", str(config), "--run-dir", str(run_dir), *FAST]
    assert main([*args, "--set", "surrogate=false"]) == 0
    resolved = json.loads((run_dir / "config.json").read_text())
    assert resolved["surrogate"] is False and resolved["budget"]["max_candidates"] == 800


def test_verify_a_users_jsonl_including_bad_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inp = tmp_path / "mine.jsonl"
    inp.write_text(
        "\n".join(
            [
                json.dumps({"x": [0.5, 0.5]}),  # y = sin(1.5) + 0.25 > 0.3: passes
                json.dumps({"payload": {"x": [-0.5, 0.0]}, "generation": 3}),  # fails
                "{not json",
                json.dumps({"x": [5.0, 0.0]}),  # outside the domain's rule
                json.dumps({"x": "oops"}),  # schema
                json.dumps([1, 2]),  # not an object
            ]
        )
        + "\n"
    )
    run_dir = tmp_path / "v"
    assert main(["verify", str(inp), "--domain", ANALYTIC, "--run-dir", str(run_dir), *FAST]) == 0
    out = capsys.readouterr().out
    assert "verified 6 inputs: 1 accepted, 1 rejected, 4 invalid, 0 failed" in out
    rows = [json.loads(line) for line in (run_dir / "ledger.jsonl").read_text().splitlines()]
    # the file is screened in a seeded random order (audits must be a uniform sample), so
    # rows are found by what they hold, not by position
    by_payload = {r["payload"]: r for r in rows}
    good = by_payload[json.dumps({"x": [0.5, 0.5]}, separators=(",", ":"))]
    bad = by_payload[json.dumps({"x": [-0.5, 0.0]}, separators=(",", ":"))]
    assert good["decision"] == "accepted" and bad["decision"] == "rejected"
    assert good["decided_by"] == "ground_truth" and good["simulator"] == "analytic"
    assert bad["generation"] == 3
    assert all(r["source"] == "injected" for r in rows)
    reasons = sorted(r["reason"] for r in rows if r["decision"] == "invalid")
    assert len(reasons) == 4
    assert any("line 3" in r and "unreadable" in r for r in reasons)
    assert any("line 6" in r and "not a JSON object" in r for r in reasons)
    assert any("outside" in r for r in reasons)
    assert any(r.startswith("schema") for r in reasons)


def test_verify_reads_the_file_in_a_seeded_random_order(tmp_path: Path) -> None:
    from foundry.inputs import read_jsonl

    inp = tmp_path / "sorted.jsonl"
    inp.write_text("".join(json.dumps({"x": [i / 100, 0.0]}) + "\n" for i in range(100)))

    def order(seed: int) -> list[float]:
        return [c.payload["x"][0] for b in read_jsonl(inp, 16, seed, domain="analytic") for c in b]

    first = order(0)
    assert sorted(first) == [i / 100 for i in range(100)]  # every line, once
    assert first == order(0) and first != order(1)  # seeded
    assert first != sorted(first)  # not the file's (sorted) order


def test_verify_screens_with_a_saved_surrogate(finished_run: Path, tmp_path: Path) -> None:
    inp = tmp_path / "many.jsonl"
    import numpy as np

    rng = np.random.default_rng(3)
    inp.write_text("".join(json.dumps({"x": list(map(float, x))}) + "\n"
                           for x in rng.uniform(-1, 1, (3000, 2))))  # fmt: skip
    run_dir = tmp_path / "v"
    args = ["verify", str(inp), "--domain", ANALYTIC, "--run-dir", str(run_dir), *FAST]
    assert (
        main([*args, "--alpha", "0.05", "--delta", "0.1", "--surrogate-from", str(finished_run)])
        == 0
    )
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    first = db.execute("SELECT MIN(seq) FROM examples WHERE decided_by = 'surrogate'").fetchone()[0]
    audits_before = db.execute(
        "SELECT COUNT(*) FROM examples WHERE audit = 1 AND seq < ?", (first,)
    ).fetchone()[0]
    db.close()
    # the saved model had to earn a certificate on these inputs' own audits before deciding
    assert first is not None
    assert audits_before >= min_audits(0.05, spend_delta(0.1, 1) / 2)


def test_domains_lists_the_circuits_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["domains"]) == 0
    out = capsys.readouterr().out
    assert "circuits" in out and "gain_db [dB]" in out and "fc_hz [Hz]" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--domain", "no_such_domain"], "no domain 'no_such_domain'"),
        (["run", "--domain", "circuits", "--set", 'allowed_domains=["other"]'], "allow"),
        (["run", "--alpha", "1.5"], "alpha"),
        (["run", "--set", "no_such_key=1"], "no_such_key"),
        (["run", "--config", "/nonexistent/run.toml"], "run.toml"),
        (["status", "/nonexistent/run"], "no ledger"),
        (["export", "/nonexistent/run"], "no ledger"),
        (["verify", "/nonexistent/in.jsonl", "--domain", ANALYTIC], "in.jsonl"),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_code_2(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if args[0] == "run":
        args = [*args, "--run-dir", str(tmp_path / "r"), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"foundry {args[0]}: error:" in err and message in err


def test_console_script_runs_on_the_embedded_local_cluster(tmp_path: Path) -> None:
    """The installed ``foundry`` on the default executor: Dask LocalCluster workers holding
    process-isolated verifiers."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    )
    run_dir = tmp_path / "run"
    cmd = [
        str(Path(sys.executable).with_name("foundry")), "run", "--domain", ANALYTIC,
        "--run-dir", str(run_dir), "--max-candidates", "3000", "--n-workers", "2",
        "--chunk-size", "64", "--no-progress",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "run finished (3000 candidates generated)" in done.stdout
    assert (run_dir / "examples.parquet").exists()
    status = subprocess.run(
        [cmd[0], "status", str(run_dir), "--json"], capture_output=True, text=True, timeout=120
    )
    summary = json.loads(status.stdout)
    assert summary["total"] == 3000 and summary["ground_truth_calls"] > 0
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    hosts = {
        h
        for (h,) in db.execute(
            "SELECT DISTINCT worker_host FROM examples WHERE worker_host IS NOT NULL"
        )
    }
    pending = db.execute("SELECT COUNT(*) FROM examples WHERE decision = 'pending'").fetchone()[0]
    db.close()
    assert hosts and pending == 0
