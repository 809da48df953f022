#!/usr/bin/env bash
# scripts/run.sh - install everything the default run needs, then run it: the quick start.
#
#   bash scripts/run.sh [FOUNDRY RUN ARGS...]     e.g.  bash scripts/run.sh --max-candidates 20000
#
# Installs with scripts/setup.sh (ngspice from Debian, a virtualenv with the CPU build of torch
# and foundry[circuits,slurm,dev]), then runs `foundry run` on the embedded default: the circuits
# domain on a Dask LocalCluster of this machine's cores, ledger and Parquet export in
# runs/latest (change with --run-dir). Prints the run's summary at the end.
#
# Environment: FOUNDRY_SETUP_ARGS (extra arguments for setup.sh), FOUNDRY_VENV (as for setup.sh).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
venv=${FOUNDRY_VENV:-.venv}
case "$venv" in /*) ;; *) venv="$repo/$venv" ;; esac

# shellcheck disable=SC2086  # FOUNDRY_SETUP_ARGS is a list of words on purpose
bash scripts/setup.sh ${FOUNDRY_SETUP_ARGS:-}
printf '[run] %s run %s\n' "$venv/bin/foundry" "$*"
exec "$venv/bin/foundry" run "$@"
