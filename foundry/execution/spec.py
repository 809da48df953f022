"""Which verifier a task needs, as plain data that travels to workers (picklable, hashable)."""

from __future__ import annotations

from dataclasses import dataclass, field

from foundry.execution.resources import Isolation, Resources


@dataclass(frozen=True)
class VerifierSpec:
    """Everything a worker needs to build the same warm verifier the coordinator means.

    ``domain_spec`` is an entry-point name or ``module:attr``; ``options_json`` the domain's
    options as canonical JSON (validated in the coordinator, rebuilt in the worker);
    ``resources`` the verifier's declaration with the run's overrides applied; ``isolation``
    the level the run resolved; ``sandbox_paths`` extra host paths a sandbox may read;
    ``pass_env`` environment variables copied into the child's otherwise clean environment.
    """

    domain_spec: str
    options_json: str = "{}"
    fidelity: str | None = None
    resources: Resources = field(default_factory=Resources)
    isolation: Isolation = "process"
    sandbox_paths: tuple[str, ...] = ()
    pass_env: tuple[str, ...] = ()
