"""What one ground-truth evaluation ends as: a verdict, or a failure of a named kind."""

from __future__ import annotations

from dataclasses import dataclass

from foundry.contract import Verdict

#: failure kinds recorded in the ledger's ``failure_kind`` column
SIMULATION_FAILED = "simulation_failed"  # the tool ran and gave no usable answer
TIMEOUT = "timeout"  # no verdict within the verifier's wall time (or start-up time)
PLUGIN_ERROR = "plugin_error"  # the plugin raised or returned garbage
CRASH = "crash"  # the verifier process died, or its worker was lost
RESOURCE_LIMIT = "resource_limit"  # memory, CPU time, processes or output above the limit
PROTOCOL_ERROR = "protocol_error"  # the child sent a garbled, oversized or out-of-step frame
FAILURE_KINDS = (
    SIMULATION_FAILED,
    TIMEOUT,
    PLUGIN_ERROR,
    CRASH,
    RESOURCE_LIMIT,
    PROTOCOL_ERROR,
)
#: kinds worth another try: a crash or a non-converged run may well succeed again
RETRYABLE = frozenset({SIMULATION_FAILED, CRASH})


@dataclass
class GTResult:
    """The outcome of one ground-truth evaluation (a verdict or a recorded failure)."""

    key: int
    verdict: Verdict | None
    failure_kind: str = ""
    error: str = ""
    walltime_s: float = 0.0
    host: str = ""
    simulator: str = ""
    simulator_version: str = ""


@dataclass
class CheckResult:
    """The outcome of one guarded rule check: ``reason`` None means the candidate is fine."""

    key: int
    reason: str | None
