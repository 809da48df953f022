"""``foundry submit``: the coordinator of a run as a Slurm batch job.

Writes ``<run_dir>/submit.sbatch``, a readable batch script that activates the environment
this command runs in (conda env or venv, or ``--activate``), changes to the directory it was
called from, and ``exec``s ``foundry run --resume`` with the same config and flags; then
submits it with ``sbatch --parsable`` and prints the job id and how to watch it.

Because the script resumes, the same script continues the run after anything that ends the
job early: a requeue (``--requeue``: node failure, preemption), ``scancel``, or the wall time
(``--signal=B:TERM@N`` warns ``foundry`` N seconds ahead; it stops, commits and exits).
Submit it again, by ``sbatch <run_dir>/submit.sbatch`` or by ``foundry submit`` with the
same arguments. ``exec`` makes ``foundry`` the batch shell itself, so the signal reaches it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from foundry.contract import FoundryError

#: Seconds before the wall time at which Slurm sends SIGTERM to ``foundry`` (default).
SIGNAL_BEFORE_WALLTIME_S = 120
#: Seconds added to a run's budget ``walltime_s`` for the job's ``--time``: start-up, the
#: final commit and export.
WALLTIME_SLACK_S = 600
#: Default memory of the coordinator job (MiB): the loop, the Dask scheduler, the surrogate.
COORDINATOR_MEMORY_MB = 4096
#: Name of the script inside the run directory.
SCRIPT_NAME = "submit.sbatch"
#: Run flags the script sets itself (or that make no sense inside it).
_OWN_FLAGS = frozenset({"config", "run_dir", "resume", "no_progress", "help"})


def add_submit_parser(
    subparsers: Any, add_run_flags: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    """Add ``foundry submit``: every flag of ``foundry run`` (``add_run_flags``) plus the
    coordinator job's shape."""
    p = subparsers.add_parser(
        "submit",
        help="write <run_dir>/submit.sbatch (foundry run --resume) and submit it to Slurm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_flags(p)
    job = p.add_argument_group("the coordinator job (worker jobs: the config's [slurm] table)")
    job.add_argument("--job-name", help="Slurm job name (default: foundry-<run dir name>)")
    job.add_argument(
        "--job-walltime-s",
        type=float,
        help="wall time of the coordinator job, seconds (--time; default: the budget's "
        f"walltime_s + {WALLTIME_SLACK_S} s, else the partition's default)",
    )
    job.add_argument(
        "--job-cpus",
        type=int,
        help="cores of the coordinator job (default: 2 with executor slurm, else the "
        "local workers' cores)",
    )
    job.add_argument(
        "--job-mem-mb",
        type=int,
        help=f"memory of the coordinator job, MiB (default {COORDINATOR_MEMORY_MB}, more for "
        "local workers)",
    )
    job.add_argument("--partition", help="default: the config's slurm.partition")
    job.add_argument("--account", help="default: the config's slurm.account")
    job.add_argument("--qos", help="default: the config's slurm.qos")
    job.add_argument(
        "--signal-s",
        type=int,
        default=SIGNAL_BEFORE_WALLTIME_S,
        help="SIGTERM this many seconds before the wall time, so the run stops and commits "
        "(default %(default)s)",
    )
    job.add_argument(
        "--sbatch-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="extra #SBATCH option, e.g. --constraint=skylake (repeatable)",
    )
    job.add_argument(
        "--activate",
        metavar="CMD",
        help="shell command that makes `foundry` available in the job (default: the conda "
        "env or venv this command runs in)",
    )
    job.add_argument(
        "--dry-run", action="store_true", help="write and print the script, do not submit it"
    )
    p.set_defaults(func=partial(cmd_submit, add_run_flags=add_run_flags))
    return p


# -- the script ---------------------------------------------------------------------------


def detect_activation(
    environ: Mapping[str, str] | None = None,
    prefix: str | None = None,
    base_prefix: str | None = None,
) -> str | None:
    """The shell line that activates the Python environment of this interpreter, or None.

    A conda env (``CONDA_PREFIX``): ``source <base>/etc/profile.d/conda.sh && conda activate
    <env>``; a venv: ``source <venv>/bin/activate``. When both are set, the one this
    interpreter belongs to wins (a venv made from a conda Python is a venv).
    """
    env = os.environ if environ is None else environ
    prefix = sys.prefix if prefix is None else prefix
    base_prefix = sys.base_prefix if base_prefix is None else base_prefix
    conda = env.get("CONDA_PREFIX")
    venv = env.get("VIRTUAL_ENV") or (prefix if prefix != base_prefix else None)

    def same(a: str, b: str) -> bool:
        return os.path.realpath(a) == os.path.realpath(b)

    def conda_line(env_prefix: str) -> str:
        conda_exe = env.get("CONDA_EXE")
        if conda_exe:
            base = str(Path(conda_exe).parent.parent)
        elif f"{os.sep}envs{os.sep}" in env_prefix:
            base = env_prefix.rsplit(f"{os.sep}envs{os.sep}", 1)[0]
        else:
            base = env_prefix
        script = shlex.quote(str(Path(base) / "etc" / "profile.d" / "conda.sh"))
        return f"source {script} && conda activate {shlex.quote(env_prefix)}"

    if conda and same(conda, prefix):
        return conda_line(conda)
    if venv:
        return f"source {shlex.quote(str(Path(venv) / 'bin' / 'activate'))}"
    if conda:
        return conda_line(conda)
    return None


def _directive_path(path: Path) -> str:
    """A path for an ``#SBATCH`` line: no whitespace (sbatch does not quote), ``%`` escaped."""
    text = str(path)
    if any(c.isspace() for c in text):
        raise FoundryError(f"the run dir must not contain whitespace for Slurm: {text!r}")
    return text.replace("%", "%%")


def run_command(
    args: argparse.Namespace,
    add_run_flags: Callable[[argparse.ArgumentParser], None],
    config: Path | None,
    run_dir: Path,
) -> list[str]:
    """``foundry run --config C --run-dir R --resume`` and every other run flag as given."""
    argv = ["foundry", "run"]
    if config is not None:
        argv += ["--config", str(config)]
    argv += ["--run-dir", str(run_dir), "--resume", "--no-progress"]
    probe = argparse.ArgumentParser(add_help=False)
    add_run_flags(probe)
    for action in probe._actions:
        if action.dest in _OWN_FLAGS or not action.option_strings:
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False or value == action.default:
            continue
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:
            argv.append(flag)
        elif isinstance(value, list):
            for one in value:
                argv += [flag, str(one)]
        else:
            argv += [flag, str(value)]
    return argv


def render_script(
    *,
    run_dir: Path,
    workdir: Path,
    command: list[str],
    activation: str | None,
    job_name: str,
    walltime_s: float | None,
    cpus: int,
    mem_mb: int,
    partition: str | None = None,
    account: str | None = None,
    qos: str | None = None,
    signal_s: int = SIGNAL_BEFORE_WALLTIME_S,
    extra_options: tuple[str, ...] | list[str] = (),
) -> str:
    """The coordinator's batch script (plain text, meant to be read)."""
    from foundry.execution.slurm import slurm_time

    logs = _directive_path(run_dir)
    directives = [f"--job-name={job_name}"]
    directives += [f"--partition={partition}"] if partition else []
    directives += [f"--account={account}"] if account else []
    directives += [f"--qos={qos}"] if qos else []
    directives += [f"--time={slurm_time(walltime_s)}"] if walltime_s else []
    directives += [
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={cpus}",
        f"--mem={mem_mb}M",
        f"--output={logs}/slurm-coordinator-%j.out",
        f"--error={logs}/slurm-coordinator-%j.err",
        f"--signal=B:TERM@{signal_s}",
        "--requeue",
        "--open-mode=append",
        *extra_options,
    ]
    script = run_dir / SCRIPT_NAME
    lines = [
        "#!/bin/bash",
        f"# The coordinator of the foundry run in {run_dir}",
        f"# (written by `foundry submit` on {time.strftime('%Y-%m-%d %H:%M:%S')}).",
        "# It resumes the run: submit it again to continue after a scancel, a requeue or",
        f"# the wall time:  sbatch {shlex.quote(str(script))}",
        f"# Slurm sends SIGTERM {signal_s} s before the wall time; foundry then stops, commits",
        "# and exits, and the next submission continues where it left off.",
        *(f"#SBATCH {d}" for d in directives),
        "",
        "set -e",
    ]
    if activation:
        lines += ["# the Python environment foundry was submitted from", activation]
    else:
        bindir = shlex.quote(str(Path(sys.executable).parent))
        lines += [
            "# no conda env or venv detected (pass --activate CMD): this interpreter's bin",
            f'export PATH={bindir}:"$PATH"',
        ]
    lines += [
        f"cd {shlex.quote(str(workdir))}",
        "# exec: foundry becomes the batch shell, so Slurm's signals reach it",
        "exec " + shlex.join(command),
        "",
    ]
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- the command --------------------------------------------------------------------------


def _default_cpus(cfg: Any) -> int:
    if cfg.executor == "slurm":
        return 2
    if cfg.executor == "inline":
        return 1
    return (cfg.n_workers or 4) * (cfg.resources.threads or 1)


def cmd_submit(
    args: argparse.Namespace, add_run_flags: Callable[[argparse.ArgumentParser], None]
) -> int:
    from foundry.cli import _overrides
    from foundry.config import load_config

    cfg = load_config(args.config, **_overrides(args))  # a bad config fails here, not in a job
    workdir = Path.cwd().resolve()
    run_dir = (workdir / Path(cfg.run_dir).expanduser()).resolve()
    config = (workdir / args.config).resolve() if args.config else None
    for name in ("job_cpus", "job_mem_mb", "signal_s"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "signal_s" else 1):
            raise FoundryError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.job_walltime_s is not None and not 0 < args.job_walltime_s < float("inf"):
        raise FoundryError(f"--job-walltime-s must be positive, got {args.job_walltime_s}")
    walltime_s = args.job_walltime_s
    if walltime_s is None and cfg.budget.walltime_s is not None:
        walltime_s = cfg.budget.walltime_s + args.signal_s + WALLTIME_SLACK_S
    cpus = args.job_cpus or _default_cpus(cfg)
    mem_mb = args.job_mem_mb or max(COORDINATOR_MEMORY_MB, 1024 * cpus)
    for option in args.sbatch_option:
        if not option.startswith("-") or "\n" in option:
            raise FoundryError(f"--sbatch-option takes an sbatch option like --x=y: {option!r}")

    text = render_script(
        run_dir=run_dir,
        workdir=workdir,
        command=run_command(args, add_run_flags, config, run_dir),
        activation=args.activate if args.activate else detect_activation(),
        job_name=args.job_name or f"foundry-{run_dir.name}",
        walltime_s=walltime_s,
        cpus=cpus,
        mem_mb=mem_mb,
        partition=args.partition or cfg.slurm.partition,
        account=args.account or cfg.slurm.account,
        qos=args.qos or cfg.slurm.qos,
        signal_s=args.signal_s,
        extra_options=args.sbatch_option,
    )
    run_dir.mkdir(parents=True, exist_ok=True)  # Slurm writes the job's logs there
    script = run_dir / SCRIPT_NAME
    _write_atomic(script, text)
    if args.dry_run:
        print(text, end="")
        print(f"# wrote {script} (not submitted: --dry-run)")
        return 0

    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise FoundryError(
            f"sbatch is not on PATH; the script is written: submit it with sbatch {script}"
        )
    done = subprocess.run(
        [sbatch, "--parsable", str(script)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise FoundryError(f"sbatch failed (exit {done.returncode}): {why}")
    job_id = done.stdout.strip().split(";")[0]
    print(f"submitted coordinator job {job_id}: {script}")
    print(f"  watch it:  squeue -j {job_id}")
    print(f"             foundry status {shlex.quote(str(run_dir))}")
    print(f"  its log:   {run_dir}/slurm-coordinator-{job_id}.out (and .err)")
    print(f"  continue:  sbatch {shlex.quote(str(script))}   (it runs foundry run --resume)")
    return 0
