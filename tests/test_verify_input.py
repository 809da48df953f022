"""``foundry verify`` never loses a line: every line of a user's JSONL ends as a ledger row
(with its line number) or a verdict of its own, and ``verdicts.jsonl`` has each line once.

Runs the analytic test domain in-process (inline executor, no isolation): fast.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from analytic_domain import AnalyticSurrogate

from foundry.cli import main
from foundry.contract import Candidate, canonical_json, content_id
from foundry.inputs import (
    BAD_WRAPPER,
    MAX_DEPTH,
    MAX_LINE_BYTES,
    NOT_FINITE,
    NOT_OBJECT,
    TOO_DEEP,
    TOO_LARGE,
    UNREADABLE,
    JsonlInput,
    LineProblem,
    LineSet,
    ParsedLine,
    load_saved_surrogate,
    parse_line,
)
from foundry.loop import INVALID_INPUT
from foundry.loop.rows import provenance_columns

ANALYTIC = "analytic_domain:AnalyticDomain"
DOMAIN = "analytic"  # AnalyticDomain.name: what content ids are taken over
FAST = ["--executor", "inline", "--isolation", "none", "--no-progress"]


def _verify(inp: Path, run_dir: Path, *extra: str) -> int:
    return main(["verify", str(inp), "--domain", ANALYTIC, "--run-dir", str(run_dir), *FAST,
                 *extra])  # fmt: skip


def _verdicts(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "verdicts.jsonl").read_text().splitlines()]


def _rows(run_dir: Path) -> list[dict]:
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT * FROM examples ORDER BY seq")]
    db.close()
    return rows


def _export_row(payload: dict, domain: str = DOMAIN) -> str:
    """A line as `foundry export --format jsonl` writes it (the payload as JSON text)."""
    return json.dumps({
        "seq": 7, "content_id": content_id(domain, payload), "domain": domain,
        "domain_version": "1.0", "payload": canonical_json(payload), "source": "synthetic",
        "generation": 2, "parent_ids": "[]", "decision": "accepted", "input_line": None,
        "label": "{\"y\": 1.0}", "label_source": "ground_truth",
    })  # fmt: skip


# -- one line of each kind ----------------------------------------------------------------------
GOOD = {"x": [0.5, 0.5]}  # y = sin(1.5) + 0.25 > 0.3: passes
AFTER_BAD = {"x": [0.2, 0.1]}  # the valid line right after an unreadable one
WRAPPED = {"x": [-0.5, 0.0]}  # fails
EXPORTED = {"x": [0.3, 0.3]}
LAST = {"x": [-0.9, 0.0]}  # fails

#: (line bytes, expected decision, what its reason says), one per line of the file
# fmt: off
LINES: list[tuple[bytes, str, str]] = [
    (json.dumps(GOOD).encode(), "accepted", ""),  # 1
    (b'{"x": [0.1, \xff0.2]}', "invalid", "line 2: unreadable (not UTF-8: byte 0xff"),  # 2
    (json.dumps(AFTER_BAD).encode(), "accepted", ""),  # 3
    (b"[" * 100_000 + b"]" * 100_000, "invalid", "line 4: too deep"),  # 4
    (json.dumps({"x": [0.1, 0.2], "pad": "a" * 2_000_000}).encode(), "invalid",
     "line 5: too large (2,000,"),  # 5
    (b'{"x": [NaN, 0.0]}', "invalid", "line 6: not finite (NaN is not a JSON number"),  # 6
    (b'{"x": [Infinity, 0.0]}', "invalid", "line 7: not finite (Infinity"),  # 7
    (b'{"x": [-Infinity, 0.0]}', "invalid", "line 8: not finite (-Infinity"),  # 8
    (b'{"x": [1e999, 0.0]}', "invalid", "line 9: not finite (a number overflows"),  # 9
    (b"[0.1, 0.2]", "invalid", "line 10: not a JSON object (got an array)"),  # 10
    (b"", "skipped", "blank line"),  # 11
    (b"  \t\r", "skipped", "blank line"),  # 12
    (b'{ "x" : [0.5, 0.50] }', "duplicate", "duplicate of line 1 (accepted)"),  # 13
    (json.dumps({"payload": WRAPPED, "generation": 3}).encode(), "rejected", ""),  # 14
    (_export_row(EXPORTED).encode(), "accepted", ""),  # 15
    (b"{not json", "invalid", "line 16: unreadable (invalid JSON"),  # 16
    (json.dumps({INVALID_INPUT: "x"}).encode(), "invalid", "line 17: bad wrapper"),  # 17
    (b"{not json", "invalid", "line 18: unreadable (invalid JSON"),  # 18: not a duplicate
    (_export_row(GOOD, "circuits").encode(), "invalid", "exported row of domain 'circuits'"),
    (json.dumps({"x": [0.1, 0.1], "d": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)}).encode(),
     "invalid", "line 20: too deep (nested deeper than MAX_DEPTH = 64)"),  # 20
    (json.dumps({"payload": GOOD, "generation": -1}).encode(), "invalid", "generation must"),
    (json.dumps({"x": [5.0, 0.0]}).encode(), "invalid", "outside"),  # 22: the domain's rule
    (json.dumps(LAST).encode(), "rejected", ""),  # 23: the last line, no newline
]
# fmt: on


def _write_every_kind(path: Path) -> Path:
    path.write_bytes(b"\n".join(line for line, _, _ in LINES))
    return path


@pytest.fixture(scope="module")
def every_kind(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    tmp = tmp_path_factory.mktemp("verify")
    inp = _write_every_kind(tmp / "mine.jsonl")
    run_dir = tmp / "v"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert _verify(inp, run_dir) == 0
    return inp, run_dir, out.getvalue()


def test_every_line_has_exactly_one_verdict_in_file_order(
    every_kind: tuple[Path, Path, str],
) -> None:
    _inp, run_dir, out = every_kind
    verdicts = _verdicts(run_dir)
    assert [v["line"] for v in verdicts] == list(range(1, len(LINES) + 1))
    for v, (_, decision, reason) in zip(verdicts, LINES, strict=True):
        assert v["decision"] == decision, v
        assert reason in (v["reason"] or ""), v
    decided = [v for v in verdicts if v["decision"] in ("accepted", "rejected")]
    assert all(v["decided_by"] == "ground_truth" and "y" in v["properties"] for v in decided)
    assert verdicts[12]["duplicate_of"] == 1
    assert verdicts[12]["content_id"] == verdicts[0]["content_id"]
    counts = "1 duplicate, 0 pending; 2 blank lines skipped"
    assert f"verified {len(LINES) - 2} inputs: 3 accepted, 2 rejected, 15 invalid" in out
    assert counts in out and "verdicts.jsonl" in out


def test_each_line_in_the_ledger_has_its_line_number(every_kind: tuple[Path, Path, str]) -> None:
    _inp, run_dir, _ = every_kind
    rows = _rows(run_dir)
    by_line = {r["input_line"]: r for r in rows}
    # every line but the blanks and the duplicate has one row, with its line number
    assert sorted(by_line) == [n for n in range(1, len(LINES) + 1) if n not in (11, 12, 13)]
    assert len(rows) == len(by_line)
    for n, (_, decision, reason) in enumerate(LINES, 1):
        if n in by_line:
            assert by_line[n]["decision"] == decision and reason in by_line[n]["reason"]
    # nothing of the 2 MB line (or of any bad line) beyond a short prefix is stored
    assert max(len(r["payload"]) for r in rows) < 1000
    assert json.loads(by_line[5]["payload"])["bytes"] > MAX_LINE_BYTES
    # the wrapper's and the export row's provenance came along
    assert by_line[14]["generation"] == 3 and by_line[15]["generation"] == 2
    assert all(r["source"] == "injected" for r in rows)
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    dups = db.execute("SELECT line, duplicate_of, content_id FROM input_duplicates").fetchall()
    db.close()
    assert dups == [(13, 1, content_id(DOMAIN, GOOD))]


def test_a_valid_line_after_an_invalid_one_keeps_its_id(
    every_kind: tuple[Path, Path, str],
) -> None:
    _inp, run_dir, _ = every_kind
    by_line = {r["input_line"]: r for r in _rows(run_dir)}
    assert by_line[3]["content_id"] == content_id(DOMAIN, AFTER_BAD)
    assert by_line[1]["content_id"] == content_id(DOMAIN, GOOD)
    assert by_line[15]["content_id"] == content_id(DOMAIN, EXPORTED)
    valid = {content_id(DOMAIN, p) for p in (GOOD, AFTER_BAD, WRAPPED, EXPORTED, LAST)}
    unusable = [r["content_id"] for r in by_line.values() if r["decision"] == "invalid"]
    assert len(set(unusable)) == len(unusable)  # two identical bad lines: two ids
    assert not valid & set(unusable)


def test_a_run_of_the_old_defects_stays_whole(tmp_path: Path) -> None:
    """Each kind of bad line alone, first in the file, then a valid line: the bad line has
    its verdict and the file goes on (no RecursionError, no UnicodeDecodeError)."""
    for n, (line, decision, reason) in enumerate(LINES):
        if decision in ("accepted", "rejected", "duplicate"):
            continue
        inp = tmp_path / f"one-{n}.jsonl"
        inp.write_bytes(line + b"\n" + json.dumps(GOOD).encode() + b"\n")
        run_dir = tmp_path / f"v{n}"
        assert _verify(inp, run_dir) == 0
        verdicts = _verdicts(run_dir)
        assert [v["decision"] for v in verdicts] == [decision, "accepted"]
        assert reason.replace(f"line {n + 1}:", "line 1:") in verdicts[0]["reason"]


# -- the reader alone ------------------------------------------------------------------------------
def test_parse_line_kinds() -> None:
    def kind(raw: bytes) -> str:
        got = parse_line(raw, DOMAIN)
        return got.kind if isinstance(got, LineProblem) else "ok"

    assert kind(b'{"x": [1, 2]}') == "ok"
    assert kind(b"\xc3\x28") == UNREADABLE
    assert kind(b"[" * 100_000) == TOO_DEEP  # unbalanced too: depth is found first
    assert kind(b"{" * 10 + b"}") == UNREADABLE
    assert kind(b"x" * (MAX_LINE_BYTES + 1)) == TOO_LARGE
    assert kind(b'{"a": NaN}') == NOT_FINITE
    assert kind(b'{"a": -1e400}') == NOT_FINITE
    assert kind(b'"a string"') == NOT_OBJECT
    assert kind(b"null") == NOT_OBJECT
    assert kind(b'{"payload": {"x": 1}, "parent_ids": [1]}') == BAD_WRAPPER
    assert kind(b'{"payload": "{\\"x\\": 1}", "content_id": "c", "domain": "other"}') == (
        BAD_WRAPPER
    )
    assert kind(b'{"payload": "[1]", "content_id": "c"}') == NOT_OBJECT
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert kind(f'{{"d": {deep}}}'.encode()) == TOO_DEEP  # one more than MAX_DEPTH
    assert kind(f'{{"d": {deep[1:-1]}}}'.encode()) == "ok"  # exactly MAX_DEPTH
    assert kind(f'{{"d": "{deep * 2}"}}'.encode()) == "ok"  # brackets in a string do not nest
    # a bare payload, a wrapper and an export row of the same payload: one payload
    texts = {
        parse_line(raw, DOMAIN).text  # type: ignore[union-attr]
        for raw in (
            b'{"x": [1, 2]}',
            b'{"payload": {"x": [1, 2]}, "generation": 1}',
            _export_row({"x": [1, 2]}).encode(),
        )
    }
    assert texts == {'{"x":[1,2]}'}
    wrapped = parse_line(b'{"payload": {"x": 1}, "parent_ids": "[\\"p\\"]"}', DOMAIN)
    assert isinstance(wrapped, ParsedLine) and wrapped.parent_ids == ("p",)


def test_a_long_line_is_never_held_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import foundry.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_LINE_BYTES", 100)
    monkeypatch.setattr(inputs, "_READ_CHUNK", 64)
    inp = tmp_path / "long.jsonl"
    inp.write_bytes(b'{"x": [0, 0], "pad": "' + b"a" * 10_000 + b'"}\n{"x": [1, 1]}\n')
    source = JsonlInput.scan(inp, DOMAIN)
    cands = [c for b in source.batches(10, 0) for c in b]
    by_line = {c.input_line: c for c in cands}
    assert by_line[2].payload == {"x": [1, 1]}
    bad = by_line[1].payload
    assert "too large (10,024 bytes; the limit is MAX_LINE_BYTES = 100)" in bad[INVALID_INPUT]
    assert len(bad["text"]) <= inputs.KEPT_PREFIX_CHARS


def test_the_order_is_seeded_random_and_skip_lines_keeps_it(tmp_path: Path) -> None:
    inp = tmp_path / "sorted.jsonl"
    inp.write_text("".join(json.dumps({"x": [i / 100, 0.0]}) + "\n" for i in range(100)))
    source = JsonlInput.scan(inp, DOMAIN)

    def lines(seed: int, skip: LineSet | tuple = ()) -> list[int]:
        return [c.input_line for b in source.batches(16, seed, skip_lines=skip) for c in b]

    first = lines(0)
    assert sorted(first) == list(range(1, 101)) and first != sorted(first)
    assert first == lines(0) and first != lines(1)
    done = LineSet(first[:32])  # two batches went into the ledger before a kill
    assert lines(0, done) == first[32:]  # the rest, in the same order
    assert 5 in LineSet([5]) and 6 not in LineSet([5]) and len(LineSet([5, 5, 900])) == 2


def test_a_file_changed_between_the_passes_stops_the_run(tmp_path: Path) -> None:
    from foundry.contract import FoundryError

    inp = tmp_path / "in.jsonl"
    inp.write_text('{"x": [0.1, 0.1]}\n')
    source = JsonlInput.scan(inp, DOMAIN)
    inp.write_text('{"x": [0.2, 0.1]}\n')
    with pytest.raises(FoundryError, match="changed since it was read"):
        list(source.batches(4, 0))


def test_generated_candidates_leave_input_line_out() -> None:
    assert "input_line" not in provenance_columns([Candidate({"x": [0, 0]})])
    cols = provenance_columns([Candidate({"x": [0, 0]}), Candidate({"x": [1, 0]}, input_line=4)])
    assert cols["input_line"] == [None, 4]


# -- export -> verify ------------------------------------------------------------------------------
def test_an_export_verifies_as_the_same_payloads(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    inp = tmp_path / "in.jsonl"
    lines = [json.dumps({"x": [float(a), float(b)]}) for a, b in rng.uniform(-1, 1, (40, 2))]
    inp.write_text("\n".join([*lines, "{broken", json.dumps({"x": [3.0, 0.0]})]) + "\n")
    first = tmp_path / "first"
    assert _verify(inp, first) == 0
    exported = tmp_path / "export.jsonl"
    assert main(["export", str(first), "--format", "jsonl", "--all", "--out", str(exported)]) == 0
    second = tmp_path / "second"
    assert _verify(exported, second) == 0
    before = {r["content_id"]: r for r in _rows(first)}
    after = {r["content_id"]: r for r in _rows(second)}
    valid = [cid for cid, r in before.items() if r["rule_ok"]]
    assert len(valid) == 40
    for cid in valid:  # the same payload, the same id, the same verdict
        assert after[cid]["payload"] == before[cid]["payload"]
        assert after[cid]["decision"] == before[cid]["decision"]
    # a payload the domain's rule rejects is still a payload: the same id, invalid again
    outside = next(c for c, r in before.items() if "outside" in r["reason"])
    assert after[outside]["decision"] == "invalid" and "outside" in after[outside]["reason"]
    verdicts = _verdicts(second)
    assert len(verdicts) == len(exported.read_text().splitlines()) == 42
    # the unreadable line's row holds the reserved key: invalid again, not a new payload
    reserved = [v for v in verdicts if "reserved key" in (v["reason"] or "")]
    assert len(reserved) == 1


# -- resume --------------------------------------------------------------------------------------
def test_resume_feeds_only_the_lines_not_in_the_ledger(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    inp = tmp_path / "in.jsonl"
    rows = [json.dumps({"x": [float(a), float(b)]}) for a, b in rng.uniform(-1, 1, (60, 2))]
    inp.write_text("\n".join([*rows, rows[0], "[1]"]) + "\n")
    run_dir = tmp_path / "v"
    small = ["--batch-size", "8", "--max-ground-truth-calls", "10"]
    assert _verify(inp, run_dir, *small) == 0
    verdicts = _verdicts(run_dir)
    assert [v["line"] for v in verdicts] == list(range(1, 63))
    unread = [v for v in verdicts if v["decision"] == "pending"]
    assert unread and all("not read" in v["reason"] for v in unread)
    assert _verify(inp, run_dir, "--batch-size", "8", "--resume") == 0
    verdicts = _verdicts(run_dir)
    assert [v["line"] for v in verdicts] == list(range(1, 63))
    assert {v["decision"] for v in verdicts} <= {"accepted", "rejected", "invalid", "duplicate"}
    assert verdicts[60]["reason"] == "duplicate of line 1 (" + verdicts[0]["decision"] + ")"
    ledger = _rows(run_dir)
    assert sorted(r["input_line"] for r in ledger) == [*range(1, 61), 62]  # each line once


def test_resume_refuses_a_ledger_of_another_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps(GOOD) + "\n")
    b.write_text(json.dumps(LAST) + "\n")
    run_dir = tmp_path / "v"
    assert _verify(a, run_dir) == 0
    assert _verify(b, run_dir, "--resume") == 2


# -- --surrogate-from ----------------------------------------------------------------------------
def test_surrogate_from_takes_the_champion_and_skips_broken_files(tmp_path: Path) -> None:
    from foundry.ledger import Ledger

    models = tmp_path / "src" / "surrogates"
    models.mkdir(parents=True)
    for version in (1, 2, 3):
        (models / f"v{version}.pkl").write_bytes(pickle.dumps(AnalyticSurrogate()))
    good = (models / "v3.pkl").read_bytes()
    (models / "v3.pkl").write_bytes(good[: len(good) // 2])  # truncated by a kill
    (models / "v9.pkl.tmp").write_bytes(b"junk")  # not a model file
    warnings: list[str] = []
    _model, version, why = load_saved_surrogate(tmp_path / "src", warnings.append)
    assert version == 2 and "newest usable saved file" in why  # no ledger: by file
    assert any("v3.pkl" in w and "cannot be unpickled" in w for w in warnings)

    ledger = Ledger(tmp_path / "src")
    for version in (1, 2, 3):
        ledger.add_surrogate(version, 100 * version, 0.1)
    ledger.set_meta("stats", {"champion": 1})
    ledger.close()
    _model, version, why = load_saved_surrogate(tmp_path / "src", warnings.append)
    assert version == 1 and why == "the source run's champion"
    (models / "v1.pkl").write_bytes(b"")
    _model, version, _why = load_saved_surrogate(tmp_path / "src", warnings.append)
    assert version == 2  # the champion's file is broken: the newest usable known version
