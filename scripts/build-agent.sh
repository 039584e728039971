#!/usr/bin/env bash
# Build the session agent as a static binary that runs in any session image (it is mounted read-only
# into every container at /opt/burstflare/agent; see docs/agent.md).
#
#   scripts/build-agent.sh [extra cargo build arguments, e.g. --locked]
#
# Prints the binary's path, target/agent/x86_64-unknown-linux-gnu/release/burstflare-agent (the default
# of config `node.agent_path`), on stdout; cargo's progress goes to stderr. glibc with crt-static gives a
# static-pie binary (no musl target here). Its own target dir keeps these RUSTFLAGS from invalidating the
# main build cache. Idempotent: fast when nothing changed (cargo's fingerprints).
set -euo pipefail

case ${1-} in
  -h | --help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=target/agent
BIN=$TARGET_DIR/$TARGET/release/burstflare-agent

die() {
  echo "build-agent: error: $*" >&2
  exit 1
}

# RUSTFLAGS replaces .cargo/config.toml's target rustflags, so repeat the lld linker choice when lld is
# installed (static-pie links with it in a fraction of GNU ld's time).
rustflags='-C target-feature=+crt-static -C strip=debuginfo'
if command -v ld.lld >/dev/null 2>&1; then rustflags+=' -C link-arg=-fuse-ld=lld'; fi

RUSTFLAGS=$rustflags cargo build -p burstflare-agent --release --target "$TARGET" --target-dir "$TARGET_DIR" "$@" >&2

[[ -x $BIN ]] || die "cargo did not produce $BIN"

# Verify that the binary needs no dynamic loader and no shared library: it must run in any image.
if command -v file >/dev/null 2>&1; then
  kind=$(file -b -- "$BIN")
  [[ $kind == *"static-pie linked"* || $kind == *"statically linked"* ]] ||
    die "$BIN is not static: file says: $kind"
elif command -v ldd >/dev/null 2>&1; then
  # ldd exits 1 for a static binary ("not a dynamic executable"; "statically linked" for static-pie).
  kind=$(ldd -- "$BIN" 2>&1 || true)
  [[ $kind == *"not a dynamic executable"* || $kind == *"statically linked"* ]] ||
    die "$BIN is not static: ldd says: $kind"
elif command -v readelf >/dev/null 2>&1; then
  ! readelf -l -- "$BIN" | grep -q 'INTERP' || die "$BIN is not static: readelf shows a program interpreter"
else
  die "cannot verify that $BIN is static: none of file, ldd, readelf is installed"
fi

echo "$BIN"
