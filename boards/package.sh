#!/usr/bin/env bash
# Build a Debian package of karyoscreen for a board: boards/package.sh arm64|armhf
#   arm64: aarch64-unknown-linux-musl (static; Raspberry Pi 4/5 64-bit, Jetson Nano, Orin Nano)
#   armhf: armv7-unknown-linux-gnueabihf with +crt-static (32-bit Raspberry Pi OS)
# Output: target/karyoscreen_<version>-1_<arch>.deb (or in $CARGO_TARGET_DIR)
# Needs tests/vm/setup-host.sh (cross linkers) and cargo-deb (installed here if missing).
set -euo pipefail
ARCH=${1:-}
case "$ARCH" in
  arm64) TRIPLE=aarch64-unknown-linux-musl ;;
  armhf) TRIPLE=armv7-unknown-linux-gnueabihf ;;
  *) echo "usage: $0 arm64|armhf" >&2; exit 2 ;;
esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
"$ROOT/tests/vm/setup-host.sh" >&2
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked

TD=${CARGO_TARGET_DIR:-$ROOT/target}
# The same release build the tests use (a changed profile would rebuild tract from scratch).
# DEB_NO_BUILD=1 packages the binary already in $TD/$TRIPLE/release/.
[ -n "${DEB_NO_BUILD:-}" ] || cargo build --release --locked --target "$TRIPLE"

MANIFEST=$ROOT/Cargo.toml
if ! grep -q '^\[package\.metadata\.deb\]' Cargo.toml; then
  # Stage a copy of the manifest with boards/deb.toml appended; the sources are symlinked.
  STAGE=$TD/deb-manifest
  rm -rf "$STAGE"; mkdir -p "$STAGE"
  cp Cargo.toml Cargo.lock "$STAGE/"
  grep -v '^#' boards/deb.toml >> "$STAGE/Cargo.toml"
  for f in src boards models README.md build.rs; do [ -e "$f" ] && ln -s "$ROOT/$f" "$STAGE/$f"; done
  MANIFEST=$STAGE/Cargo.toml
fi
# --no-strip: the release profile strips (strip = "symbols"); cargo-deb's own strip would need
# the cross binutils. The check below fails the package if a binary with symbols got in.
CARGO_TARGET_DIR=$TD cargo deb --manifest-path "$MANIFEST" --no-build --no-strip \
  --target "$TRIPLE" --output "$TD/"
DEB=$(ls -t "$TD"/karyoscreen_*_"$ARCH".deb | head -1)

# The packaged binary must be stripped: `file` says "stripped" (not "not stripped"), and it
# has no symbol table.
CHECK=$(mktemp -d); trap 'rm -rf "$CHECK"' EXIT
dpkg-deb -x "$DEB" "$CHECK"
BIN=$CHECK/usr/bin/karyoscreen
[ -f "$BIN" ] || { echo "package.sh: $DEB has no usr/bin/karyoscreen" >&2; exit 1; }
KIND=$(file -b "$BIN")
case "$KIND" in
  *"not stripped"*|*"with debug_info"*) STRIPPED=no ;;
  *stripped*) STRIPPED=yes ;;
  *) STRIPPED=no ;;
esac
if [ "$STRIPPED" = yes ] && LC_ALL=C readelf -S -W "$BIN" | grep -qE '\.(symtab|debug_info) '; then STRIPPED=no; fi
if [ "$STRIPPED" != yes ]; then
  echo "package.sh: $DEB ships an unstripped binary ($KIND); the release profile must keep strip = \"symbols\"" >&2
  exit 1
fi
echo "package.sh: usr/bin/karyoscreen is stripped, $(stat -c %s "$BIN") bytes: $KIND"
ls -l "$DEB"
