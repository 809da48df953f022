#!/usr/bin/env bash
# Re-record the *.jsonl files here from the real Lean 4.35.0 of scripts/lean-stub.sh:
#   source .venv/bin/activate && bash tests/data/lean/record.sh
# Each .jsonl is the verbatim stdout of `lean --json FILE.lean` run in a scratch directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lean=$(bash "$here/../../../scripts/lean-stub.sh")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
cp "$here/FoundryTestBase.lean" .
"$lean" --json -o FoundryTestBase.olean FoundryTestBase.lean
export LEAN_PATH=$tmp

rec() {  # rec NAME: FILE NAME.lean from stdin, its messages into NAME.jsonl
  cat >"$1.lean"
  "$lean" --json ${2:+-o "$2"} "$1.lean" >"$here/$1.jsonl" || true
}

rec errors <<'LEAN'
prelude
import FoundryTestBase
theorem foundry_goal : (MyFalse) := by
  exact MyTrue.intro
theorem other : (MyTrue) := by
  rfl
LEAN

rec sorry <<'LEAN'
prelude
import FoundryTestBase
theorem foundry_goal : (MyTrue) := by
  exact sorry
LEAN

rec print_axioms <<'LEAN'
prelude
import FoundryTestBase
theorem clean : MyTrue := by
  exact MyTrue.intro
theorem dirty : MyAnd MyFalse MyTrue := by
  exact MyAnd.intro cheat sorry
#print axioms clean
#print axioms dirty
LEAN

rec Probe Probe.olean <<LEAN
prelude
import FoundryTestBase
$(cat "$here/InitProbe.lean")
LEAN
rm -f "$here/Probe.jsonl"
rec initializer <<'LEAN'
prelude
import Probe
LEAN

rec unknown_module <<'LEAN'
prelude
import Mathlib.Tactic
LEAN
echo "recorded with: $("$lean" --version)"
