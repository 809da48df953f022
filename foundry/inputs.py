"""Reading a user's JSONL of candidates (``foundry verify``): every line gets an answer.

Each line of the file becomes either a :class:`~foundry.contract.Candidate` (which the run
then accepts, rejects, fails or finds invalid against the domain's schema and rules) or an
explicit verdict of its own, with its line number:

* **blank** (only spaces, tabs, CR): skipped, and counted as skipped;
* **unreadable**: not UTF-8, or not JSON;
* **too large**: longer than :data:`MAX_LINE_BYTES` (never held in memory whole);
* **too deep**: nested deeper than :data:`MAX_DEPTH` (no ``RecursionError`` escapes);
* **not finite**: ``NaN``, ``Infinity``, ``-Infinity``, or a number that overflows to infinity
  (``1e999``): JSON has no such numbers, and a payload holding one has no canonical form;
* **not a JSON object**: an array, a string, a number...;
* **bad wrapper**: a ``{"payload": ...}`` line whose ``generation`` or ``parent_ids`` are
  malformed, an exported row of another domain, or a payload using the reserved key;
* **duplicate**: the same payload (the same content id) as an earlier line: "duplicate of
  line N". Only the first occurrence is verified; the ledger's ``input_duplicates`` table
  (:func:`record_duplicates`) and the verdict file say what became of the others.

Unusable lines other than duplicates become invalid ledger rows (the payload holds
``foundry.loop.intake.INVALID_INPUT`` and the reason), with an id made from the line
(``content_id_of_text(domain, "line:<N>:<digest of its bytes>")``): never the id a valid
payload has, so an unusable line cannot take the id of a later valid one.

A line is a bare payload object, or a wrapper ``{"payload": {...}, "generation": 3,
"parent_ids": [...]}``, or a row of ``foundry export --format jsonl`` (its ``payload`` is the
payload's JSON text, ``parent_ids`` a JSON list as text): a payload that itself has a key
``payload`` holding an object must therefore be wrapped. Every other key of a wrapper is
ignored (an export row's decision, label...: this run decides afresh). Objects with repeated
keys keep the last value, as :mod:`json` does.

After the run, :func:`write_verdicts` writes ``<run_dir>/verdicts.jsonl``: one line per line
of the input, in its order - ``line``, ``content_id``, ``decision`` (``accepted``,
``rejected``, ``failed``, ``invalid``, ``pending``, ``duplicate``, or ``skipped`` for a blank
line), ``reason``, ``decided_by``, the ledger ``seq``, and the ground truth's ``properties``
and ``gt_reason`` (or the surrogate's ``predicted`` and ``bound``) when there are. Lines a
stopped run never read are ``pending`` ("not read"); ``--resume`` feeds only the lines
without a ledger row.

Candidates are fed to the run in a seeded random order (audits are a uniform sample only of a
stream in random order: a file sorted by size or difficulty would otherwise have its first,
easy part certify the rest). So the file is read twice: a first pass classifies every line
and finds duplicates, keeping per line only its offset, length, line number and 16-byte
content id; the second re-reads the lines at their offsets in shuffled order (checking that
each is what the first pass saw, else the file changed and the run stops).

Memory: 40 bytes per candidate line are kept (offset, length and line number as int64, the
content id as 16 bytes), about 65 at the peak while duplicates are sorted out (numpy
``lexsort`` of the ids), plus 8 per line for the shuffle while feeding and 1 bit per line for
what was fed; 8 bytes per blank line and 32 per duplicate. Measured: 65 MB for a file of a
million lines; a 10-million-line file needs about 0.7 GB (the run's own seen set of content
ids comes on top). One line is held at most :data:`MAX_LINE_BYTES` (plus its parse); the file
is never decoded whole. Time: about 8 us per line to scan and 13 us to feed (analytic
payloads), small beside any ground truth.
"""

from __future__ import annotations

import array
import hashlib
import json
import os
import re
import sys
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from foundry.contract import (
    Candidate,
    FoundryError,
    Surrogate,
    canonical_json,
    content_id_of_text,
    example_id,
)
from foundry.loop.intake import INVALID_INPUT

if TYPE_CHECKING:
    from foundry.ledger import Ledger

#: the longest line read (bytes, without its newline); longer lines are "too large"
MAX_LINE_BYTES = 1 << 20
#: the deepest nesting of arrays and objects in a line (a bare payload ``{"x": [1, 2]}`` is 2,
#: wrapped in ``{"payload": ...}`` 3; an exported row's payload text is counted on its own)
MAX_DEPTH = 64
#: characters of an unusable line kept in its ledger row, to show what it held
KEPT_PREFIX_CHARS = 200
#: where :func:`write_verdicts` writes, in the run directory
VERDICTS_FILENAME = "verdicts.jsonl"

#: kinds of unusable line (the start of their reason, after "<file> line <N>: ")
UNREADABLE = "unreadable"
TOO_LARGE = "too large"
TOO_DEEP = "too deep"
NOT_FINITE = "not finite"
NOT_OBJECT = "not a JSON object"
BAD_WRAPPER = "bad wrapper"

#: decisions of the verdict file: the ledger's, and the reader's own
VERDICT_DECISIONS = (
    "accepted", "rejected", "failed", "invalid", "pending", "deferred", "duplicate", "skipped",
)  # fmt: skip

_BOM = b"\xef\xbb\xbf"
_BLANK = b" \t\r\n"
_READ_CHUNK = 1 << 20
_ORDER_CHUNK = 1 << 16


class _NonFinite(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonFinite(name)


#: strict JSON: NaN and +-Infinity are errors, not floats
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


@dataclass(frozen=True)
class LineProblem:
    """Why a line is not a candidate: its kind (``UNREADABLE``...) and the details."""

    kind: str
    detail: str

    def reason(self, name: str, line: int) -> str:
        return f"{name} line {line}: {self.kind} ({self.detail})"


@dataclass(frozen=True)
class ParsedLine:
    """A usable line: the payload, its canonical JSON, and the wrapper's provenance."""

    payload: dict[str, Any]
    text: str
    generation: int = 0
    parent_ids: tuple[str, ...] = ()


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number",
    }.get(type(value), type(value).__name__)  # fmt: skip


def _too_deep(value: Any, limit: int) -> bool:
    """Whether arrays/objects nest deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _loads(text: str) -> Any | LineProblem:
    """Strict, depth-limited ``json.loads``: the value, or what is wrong with the text."""
    try:
        value = _DECODER.decode(text)
    except _NonFinite as exc:
        return LineProblem(NOT_FINITE, f"{exc} is not a JSON number; write null or a number")
    except RecursionError:
        return LineProblem(TOO_DEEP, f"nested deeper than MAX_DEPTH = {MAX_DEPTH}")
    except json.JSONDecodeError as exc:
        return LineProblem(UNREADABLE, f"invalid JSON: {exc.msg} at column {exc.colno}")
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        return LineProblem(UNREADABLE, f"invalid JSON: {exc}")
    if (
        isinstance(value, dict | list)
        and text.count("[") + text.count("{") > MAX_DEPTH
        and _too_deep(value, MAX_DEPTH)
    ):
        return LineProblem(TOO_DEEP, f"nested deeper than MAX_DEPTH = {MAX_DEPTH}")
    return value


def _parent_ids(value: Any) -> tuple[str, ...] | LineProblem:
    if isinstance(value, str):  # an exported row: the JSON text of a list
        value = _loads(value)
        if isinstance(value, LineProblem):
            return LineProblem(BAD_WRAPPER, f"parent_ids: {value.kind} ({value.detail})")
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        return LineProblem(BAD_WRAPPER, "parent_ids must be a list of content ids (strings)")
    return tuple(value)


def _too_large(n_bytes: int) -> LineProblem:
    return LineProblem(
        TOO_LARGE, f"{n_bytes:,} bytes; the limit is MAX_LINE_BYTES = {MAX_LINE_BYTES:,}"
    )


def parse_line(raw: bytes, domain: str) -> ParsedLine | LineProblem:
    """One line's bytes (without the newline) as a candidate's payload, or its problem."""
    if len(raw) > MAX_LINE_BYTES:
        return _too_large(len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineProblem(
            UNREADABLE, f"not UTF-8: byte 0x{raw[exc.start]:02x} at byte {exc.start + 1}"
        )
    obj = _loads(text)
    if isinstance(obj, LineProblem):
        return obj
    if not isinstance(obj, dict):
        return LineProblem(NOT_OBJECT, f"got {_type_name(obj)}")
    generation: Any = 0
    parents: tuple[str, ...] | LineProblem = ()
    inner = obj.get("payload")
    if isinstance(inner, str) and "content_id" in obj:  # a row of `foundry export`
        exported_from = obj.get("domain")
        if exported_from is not None and exported_from != domain:
            return LineProblem(
                BAD_WRAPPER, f"an exported row of domain {exported_from!r}, not {domain!r}"
            )
        inner = _loads(inner)
        if isinstance(inner, LineProblem):
            return LineProblem(inner.kind, f"in the exported payload: {inner.detail}")
        if not isinstance(inner, dict):
            return LineProblem(NOT_OBJECT, f"the exported payload is {_type_name(inner)}")
    if isinstance(inner, dict):
        payload = inner
        generation = obj.get("generation", 0)
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
            return LineProblem(BAD_WRAPPER, f"generation must be an integer >= 0: {generation!r}")
        parents = _parent_ids(obj.get("parent_ids", []))
        if isinstance(parents, LineProblem):
            return parents
    else:
        payload = obj
    if INVALID_INPUT in payload:
        return LineProblem(
            BAD_WRAPPER,
            f"the payload holds the reserved key {INVALID_INPUT!r}, as invalid rows of runs do",
        )
    try:
        canonical = canonical_json(payload)
    except ValueError:
        return LineProblem(NOT_FINITE, "a number overflows to infinity")
    return ParsedLine(payload, canonical, generation, parents)


def _invalid_candidate(
    domain: str, name: str, line: int, problem: LineProblem, prefix: bytes, n_bytes: int,
    digest: str,
) -> Candidate:  # fmt: skip
    reason = problem.reason(name, line)
    payload = {
        INVALID_INPUT: reason,
        "line": line,
        "bytes": n_bytes,
        "text": prefix.decode("utf-8", "replace")[:KEPT_PREFIX_CHARS],
    }
    return Candidate(
        payload,
        source="injected",
        id=content_id_of_text(domain, f"line:{line}:{digest}"),
        input_line=line,
    )


class LineSet(Container[int]):
    """Line numbers as a bitmap (one bit per line up to the largest): for ``skip_lines``."""

    def __init__(self, lines: Iterable[int] = ()) -> None:
        self._bits = bytearray()
        self._n = 0
        for line in lines:
            self.add(line)

    def add(self, line: int) -> None:
        byte, bit = divmod(int(line), 8)
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
        if not self._bits[byte] >> bit & 1:
            self._bits[byte] |= 1 << bit
            self._n += 1

    def __contains__(self, line: object) -> bool:
        if not isinstance(line, int | np.integer) or line < 0:
            return False
        byte, bit = divmod(int(line), 8)
        return byte < len(self._bits) and bool(self._bits[byte] >> bit & 1)

    def __len__(self) -> int:
        return self._n


def _read_lines(fh: Any, hasher: Any) -> Iterator[tuple[int, int, bytes, int, str | None]]:
    """(offset, line number, content, length, digest) per line; ``content`` is the line
    without its newline, or for a line longer than MAX_LINE_BYTES only its first
    ``KEPT_PREFIX_CHARS`` bytes (then ``digest`` is the whole line's, else None). Never
    holds more than MAX_LINE_BYTES + 1 bytes of a line. Feeds every byte to ``hasher``."""
    offset, number = 0, 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        hasher.update(raw)
        number += 1
        start = offset
        offset += len(raw)
        if raw.endswith(b"\n"):
            yield start, number, raw[:-1], len(raw) - 1, None
            continue
        if len(raw) <= MAX_LINE_BYTES:  # the last line, without a newline
            yield start, number, raw, len(raw), None
            continue
        line_hash = hashlib.blake2b(raw, digest_size=16)
        prefix, length = raw[:KEPT_PREFIX_CHARS], len(raw)
        while True:
            chunk = fh.readline(_READ_CHUNK)
            if not chunk:
                break
            hasher.update(chunk)
            offset += len(chunk)
            if chunk.endswith(b"\n"):
                line_hash.update(chunk[:-1])
                length += len(chunk) - 1
                break
            line_hash.update(chunk)
            length += len(chunk)
        yield start, number, prefix, length, line_hash.hexdigest()


def _raw_digest(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class JsonlInput:
    """A JSONL file of candidates, scanned once (:meth:`scan`), then fed to a run in a seeded
    random order (:meth:`batches`); afterwards it knows what every line became."""

    def __init__(self, path: Path, domain: str, identity: Any = None) -> None:
        self.path = Path(path)
        self.domain = domain
        #: the domain's :meth:`~foundry.contract.Domain.identity` (duplicates by what makes
        #: two payloads the same example, not by their JSON), or ``None``
        self.identity = identity
        #: lines in the file (blank ones included)
        self.n_lines = 0
        #: blake2b-8 of the file's bytes (as ``file_digest``)
        self.digest = ""
        #: unusable lines found by the reader (each becomes an invalid ledger row)
        self.n_unusable = 0
        # per candidate line (valid or unusable, not duplicate), in file order
        self._offsets = np.zeros(0, dtype=np.int64)
        self._lengths = np.zeros(0, dtype=np.int64)
        self._lines = np.zeros(0, dtype=np.int64)
        self._ids = np.zeros((0, 16), dtype=np.uint8)
        self._blank = np.zeros(0, dtype=np.int64)
        #: duplicate line, the line it repeats, and the content id (line order)
        self._dup_lines = np.zeros(0, dtype=np.int64)
        self._dup_of = np.zeros(0, dtype=np.int64)
        self._dup_ids = np.zeros((0, 16), dtype=np.uint8)
        self._stat: tuple[int, int] = (0, 0)
        #: candidate lines fed to the run so far (by their index in file order)
        self._fed = bytearray()
        #: lines fed to the run that the ledger had no row for (the last :meth:`verdicts`)
        self.unrecorded = 0

    # -- the first pass ---------------------------------------------------------------------
    @classmethod
    def scan(cls, path: Path, domain: str, identity: Any = None) -> JsonlInput:
        """Read every line once: classify it, find duplicates (by ``identity``, a domain's
        :meth:`~foundry.contract.Domain.identity`, when given), digest the file."""
        self = cls(path, domain, identity)
        offsets, lengths, lines = array.array("q"), array.array("q"), array.array("q")
        ids, blank = bytearray(), array.array("q")
        hasher = hashlib.blake2b(digest_size=8)
        with self.path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            self._stat = (st.st_size, st.st_mtime_ns)
            for offset, number, raw, length, digest in _read_lines(fh, hasher):
                self.n_lines = number
                if number == 1 and digest is None and raw.startswith(_BOM):
                    raw, offset, length = raw[3:], offset + 3, length - 3
                if digest is None and not raw.strip(_BLANK):
                    blank.append(number)
                    continue
                cid = self._content_id(number, raw, length, digest)
                offsets.append(offset)
                lengths.append(length)
                lines.append(number)
                ids += bytes.fromhex(cid)
        self.digest = hasher.hexdigest()
        # views of the arrays read into (no copies)
        self._offsets = np.frombuffer(offsets, dtype=np.int64)
        self._lengths = np.frombuffer(lengths, dtype=np.int64)
        self._lines = np.frombuffer(lines, dtype=np.int64)
        self._ids = np.frombuffer(ids, dtype=np.uint8).reshape(-1, 16)
        self._blank = np.frombuffer(blank, dtype=np.int64)
        self._split_duplicates()
        self._fed = bytearray((len(self._lines) + 7) // 8)
        return self

    def _content_id(self, number: int, raw: bytes, length: int, digest: str | None) -> str:
        if digest is None:
            parsed = parse_line(raw, self.domain)
            if isinstance(parsed, ParsedLine):
                return example_id(self.domain, parsed.payload, parsed.text, self.identity)
            digest = _raw_digest(raw)
        self.n_unusable += 1
        return content_id_of_text(self.domain, f"line:{number}:{digest}")

    def _split_duplicates(self) -> None:
        """Move every line whose content id an earlier line has to the duplicates."""
        n = len(self._lines)
        if n < 2:
            return
        words = np.ascontiguousarray(self._ids).view(np.uint64)  # (n, 2)
        order = np.lexsort((words[:, 1], words[:, 0]))  # stable: file order among equals
        ranked = words[order]
        first_of_run = np.ones(n, dtype=bool)
        first_of_run[1:] = np.any(ranked[1:] != ranked[:-1], axis=1)
        if first_of_run.all():
            return
        run_head = order[np.maximum.accumulate(np.where(first_of_run, np.arange(n), 0))]
        dups, originals = order[~first_of_run], run_head[~first_of_run]
        by_line = np.argsort(dups, kind="stable")
        dups, originals = dups[by_line], originals[by_line]
        self._dup_lines = self._lines[dups]
        self._dup_of = self._lines[originals]
        self._dup_ids = self._ids[dups]
        keep = np.ones(n, dtype=bool)
        keep[dups] = False
        self._offsets, self._lengths = self._offsets[keep], self._lengths[keep]
        self._lines, self._ids = self._lines[keep], self._ids[keep]

    # -- what the scan found ------------------------------------------------------------------
    @property
    def stream_id(self) -> str:
        """The run's regime for this input: one file (name and content), one regime."""
        return f"{self.path.name}:{self.digest}"

    @property
    def n_candidates(self) -> int:
        """Lines that become ledger rows (usable or not), duplicates and blanks aside."""
        return len(self._lines)

    @property
    def n_blank(self) -> int:
        return len(self._blank)

    @property
    def n_duplicates(self) -> int:
        return len(self._dup_lines)

    def duplicates(self) -> Iterator[tuple[int, int, str]]:
        """(line, line it duplicates, content id) per duplicate line, in line order."""
        for line, of, cid in zip(self._dup_lines.tolist(), self._dup_of.tolist(),
                                 self._dup_ids, strict=True):  # fmt: skip
            yield line, of, cid.tobytes().hex()

    # -- the second pass ----------------------------------------------------------------------
    def batches(
        self, batch: int, seed: int, *, skip_lines: Container[int] = ()
    ) -> Iterator[list[Candidate]]:
        """The candidates in a seeded random order, ``batch`` at a time. ``skip_lines``: line
        numbers not to feed (a resumed run's lines already in its ledger); the order of the
        others is the same as without them."""
        if batch < 1:
            raise ValueError("batch must be >= 1")
        order = np.random.default_rng(seed).permutation(len(self._lines))
        out: list[Candidate] = []
        with self.path.open("rb") as fh:
            st = os.fstat(fh.fileno())
            if (st.st_size, st.st_mtime_ns) != self._stat:
                raise FoundryError(f"{self.path} changed since it was read; verify it again")
            fd = fh.fileno()
            for start in range(0, len(order), _ORDER_CHUNK):  # no list of every index
                for i in order[start : start + _ORDER_CHUNK].tolist():
                    line = int(self._lines[i])
                    if line in skip_lines:
                        continue
                    out.append(self._candidate(fd, i, line))
                    self._fed[i >> 3] |= 1 << (i & 7)
                    if len(out) == batch:
                        yield out
                        out = []
        if out:
            yield out

    def _candidate(self, fd: int, i: int, line: int) -> Candidate:
        offset, length = int(self._offsets[i]), int(self._lengths[i])
        if length > MAX_LINE_BYTES:
            prefix = os.pread(fd, KEPT_PREFIX_CHARS, offset)
            line_hash, done = hashlib.blake2b(digest_size=16), 0
            while done < length:
                block = os.pread(fd, min(length - done, _READ_CHUNK), offset + done)
                if not block:
                    break
                line_hash.update(block)
                done += len(block)
            cand = _invalid_candidate(
                self.domain, self.path.name, line, _too_large(length), prefix, length,
                line_hash.hexdigest(),
            )  # fmt: skip
        else:
            raw = os.pread(fd, length, offset)
            parsed = parse_line(raw, self.domain)
            if isinstance(parsed, ParsedLine):
                cand = Candidate(
                    parsed.payload,
                    source="injected",
                    generation=parsed.generation,
                    parent_ids=parsed.parent_ids,
                    id=example_id(self.domain, parsed.payload, parsed.text, self.identity),
                    input_line=line,
                )
            else:
                cand = _invalid_candidate(
                    self.domain, self.path.name, line, parsed, raw, length, _raw_digest(raw)
                )
        if cand.id != self._ids[i].tobytes().hex():
            raise FoundryError(
                f"{self.path} line {line} changed since it was read; verify the file again "
                "once nothing writes to it"
            )
        return cand

    def fed(self, i: int) -> bool:
        return bool(self._fed[i >> 3] >> (i & 7) & 1)

    # -- every line's verdict, after the run ----------------------------------------------------
    def verdicts(self, rows: Iterator[dict[str, Any]], stop_reason: str = "") -> Iterator[dict]:
        """One verdict per line of the file, in file order, from the run's ledger rows of this
        input (``rows``: dicts with ``input_line``, ordered by it) and the reader's own."""
        originals = set(self._dup_of.tolist())
        decided: dict[int, str] = {}
        blank = iter(self._blank.tolist())
        dups = self.duplicates()
        next_blank = next(blank, None)
        next_dup = next(dups, None)
        next_row = next(rows, None)
        index = 0  # into the candidate lines
        self.unrecorded = 0
        for line in range(1, self.n_lines + 1):
            if next_blank == line:
                next_blank = next(blank, None)
                yield {"line": line, "content_id": None, "decision": "skipped",
                       "reason": "blank line", "decided_by": "input"}  # fmt: skip
                continue
            if next_dup is not None and next_dup[0] == line:
                _, of, cid = next_dup
                next_dup = next(dups, None)
                yield {
                    "line": line, "content_id": cid, "decision": "duplicate",
                    "reason": f"duplicate of line {of} ({decided.get(of, 'pending')})",
                    "decided_by": "input", "duplicate_of": of,
                }  # fmt: skip
                continue
            if index >= len(self._lines) or self._lines[index] != line:  # pragma: no cover
                raise AssertionError(f"line {line} of {self.path} has no verdict")
            i, index = index, index + 1
            while next_row is not None and next_row["input_line"] < line:
                next_row = next(rows, None)  # rows of lines this file does not have
            if next_row is None or next_row["input_line"] != line:
                if self.fed(i):
                    self.unrecorded += 1
                    reason = "read, but the ledger has no row for it"
                else:
                    reason = "not read: the run stopped first"
                    reason += f" ({stop_reason})" if stop_reason else ""
                    reason += "; --resume goes on"
                verdict = {"line": line, "content_id": self._ids[i].tobytes().hex(),
                           "decision": "pending", "reason": reason, "decided_by": None}  # fmt: skip
            else:
                verdict = _row_verdict(next_row)
                next_row = next(rows, None)
            if line in originals:
                decided[line] = verdict["decision"]
            yield verdict


def _json_or_none(text: str | None) -> Any:
    return json.loads(text) if text else None


def _row_verdict(row: dict[str, Any]) -> dict[str, Any]:
    verdict = {
        "line": row["input_line"],
        "content_id": row["content_id"],
        "decision": row["decision"],
        "reason": row["reason"],
        "decided_by": row["decided_by"],
        "seq": row["seq"],
    }
    if row["gt_properties"]:
        verdict["properties"] = _json_or_none(row["gt_properties"])
    if row["gt_reason"]:  # what the ground truth said (the failing test, the limit reached)
        verdict["gt_reason"] = row["gt_reason"]
    if row["decided_by"] == "surrogate":
        verdict["predicted"] = _json_or_none(row["predicted"])
        verdict["bound"] = row["bound"]
    return verdict


# -- the ledger side ---------------------------------------------------------------------------
_ROW_COLUMNS = (
    "seq, input_line, content_id, decision, reason, decided_by, gt_properties, gt_reason, "
    "predicted, bound"
)


def _input_rows(ledger: Ledger, stream_id: str) -> Iterator[dict[str, Any]]:
    cursor = ledger.db.execute(
        f"SELECT {_ROW_COLUMNS} FROM examples WHERE generator_hash = ? "
        "AND input_line IS NOT NULL ORDER BY input_line, seq",
        (f"input:{stream_id}",),
    )
    names = [d[0] for d in cursor.description]
    while True:
        rows = cursor.fetchmany(10_000)
        if not rows:
            return
        for row in rows:
            yield dict(zip(names, row, strict=True))


def ledger_lines(run_dir: Path, stream_id: str) -> LineSet:
    """The input lines that already have a row in ``run_dir``'s ledger (read-only), for a
    resumed ``verify`` to skip. Refuses a ledger holding rows of another input file."""
    from foundry.ledger import Ledger

    path = Path(run_dir) / Ledger.FILENAME
    lines = LineSet()
    if not path.is_file():
        return lines
    ledger = Ledger(Path(run_dir), read_only=True)
    try:
        ours = f"input:{stream_id}"
        other = ledger.db.execute(
            "SELECT generator_hash FROM examples WHERE generator_hash != ? LIMIT 1", (ours,)
        ).fetchone()
        if other is not None:
            raise FoundryError(
                f"{run_dir} holds rows of another input ({other[0]}), not of this file "
                f"({ours}): resume with the same, unchanged file, or use a new --run-dir"
            )
        for (line,) in ledger.db.execute(
            "SELECT input_line FROM examples WHERE input_line IS NOT NULL"
        ):
            lines.add(line)
    finally:
        ledger.close()
    return lines


def record_duplicates(ledger: Ledger, rows: Iterable[tuple[int, int, str]]) -> int:
    """Keep the duplicate lines of an input in the ledger's ``input_duplicates`` table
    (line, the line it repeats, content id) and commit; returns how many."""
    ledger.db.execute(
        "CREATE TABLE IF NOT EXISTS input_duplicates (line INTEGER PRIMARY KEY, "
        "duplicate_of INTEGER NOT NULL, content_id TEXT NOT NULL)"
    )
    n = 0
    batch: list[tuple[int, int, str]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= 10_000:
            ledger.db.executemany("INSERT OR REPLACE INTO input_duplicates VALUES (?, ?, ?)", batch)
            n += len(batch)
            batch = []
    ledger.db.executemany("INSERT OR REPLACE INTO input_duplicates VALUES (?, ?, ?)", batch)
    n += len(batch)
    ledger.commit()
    return n


def write_verdicts(
    run_dir: Path, source: JsonlInput, out: Path | None = None
) -> tuple[Path, dict[str, int]]:
    """Write one verdict per line of ``source`` (JSONL, in file order) from ``run_dir``'s
    ledger; returns the path and the count of each decision. Written atomically."""
    from foundry.files import atomic_path
    from foundry.ledger import Ledger

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / VERDICTS_FILENAME
    counts = dict.fromkeys(VERDICT_DECISIONS, 0)
    ledger = Ledger(run_dir, read_only=True)
    try:
        meta = ledger.meta()
        stop_reason = meta.get("stop_reason") or meta.get("stats", {}).get("stop_reason", "")
        rows = _input_rows(ledger, source.stream_id)
        with atomic_path(out) as tmp, tmp.open("w") as fh:
            for verdict in source.verdicts(rows, stop_reason):
                counts[verdict["decision"]] = counts.get(verdict["decision"], 0) + 1
                fh.write(json.dumps(verdict) + "\n")
    finally:
        ledger.close()
    return out, counts


def read_jsonl(
    path: Path, batch: int, seed: int, *, domain: str, skip_lines: Container[int] = ()
) -> Iterator[list[Candidate]]:
    """The file's candidates in a seeded random order, in batches (see :class:`JsonlInput`)."""
    return JsonlInput.scan(Path(path), domain).batches(batch, seed, skip_lines=skip_lines)


def file_digest(path: Path) -> str:
    """blake2b-8 of a file's bytes, read 1 MiB at a time."""
    digest = hashlib.blake2b(digest_size=8)
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(_READ_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# -- a saved surrogate (verify --surrogate-from) ---------------------------------------------
_MODEL_FILE = re.compile(r"v(\d+)\.pkl")


def _ledger_versions(run_dir: Path) -> tuple[int | None, list[int]]:
    """(the champion, every version newest first) as the run's ledger records them."""
    from foundry.ledger import Ledger

    try:
        ledger = Ledger(run_dir, read_only=True)
    except Exception:  # no ledger, or unreadable: fall back on the files
        return None, []
    try:
        meta = ledger.meta()
        champion = (meta.get("book") or {}).get("champion")
        if champion is None:
            champion = (meta.get("stats") or {}).get("champion")
        versions = sorted((int(r["version"]) for r in ledger.table("surrogates")), reverse=True)
    except Exception:
        return None, []
    finally:
        ledger.close()
    return (int(champion) if champion is not None else None), versions


def load_saved_surrogate(run_dir: Path, warn: Any = None) -> tuple[Surrogate, int, str]:
    """The surrogate to screen with from another run: the version its ledger says was
    champion, else the newest the ledger knows, else the newest ``v<N>.pkl`` - each only if
    it unpickles into a surrogate (a truncated or foreign file is skipped, with a warning).
    Returns (model, version, why this one). Unpickling runs code: load only runs you trust."""
    import pickle

    run_dir = Path(run_dir)
    model_dir = run_dir / "surrogates"
    files = {
        int(m.group(1)): p
        for p in (model_dir.glob("v*.pkl") if model_dir.is_dir() else ())
        if (m := _MODEL_FILE.fullmatch(p.name))
    }
    if not files:
        raise FoundryError(f"no saved surrogate in {model_dir}")
    champion, known = _ledger_versions(run_dir)
    tried: list[tuple[int, str]] = []
    if champion is not None:
        tried.append((champion, "the source run's champion"))
    tried += [(v, "the newest usable version the source run's ledger knows") for v in known]
    tried += [(v, "the newest usable saved file") for v in sorted(files, reverse=True)]
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr))
    seen: set[int] = set()
    for version, why in tried:
        if version in seen:
            continue
        seen.add(version)
        path = files.get(version)
        if path is None:
            warn(f"surrogate v{version} ({why}) has no file {model_dir}/v{version}.pkl")
            continue
        try:
            with path.open("rb") as fh:
                model = pickle.load(fh)
        except Exception as exc:
            warn(f"skipped {path}: cannot be unpickled ({type(exc).__name__}: {exc})")
            continue
        if not isinstance(model, Surrogate):
            warn(f"skipped {path}: a {type(model).__name__}, not a surrogate")
            continue
        return model, version, why
    raise FoundryError(f"no loadable surrogate in {model_dir} (tried {sorted(seen)})")
