"""The host/child wire format: length-prefixed JSON frames, size-capped, read with a deadline.

Never pickle: whatever runs in the verifier child may be hostile, and unpickling its bytes
would let it run code in the worker. A frame is a 4-byte big-endian length and that many bytes
of UTF-8 JSON holding one object. The reader refuses a frame above ``max_bytes`` before
reading it, rejects NaN/Infinity and anything that is not a JSON object, and keeps partial
frames across calls so that a deadline can interrupt a half-written frame.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

from foundry.contract import Candidate, Verdict

_HEADER = struct.Struct("!I")
#: default cap on one frame (a verdict with its measurements is a few hundred bytes)
MAX_FRAME_BYTES = 8 * 1024 * 1024
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame: garbled, oversized, wrong shape."""


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def encode_frame(message: Mapping[str, Any]) -> bytes:
    data = _ENCODER.encode(message).encode()
    return _HEADER.pack(len(data)) + data


def write_frame(fd: int, message: Mapping[str, Any]) -> None:
    """Write one frame to ``fd`` (blocking until the peer has read enough of it)."""
    view = memoryview(encode_frame(message))
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FrameReader:
    """Reads frames from a pipe with a deadline; never blocks past it."""

    def __init__(self, fd: int, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self.fd = fd
        self.max_bytes = max_bytes
        self._buffer = bytearray()

    def _frame_from_buffer(self) -> dict[str, Any] | None:
        if len(self._buffer) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack_from(self._buffer)
        if size > self.max_bytes:
            raise ProtocolError(f"frame of {size} bytes exceeds the {self.max_bytes}-byte limit")
        end = _HEADER.size + size
        if len(self._buffer) < end:
            return None
        data = bytes(self._buffer[_HEADER.size : end])
        del self._buffer[:end]
        try:
            message = _DECODER.decode(data.decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"garbled frame: {exc}") from None
        if not isinstance(message, dict):
            raise ProtocolError(f"frame holds {type(message).__name__}, not an object")
        return message

    def read(
        self,
        timeout_s: float,
        *,
        poll_s: float | None = None,
        on_poll: Callable[[], None] | None = None,
    ) -> dict[str, Any] | None:
        """The next frame, or ``None`` when ``timeout_s`` passes first.

        Raises :class:`EOFError` when the peer closed the pipe and :class:`ProtocolError` for
        a bad frame. ``on_poll`` is called every ``poll_s`` while waiting (the host's resource
        watchdog); it may raise to abandon the wait.
        """
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            message = self._frame_from_buffer()
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            wait = remaining if poll_s is None else min(remaining, poll_s)
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                if on_poll is not None:
                    on_poll()
                continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise EOFError("peer closed the pipe")
            self._buffer += chunk
            if len(self._buffer) > self.max_bytes + _HEADER.size:
                (size,) = _HEADER.unpack_from(self._buffer)
                raise ProtocolError(
                    f"frame of {size} bytes exceeds the {self.max_bytes}-byte limit"
                )


# -- what travels: candidates out, verdicts back -------------------------------------------
def candidate_to_wire(candidate: Candidate) -> dict[str, Any]:
    return {
        "payload": candidate.payload,
        "source": candidate.source,
        "generation": int(candidate.generation),
        "parent_ids": list(candidate.parent_ids),
        "id": candidate.id,
        "evidence": {k: verdict_to_wire(v) for k, v in candidate.evidence.items()},
    }


def candidate_from_wire(data: Mapping[str, Any]) -> Candidate:
    return Candidate(
        payload=dict(data["payload"]),
        source=data["source"],
        generation=int(data["generation"]),
        parent_ids=tuple(data["parent_ids"]),
        id=str(data["id"]),
        evidence={str(k): verdict_from_wire(v) for k, v in data.get("evidence", {}).items()},
    )


def verdict_to_wire(verdict: Verdict) -> dict[str, Any]:
    return {
        "passed": bool(verdict.passed),
        "properties": {k: float(v) for k, v in verdict.properties.items()},
        "reason": str(verdict.reason),
        "measurements": {k: float(v) for k, v in verdict.measurements.items()},
    }


def _number_table(value: Any, what: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ProtocolError(f"verdict {what} is {type(value).__name__}, not an object")
    out: dict[str, float] = {}
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ProtocolError(f"verdict {what} {name!r} is not a number")
        if not math.isfinite(number):
            raise ProtocolError(f"verdict {what} {name!r} is not finite")
        out[name] = float(number)
    return out


def verdict_from_wire(data: Any) -> Verdict:
    """A verdict from the child, checked field by field (the child is not trusted)."""
    if not isinstance(data, dict):
        raise ProtocolError(f"verdict is {type(data).__name__}, not an object")
    extra = set(data) - {"passed", "properties", "reason", "measurements"}
    if extra:
        raise ProtocolError(f"verdict has unknown fields {sorted(extra)}")
    passed = data.get("passed")
    if not isinstance(passed, bool):
        raise ProtocolError("verdict 'passed' is not a boolean")
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        raise ProtocolError("verdict 'reason' is not a string")
    return Verdict(
        passed=passed,
        properties=_number_table(data.get("properties", {}), "property"),
        reason=reason[:2000],
        measurements=_number_table(data.get("measurements", {}), "measurement"),
    )
