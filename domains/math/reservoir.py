"""The reservoir: real theorem statements with their proofs as published - miniF2F in Coq.

Twelve Olympiad-style problems of miniF2F-test (Zheng, Han, Polu, ICLR 2022,
arXiv:2109.00110; MIT licence) in the Coq port shipped with the ``itp-interface`` 1.12.0
sdist, each with the proof script its file ships: some prove their theorem, some end in
``Admitted.``, and some do not elaborate with Coq 8.16's library - real data, judged like any
other record. ``data/PROVENANCE`` says how each file became a record.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from typing import Any

from foundry.contract import Candidate

__all__ = ["PROVENANCE", "minif2f_records", "reservoir_candidates"]

PROVENANCE = "miniF2F-test, Coq port in itp-interface 1.12.0 (Zheng et al. 2022, arXiv:2109.00110)"


@functools.cache
def minif2f_records() -> tuple[dict[str, Any], ...]:
    text = (importlib.resources.files(__package__) / "data" / "minif2f_coq.jsonl").read_text()
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())


def reservoir_candidates() -> list[Candidate]:
    return [Candidate(payload=dict(record), source="real") for record in minif2f_records()]
