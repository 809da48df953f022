"""Rule checks of hostile input (programs, proofs) outside the coordinator's interpreter.

A domain that sets ``untrusted_check`` has its ``check`` run in a guarded child - the same
host, protocol and launcher as its ground truth - under a time limit per candidate. A parser
that hangs or crashes on a crafted input then costs that candidate (an ``invalid`` row with
the reason), never the run.
"""

from __future__ import annotations

from collections.abc import Sequence

from foundry.contract import Candidate
from foundry.execution.host import host_for
from foundry.execution.spec import VerifierSpec


class GuardedChecker:
    """``check_many(candidates) -> reasons`` in a warm, killable child."""

    def __init__(self, spec: VerifierSpec, timeout_s: float) -> None:
        self.spec = spec
        self.timeout_s = timeout_s
        self._host = host_for(spec)

    def check_many(self, candidates: Sequence[Candidate]) -> list[str | None]:
        results = self._host.check_many(list(enumerate(candidates)), self.timeout_s)
        reasons: list[str | None] = ["rule check gave no answer"] * len(candidates)
        for result in results:
            reasons[result.key] = result.reason
        return reasons

    def close(self) -> None:
        self._host.close()
