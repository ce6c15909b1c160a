#!/usr/bin/env bash
# Idempotent host setup for cross builds and the QEMU hardware-in-the-loop test.
# Installs Debian packages (cross linkers, qemu-user, qemu-system, busybox, kernel source,
# headless Chromium and chromedriver for the review station's browser test)
# and the Rust targets. Safe to run repeatedly: does nothing when all is present.
set -euo pipefail

PKGS=(
  gcc make bc flex bison libelf-dev xz-utils cpio busybox-static file
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
  qemu-user qemu-system-x86 qemu-system-arm
  linux-source-6.1
  pkg-config dpkg-dev
  chromium chromium-driver
)
TARGETS=(aarch64-unknown-linux-musl aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf x86_64-unknown-linux-musl)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup-host: apt packages present"
fi

if command -v rustup >/dev/null; then
  installed=$(rustup target list --installed)
  need=()
  for t in "${TARGETS[@]}"; do grep -qx "$t" <<<"$installed" || need+=("$t"); done
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup-host: rustup target add ${need[*]}"
    rustup target add "${need[@]}"
  else
    echo "setup-host: rust targets present"
  fi
fi
