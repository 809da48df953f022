"""Run configuration: the one place where user input is validated (pydantic), then frozen.

A run is configured from a TOML or YAML file plus command-line overrides; the resolved
configuration is written into the run directory so the run can be reproduced.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from foundry.execution.slurm import SlurmSettings


class Budget(BaseModel):
    """When to stop. Any limit reached ends the run; ``None`` means no limit on that axis."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_candidates: int | None = Field(2000, ge=1, description="candidates generated")
    max_ground_truth_calls: int | None = Field(None, ge=0)
    walltime_s: float | None = Field(None, gt=0)
    target_accepted: int | None = Field(None, ge=1, description="stop after this many accepted")


class ResourceOverrides(BaseModel):
    """``[resources]``: the run's changes to what the verifier declares (see
    ``foundry.execution.resources.Resources``); unset keys keep the declaration."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    threads: int | None = Field(None, ge=1, description="cores one item uses")
    memory_mb: int | None = Field(None, ge=16, description="resident memory of the process tree")
    gpus: int | None = Field(None, ge=0)
    timeout_s: float | None = Field(None, gt=0, description="wall time per item")
    startup_timeout_s: float | None = Field(None, gt=0, description="wall time to start")
    expected_cost_s: float | None = Field(None, gt=0, description="worker seconds per item")
    cpu_time_s: float | None = Field(None, gt=0, description="CPU seconds per item")
    max_processes: int | None = Field(None, ge=1, description="processes alive at once")
    output_mb: float | None = Field(None, gt=0, description="stdout/stderr/file bytes per item")
    recycle_after: int | None = Field(None, ge=1, description="items per warm child")
    recycle_above_mb: int | None = Field(None, ge=1, description="replace a child this large")


class GenerationSettings(BaseModel):
    """``[generations]``: the closed loop. Generation 0 comes from the domain's generator;
    generation g+1 is proposed (``Domain.propose``) from verified examples of earlier ones,
    mixed with the domain's real reservoir. Monitors watch each generation against the
    reservoir and, with ``prevention`` on, act through the loop's knobs."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    size: int | None = Field(
        None,
        ge=1,
        description="candidates proposed per generation (duplicates of earlier ones are "
        "dropped); None: no generations (the default)",
    )
    count: int | None = Field(
        None, ge=1, description="generations to make; None: until the budget ends the run"
    )
    parents: int = Field(64, ge=1, description="parents a generation is proposed from")
    parent_selection: Literal["uniform", "confident"] = Field(
        "uniform",
        description="confident: the accepted examples the surrogate was surest of (the "
        "selection pressure that narrows a loop); uniform: any verified example",
    )
    pool: Literal["accumulate", "latest"] = Field(
        "accumulate",
        description="accumulate: parents from every earlier generation; latest: only the last",
    )
    real_fraction: float = Field(
        0.2, ge=0, le=1, description="share of each generation's parents from the reservoir"
    )
    verify_reservoir: bool = Field(
        True,
        description="verify the domain's real reservoir once, first, in a regime of its own: "
        "real examples then carry ground-truth labels into training and the export",
    )
    max_synthetic_to_real: float | None = Field(
        8.0,
        gt=0,
        description="per slice, synthetic parents per real one at most (real ones of that "
        "slice fill the rest); None: unbounded",
    )
    novelty_fraction: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of parents chosen for their distance from those already chosen "
        "(diversity injection)",
    )
    prevention: bool = Field(True, description="monitors act on the loop (False: they only log)")
    vendi_alarm: float = Field(
        0.75,
        gt=0,
        lt=1,
        description="act when a generation's Vendi score falls below this share of the "
        "reference (the reservoir's)",
    )
    vendi_reset: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="below this share, the next generation is proposed from the reservoir only",
    )
    mmd_alarm: float | None = Field(
        None, gt=0, description="act when the squared MMD to the reservoir exceeds this"
    )
    max_mutation_scale: float = Field(8.0, ge=1, description="cap of the raised mutation step")
    max_real_fraction: float = Field(0.6, gt=0, le=1, description="cap of raised real mixing")
    acceptance_band: tuple[float, float] | None = Field(
        None,
        description="curriculum: keep each generation's acceptance rate in [low, high] by "
        "turning the domain's difficulty knob one step a generation",
    )

    @model_validator(mode="after")
    def _check(self) -> GenerationSettings:
        if self.vendi_reset >= self.vendi_alarm:
            raise ValueError("vendi_reset must be below vendi_alarm")
        band = self.acceptance_band
        if band is not None and not 0 <= band[0] < band[1] <= 1:
            raise ValueError("acceptance_band must be [low, high] with 0 <= low < high <= 1")
        return self


class RunConfig(BaseModel):
    """Everything that determines a run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    domain: str = Field("circuits", description="entry point name or module:attr")
    allowed_domains: list[str] | None = Field(
        None, description="allow-list; when set, `domain` must be in it"
    )
    run_dir: Path = Path("runs/latest")
    seed: int = Field(0, ge=0, description="every random draw of the run derives from it")
    fidelity: str | None = Field(
        None, description="the ground truth's fidelity (default: the domain's last, the top)"
    )
    ladder: list[str] | None = Field(
        None,
        description="fidelities to run, cheapest first, the last being the top tier every "
        "certificate is against; each cheaper tier runs before the surrogate scores an item, "
        "and the surrogate sees its verdict (Candidate.evidence)",
    )
    steering: dict[str, float] = Field(default_factory=dict)
    domain_options: dict[str, Any] = Field(
        default_factory=dict,
        description="the domain's typed options (checked against its Options dataclass)",
    )

    # certified release
    policy: Literal["certified", "fixed_band"] = Field(
        "certified",
        description="fixed_band: trust the surrogate inside fixed risk levels, no audits "
        "(a DP-GEN-style comparison; gives no error bound)",
    )
    fixed_accept_risk: float = Field(0.05, ge=0, le=1, description="fixed_band accept level")
    fixed_reject_risk: float = Field(0.05, ge=0, le=1, description="fixed_band reject level")
    alpha: float = Field(0.02, gt=0, lt=1, description="target error rate of released items")
    delta: float = Field(0.05, gt=0, lt=1, description="1 - confidence of the bound")
    reject_alpha: float | None = Field(
        None, gt=0, lt=1, description="target error rate of surrogate rejections (default alpha)"
    )
    audit_rate: float = Field(0.1, gt=0, le=1, description="fraction of surrogate-decided audits")
    uncertified_audit_rate: float = Field(
        1.0,
        gt=0,
        le=1,
        description="audit rate in slices still missing a route's certificate (for at most 8 "
        "first-look points of audits); below 1 lets the certified route save ground truth "
        "there, at the price of slower certification",
    )
    relaxed_audit_rate: float | None = Field(
        None,
        gt=0,
        le=1,
        description="audit rate of a stratum once the champion's certificate there covers "
        "every route and holds relax_after_audits audits (audits are a count per certificate, "
        "not a rate); None: audit_rate throughout",
    )
    relax_after_audits: int = Field(
        1000, ge=1, description="audits of the champion in a stratum before its rate relaxes"
    )
    uncertain_share: float = Field(
        1.0,
        ge=0,
        le=1,
        description="expected share of uncertain items (certified slices, not audited, not "
        "decided) sent to the ground truth as training labels, riskier ones first; the rest are "
        "deferred: recorded with their reason, never released (a cost lever for slow ground "
        "truth; audits are not affected)",
    )
    max_item_risk: float = Field(
        0.1,
        gt=0,
        le=0.5,
        description="no item whose own predicted risk is above this is decided by the "
        "surrogate, however good the certificate of its slice",
    )
    deterministic: bool = Field(
        False,
        description="fold ground-truth results in at batch boundaries, in submission order, "
        "and train synchronously: the same seed and results give the same decisions whatever "
        "the timing (the loop may wait for results)",
    )
    deterministic_lag_batches: int = Field(
        2, ge=1, description="batches a result may be late before a deterministic run waits"
    )
    recalibrate_growth: float = Field(
        2.0, gt=1, description="recalibrate when a version's audits grow by this factor"
    )

    # surrogate training
    min_train_labels: int = Field(300, ge=2)
    challenger_audits: int = Field(
        1000, ge=1, description="audits a new version collects before a newer one may replace it"
    )
    retrain_every: int = Field(1000, ge=1, description="new ground-truth labels between fits")
    pause_for_first_fit: bool = Field(
        True, description="hold generation while the first surrogate version trains"
    )
    surrogate: bool = Field(True, description="False: ground truth only (baseline)")

    # execution
    executor: Literal["local", "inline", "slurm"] = Field(
        "local",
        description="local: a Dask LocalCluster on this machine; inline: in this process "
        "(tests); slurm: Dask workers as Slurm jobs shaped by [slurm]",
    )
    slurm: SlurmSettings = Field(
        default_factory=SlurmSettings, description="worker jobs of executor = 'slurm'"
    )
    n_workers: int | None = Field(
        None, ge=1, description="Dask workers (default: usable cores / threads per item)"
    )
    isolation: Literal["none", "process", "bwrap"] | None = Field(
        None,
        description="where ground truth runs: none (in the worker), process (a killable child),"
        " bwrap (a bubblewrap sandbox); default: what the verifier declares, at least process."
        " May strengthen the verifier's declaration, never weaken it",
    )
    resources: ResourceOverrides = Field(default_factory=ResourceOverrides)
    sandbox_paths: list[str] = Field(
        default_factory=list, description="extra host paths a bwrap sandbox may read"
    )
    pass_env: list[str] = Field(
        default_factory=list, description="environment variables the verifier child keeps"
    )
    check_timeout_s: float = Field(
        10.0, gt=0, description="per candidate, for rule checks of untrusted domains"
    )
    batch_size: int = Field(512, ge=1)
    chunk_size: int | None = Field(
        None,
        ge=1,
        description="candidates per ground-truth task (default: from the verifier's cost, "
        "one a task for slow verifiers)",
    )
    chunk_target_s: float = Field(
        0.05,
        ge=0,
        description="worker seconds a task of a fast verifier grows to",
    )
    gt_max_attempts: int = Field(2, ge=1, description="tries for crashed/non-converged items")
    max_pending: int | None = Field(
        None, ge=1, description="ground-truth backlog that pauses generation (default: auto)"
    )
    generate_retries: int = Field(3, ge=0, description="consecutive generator failures tolerated")
    max_failure_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of ground-truth calls that may fail (crash, timeout, ...) before "
        "the run is reported as failed (exit status 3)",
    )

    generations: GenerationSettings = Field(default_factory=GenerationSettings)
    budget: Budget = Field(default_factory=Budget)
    progress: bool = True

    @model_validator(mode="after")
    def _check_allow_list(self) -> RunConfig:
        if self.allowed_domains is not None and self.domain not in self.allowed_domains:
            raise ValueError(
                f"domain {self.domain!r} is not in allowed_domains {self.allowed_domains}"
            )
        return self

    @property
    def effective_reject_alpha(self) -> float:
        return self.reject_alpha if self.reject_alpha is not None else self.alpha

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or YAML config file into a plain dict (validated later)."""
    text = path.read_text()
    if path.suffix == ".toml":
        data = tomllib.loads(text)
    elif path.suffix in {".yaml", ".yml"}:
        data = yaml.safe_load(text) or {}
    elif path.suffix == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"{path}: config must be .toml, .yaml/.yml or .json")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a table/mapping")
    return data


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into ``base`` (nested tables merge, scalars replace)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class ConfigError(ValueError):
    """The run configuration is invalid; the message is one line naming the key."""


def _one_line(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "config"
    got = first.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"config {where}: {first.get('msg', 'invalid')}{shown}{more}"


def load_config(path: Path | None = None, **overrides: Any) -> RunConfig:
    """The validated run config from ``path`` and ``overrides``; :class:`ConfigError` (one
    line) when it is invalid."""
    data = read_config_file(path) if path else {}
    try:
        return RunConfig.model_validate(merge(data, overrides))
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
