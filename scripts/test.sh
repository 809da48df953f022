#!/usr/bin/env bash
# scripts/test.sh - the project's whole check: install (scripts/setup.sh), lint (ruff), then the
# full pytest suite, slow and simulator tests included. This is what CI runs (.ci/run).
#
#   bash scripts/test.sh [PYTEST ARGS...]      e.g.  bash scripts/test.sh -x -k circuits
#
# Environment:
#   FOUNDRY_SETUP_ARGS  extra arguments for setup.sh (e.g. "--no-apt")
#   FOUNDRY_SKIP_SETUP  1 = do not run setup.sh (the venv must already exist)
#   FOUNDRY_SLURM       1 = start a local single-node Slurm (../shared/tools/slurm-local.sh) and
#                       run the slurm-marked tests too. Without it they run only when a working
#                       `sbatch` is already on PATH, and are deselected otherwise.
#   FOUNDRY_VENV        as for setup.sh
#
# Exits non-zero when any step fails; "no tests collected" (pytest exit 5) is a failure too.
set -euo pipefail

say() { printf '[test] %s\n' "$*"; }
die() { printf '[test] ERROR: %s\n' "$*" >&2; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
venv=${FOUNDRY_VENV:-.venv}
case "$venv" in /*) ;; *) venv="$repo/$venv" ;; esac
start=$SECONDS

# ---- 1. install ---------------------------------------------------------------------------------
if [ "${FOUNDRY_SKIP_SETUP:-0}" = 1 ]; then
  say "setup skipped (FOUNDRY_SKIP_SETUP=1)"
else
  # shellcheck disable=SC2086  # FOUNDRY_SETUP_ARGS is a list of words on purpose
  bash scripts/setup.sh ${FOUNDRY_SETUP_ARGS:-}
fi
[ -x "$venv/bin/python" ] || die "no virtualenv at $venv: run scripts/setup.sh first"
# The venv's tools come first: ruff, pytest, the `foundry` console script.
export PATH="$venv/bin:$PATH"

# ---- 2. lint ------------------------------------------------------------------------------------
say "ruff check ."
t=$SECONDS
# The venv is excluded even when FOUNDRY_VENV puts it somewhere ruff would not skip by itself.
ruff check . --extend-exclude "${venv#"$repo"/}"
say "ruff ok ($((SECONDS - t)) s)"

# ---- 3. slurm (opt-in) ----------------------------------------------------------------------------
marker_args=()
slurm_tool="$repo/../shared/tools/slurm-local.sh"
if [ "${FOUNDRY_SLURM:-0}" = 1 ]; then
  [ -f "$slurm_tool" ] || die "FOUNDRY_SLURM=1 but $slurm_tool is missing (../shared must sit beside the repo)"
  say "starting a local Slurm ($slurm_tool)"
  bash "$slurm_tool" install
  bash "$slurm_tool" start
  # Stop only what slurm-local.sh started, whatever way this script ends.
  trap 'say "stopping the local Slurm"; bash "$slurm_tool" stop || true' EXIT
elif command -v sbatch >/dev/null 2>&1 && timeout 5 sinfo >/dev/null 2>&1; then
  say "sbatch found and Slurm answers: slurm tests included"
else
  say "no running Slurm: slurm-marked tests deselected (FOUNDRY_SLURM=1 starts a local one)"
  marker_args=(-m "not slurm")
fi

# ---- 4. tests -------------------------------------------------------------------------------------
# Our -m comes first so that a -m given on the command line overrides it (pytest keeps the last).
say "pytest ${marker_args[*]+"${marker_args[*]}"} $*"
t=$SECONDS
rc=0
python -m pytest ${marker_args[@]+"${marker_args[@]}"} "$@" || rc=$?
case "$rc" in
  0) say "pytest ok ($((SECONDS - t)) s); all steps passed in $((SECONDS - start)) s" ;;
  5) die "pytest collected no tests (exit 5): treated as a failure" ;;
  *) printf '[test] ERROR: pytest failed (exit %s)\n' "$rc" >&2; exit "$rc" ;;
esac
