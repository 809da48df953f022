"""The per-process cache of encoded candidates that the deep-ensemble surrogates share.

A run scores each candidate with the version in force *and* its challenger, and a fit re-reads
recent labels: encoding a candidate (a graph with a physics baseline, a conformer) once instead of
once per model is a large part of inference cost. Keys are (encoder, candidate id, the evidence
tiers the candidate carries): an encoder may read a cheaper tier's verdict (an xTB baseline), so
the same molecule before and after that tier ran is two entries. Thread-safe (the scheduler fits
in a background thread while it predicts); bounded, oldest entries out first; candidates without
an id are encoded every time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from foundry.contract import Candidate, PluginError

__all__ = ["EncodedCache"]

T = TypeVar("T")


def _key(encoder: Any, cand: Candidate) -> tuple[Any, str, tuple[str, ...]]:
    return (encoder, cand.id, tuple(sorted(cand.evidence)))


class EncodedCache(Generic[T]):
    """Encoded candidates by (encoder, id, evidence tiers)."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[Any, str, tuple[str, ...]], T] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(
        self,
        encoder: Any,
        candidates: Sequence[Candidate],
        encode_many: Callable[[Sequence[int]], Sequence[T]],
    ) -> list[T]:
        """The cached encodings of ``candidates``; ``encode_many`` gets the indices of the misses
        (in order) and returns their checked encodings, in one call."""
        out: list[T | None] = [None] * len(candidates)
        with self._lock:
            for i, cand in enumerate(candidates):
                if cand.id:
                    out[i] = self._items.get(_key(encoder, cand))
        missing = [i for i, item in enumerate(out) if item is None]
        if missing:
            encoded = encode_many(missing)
            if len(encoded) != len(missing):
                raise PluginError(
                    f"the encoder returned {len(encoded)} items for {len(missing)} candidates"
                )
            with self._lock:
                for i, item in zip(missing, encoded, strict=True):
                    out[i] = item
                    if candidates[i].id:
                        self._items[_key(encoder, candidates[i])] = item
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
        return out  # type: ignore[return-value]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
