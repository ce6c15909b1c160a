#!/usr/bin/env bash
# Hardware-in-the-loop test on a real Linux kernel, no board needed.
#
#   tests/vm/run.sh x86_64|aarch64
#
# Boots Debian's stock 6.1 kernel under QEMU (TCG) with a busybox initramfs. Inside:
# configfs + vivid (virtual camera with a video output looped back into the capture
# node) + gpio-sim (built here out of tree from linux-source-6.1), a gpio-sim chip whose
# lines carry the names of tests/vm/<arch>.toml, a feeder holding a still frame on
# vivid's output, then the system under test `<sut> run --config /cfg.toml`.
# Checks, from outside the program: the verdict it prints, the LED lines' values in
# sysfs (sim_gpioN/value) while it runs, its exit status after SIGTERM, and, from the
# kernel's gpio_value trace events, that it drove every LED line low before exiting
# (gpio-sim reverts a released line to its pull, so sysfs alone could not tell).
# karyoscreen runs with `--record /var/lib/karyoscreen/record.jsonl` as the board's service
# does: the record must grow while the loop runs, and after the VM the host checks the copy
# the VM printed (vmhelp.py record-check: JSON lines, seq 1, 2, 3 ..., every acknowledged
# record present, each naming the fed frame and the expected verdict).
#
# Environment:
#   SUT=karyoscreen|standin   system under test (default below). karyoscreen builds
#                             `cargo build --release --target <arch>-unknown-linux-musl`
#                             and takes the frame from `karyoscreen demo --write-frame $FRAME`.
#   FRAME=N                   demo frame index (karyoscreen mode; default 2: 47,XY,+21 abnormal)
#   FRAME_PNG=file.png EXPECT=verdict   feed this image instead and expect this verdict
#   STANDIN_BUG=wrong-led|stay-on|no-ready   make the stand-in misbehave (checks must fail)
#   RECORD_BUG=elsewhere|gap  karyoscreen records to another file than the one checked /
#                             the record's first line is dropped before it is checked (must fail)
#   RECORD_GROW_TIMEOUT=s     how long the record may take to grow after the first verdict (240)
#   VERDICT_TIMEOUT=s (default 360), VM_TIMEOUT=s (default 1200), VM_SMP (2), VM_MEM (1024)
#   VM_REFRESH=1              re-resolve the kernel version from apt (default: cached)
#   VM_CONFIG=file.toml       board profile given to the SUT (default tests/vm/<arch>.toml)
#   VM_FILES="src:/dst ..."   extra host files for the VM (e.g. a model the config names)
# Caches under target/vm/<arch>/. Last line: "N passed, M failed"; exit 1 if M > 0.
set -euo pipefail

# Any failure before the VM's checks still ends in the summary line.
trap 'rc=$?; echo "run.sh: setup failed (exit $rc) near line $LINENO" >&2; echo "0 passed, 1 failed"; exit 1' ERR

SUT=${SUT:-karyoscreen}   # switch to the real firmware: SUT=karyoscreen (or change this default)

ARCH=${1:-}
case "$ARCH" in
  x86_64)  DARCH=amd64; KARCH=x86;   CROSS="";                     CC=gcc;
           QEMU=(qemu-system-x86_64 -accel tcg -cpu max); CONSOLE=ttyS0 ;;
  aarch64) DARCH=arm64; KARCH=arm64; CROSS=aarch64-linux-gnu-;     CC=aarch64-linux-gnu-gcc;
           QEMU=(qemu-system-aarch64 -M virt -cpu cortex-a72 -accel tcg); CONSOLE=ttyAMA0 ;;
  *) echo "usage: $0 x86_64|aarch64" >&2; exit 2 ;;
esac

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TOP=${VM_CACHE:-$ROOT/target/vm}
CACHE=$TOP/$ARCH
mkdir -p "$CACHE"
CONFIG=${VM_CONFIG:-$HERE/$ARCH.toml}
VERDICT_TIMEOUT=${VERDICT_TIMEOUT:-360}
VM_TIMEOUT=${VM_TIMEOUT:-1200}

T0=$(date +%s.%N); TS=$T0; TIMINGS=""
stage() {  # stage NAME: close the previous stage's timer
  local now; now=$(date +%s.%N)
  local d; d=$(awk -v a="$TS" -v b="$now" 'BEGIN{printf "%.1f", b-a}')
  TIMINGS+=$(printf '  %-12s %6ss' "$1" "$d")$'\n'
  echo "== $1: ${d}s" >&2
  TS=$now
}
log() { echo "run.sh[$ARCH]: $*" >&2; }

# ---------------------------------------------------------------- host packages
"$HERE/setup-host.sh" >&2
stage host-setup

# ---------------------------------------------------------------- kernel packages
# amd64 comes from the host's apt; arm64 through a private apt configuration (no
# dpkg --add-architecture, nothing installed into /).
APTDIR=$TOP/apt-$DARCH
apt_arch() {
  if [ "$DARCH" = amd64 ]; then "$@"; return; fi
  local cmd=$1; shift
  "$cmd" -o Dir::State="$APTDIR/state" -o Dir::State::Lists="$APTDIR/lists" \
    -o Dir::State::status="$APTDIR/status" -o Dir::Cache="$APTDIR/cache" \
    -o Dir::Etc::SourceList="$APTDIR/sources.list" -o Dir::Etc::SourceParts="$APTDIR/sources.list.d" \
    -o Dir::Etc::Preferences="$APTDIR/preferences" -o Dir::Etc::PreferencesParts="$APTDIR/preferences.d" \
    -o APT::Architecture="$DARCH" -o APT::Architectures::="$DARCH" -o Debug::NoLocking=1 "$@"
}
apt_arch_setup() {
  [ "$DARCH" = amd64 ] && return
  [ -f "$APTDIR/updated" ] && return
  mkdir -p "$APTDIR"/{state,lists/partial,cache/archives/partial,sources.list.d,preferences.d}
  : > "$APTDIR/status"; : > "$APTDIR/preferences"
  [ -f /etc/apt/sources.list ] && grep -v '^\s*#' /etc/apt/sources.list | grep -i debian > "$APTDIR/sources.list" || : > "$APTDIR/sources.list"
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && grep -qi 'debian' "$f" && cp "$f" "$APTDIR/sources.list.d/"
  done
  apt_arch apt-get update -qq >&2
  touch "$APTDIR/updated"
}

KVER_FILE=$CACHE/kernel.ver
if [ ! -s "$KVER_FILE" ] || [ -n "${VM_REFRESH:-}" ]; then
  [ "$DARCH" = amd64 ] && { apt-cache policy linux-image-amd64 | grep -q 'Candidate: [0-9]' || apt-get update -qq; }
  apt_arch_setup
  KPKG=$(apt_arch apt-cache depends "linux-image-$DARCH" | awk '/Depends: linux-image-/{print $2; exit}')
  [ -n "$KPKG" ] || { log "cannot resolve linux-image-$DARCH"; exit 1; }
  KPKGVER=$(apt_arch apt-cache show "$KPKG" | awk '/^Version:/{print $2; exit}')
  echo "${KPKG#linux-image-} $KPKGVER" > "$KVER_FILE.new"
  if ! cmp -s "$KVER_FILE.new" "$KVER_FILE"; then rm -rf "$CACHE/root" "$CACHE/kernel.ok"; fi
  mv "$KVER_FILE.new" "$KVER_FILE"
fi
read -r KREL KPKGVER < "$KVER_FILE"          # e.g. 6.1.0-56-amd64 6.1.192-2
KABI=${KREL%-"$DARCH"}                         # 6.1.0-56
KROOT=$CACHE/root
if [ ! -f "$CACHE/kernel.ok" ]; then
  apt_arch_setup
  mkdir -p "$CACHE/debs"
  if ! ( cd "$CACHE/debs" && rm -f ./*.deb &&
    apt_arch apt-get -o APT::Sandbox::User=root download -qq "linux-image-$KREL" "linux-headers-$KREL" "linux-headers-$KABI-common" \
      $([ "$DARCH" = arm64 ] && echo busybox-static) >&2 &&
    apt-get -o APT::Sandbox::User=root download -qq "linux-kbuild-6.1=$KPKGVER" >&2 ); then   # kbuild runs on the host: amd64
    # Stale package lists name a kernel the mirror no longer has: refresh them once and start over.
    [ -z "${VM_RETRIED:-}" ] || { log "kernel download failed"; exit 1; }
    log "download failed; refreshing package lists"
    apt-get update -qq; rm -f "$APTDIR/updated" "$KVER_FILE"
    VM_RETRIED=1 exec "$0" "$@"
  fi
  rm -rf "$KROOT"; mkdir -p "$KROOT"
  for d in "$CACHE"/debs/*.deb; do dpkg-deb -x "$d" "$KROOT"; done
  # The headers' Makefiles name /usr/src/... and /usr/lib/linux-kbuild-6.1 absolutely: point them here.
  grep -rlI -e '/usr/src/linux-headers' -e '/usr/lib/linux-kbuild' "$KROOT/usr/src" 2>/dev/null |
    xargs -r sed -i -e "s|\([^/a-zA-Z_.-]\)/usr/src/linux-headers|\1$KROOT/usr/src/linux-headers|g" \
                    -e "s|^/usr/src/linux-headers|$KROOT/usr/src/linux-headers|" \
                    -e "s|\([^/a-zA-Z_.-]\)/usr/lib/linux-kbuild|\1$KROOT/usr/lib/linux-kbuild|g"
  find "$KROOT/usr/src" -type l | while read -r l; do
    t=$(readlink "$l"); case "$t" in /usr/*) ln -sfn "$KROOT$t" "$l" ;; esac
  done
  touch "$CACHE/kernel.ok"
fi
VMLINUZ=$KROOT/boot/vmlinuz-$KREL
MODDIR=$KROOT/lib/modules/$KREL
stage kernel

# ---------------------------------------------------------------- gpio-sim, out of tree
SRC=$TOP/src/gpio-sim
if [ ! -f "$SRC/irq_sim.c" ]; then
  mkdir -p "$TOP/src"
  tar -xJf /usr/src/linux-source-6.1.tar.xz -C "$TOP/src" --strip-components=1 \
    linux-source-6.1/drivers/gpio/gpio-sim.c linux-source-6.1/drivers/gpio/gpiolib.h \
    linux-source-6.1/kernel/irq/irq_sim.c
  mkdir -p "$SRC.tmp"
  cp "$TOP/src/drivers/gpio/gpio-sim.c" "$TOP/src/drivers/gpio/gpiolib.h" "$TOP/src/kernel/irq/irq_sim.c" "$SRC.tmp/"
  # irq_to_desc() is not exported to modules; generic_handle_irq() is and ends in the same handler.
  sed -i 's/handle_simple_irq(irq_to_desc(irqnum));/generic_handle_irq(irqnum);/' "$SRC.tmp/irq_sim.c"
  grep -q 'generic_handle_irq(irqnum)' "$SRC.tmp/irq_sim.c" || { log "irq_sim.c patch did not apply"; exit 1; }
  printf 'obj-m := gpiosim.o\ngpiosim-y := gpio-sim.o irq_sim.o\n' > "$SRC.tmp/Kbuild"
  mv "$SRC.tmp" "$SRC"
fi
KO=$CACHE/gpiosim.ko
if [ ! -f "$KO" ] || [ "$SRC/irq_sim.c" -nt "$KO" ] || ! cmp -s "$KVER_FILE" "$KO.for"; then
  rm -rf "$CACHE/gpio-sim-build"; cp -r "$SRC" "$CACHE/gpio-sim-build"
  make -s -C "$KROOT/usr/src/linux-headers-$KREL" M="$CACHE/gpio-sim-build" \
    ARCH=$KARCH CROSS_COMPILE=$CROSS -j2 modules >&2
  cp "$CACHE/gpio-sim-build/gpiosim.ko" "$KO"
  cp "$KVER_FILE" "$KO.for"   # the kernel it was built for
fi
stage gpio-sim

# ---------------------------------------------------------------- helper programs (static C)
mkdir -p "$CACHE/bin"
for p in feeder/feeder standin; do
  n=$(basename "$p")
  if [ ! -x "$CACHE/bin/$n" ] || [ "$HERE/$p.c" -nt "$CACHE/bin/$n" ]; then
    $CC -static -O2 -Wall -o "$CACHE/bin/$n" "$HERE/$p.c"
  fi
done
stage helpers

# ---------------------------------------------------------------- system under test and frame
eval "$(python3 "$HERE/vmhelp.py" config "$CONFIG")"
FRAMEDIR=$CACHE/frame; mkdir -p "$FRAMEDIR"
case "$SUT" in
  karyoscreen)
    ( cd "$ROOT" && cargo build --release --target "$ARCH-unknown-linux-musl" >&2 )
    SUTBIN=$ROOT/target/$ARCH-unknown-linux-musl/release/karyoscreen
    [ "$ARCH" = "$(uname -m)" ] && RUNNER=() || RUNNER=(qemu-"$ARCH")
    if [ -z "${FRAME_PNG:-}" ]; then
      FRAME_PNG=$FRAMEDIR/demo.png
      DEMO_OUT=$("${RUNNER[@]}" "$SUTBIN" demo --write-frame "${FRAME:-2}" --out "$FRAME_PNG")
      log "demo frame ${FRAME:-2}: $DEMO_OUT"
      EXPECT=${EXPECT:-$(python3 "$HERE/vmhelp.py" verdict-json "$DEMO_OUT")}
    fi ;;
  standin)
    SUTBIN=$CACHE/bin/standin ;;
  *) log "SUT must be karyoscreen or standin"; exit 2 ;;
esac
if [ -n "${FRAME_PNG:-}" ]; then
  FINFO=$(python3 "$HERE/vmhelp.py" png2raw "$FRAME_PNG" "$FRAMEDIR/frame.raw" "$CAM_WIDTH" "$CAM_HEIGHT" "$CAM_FORMAT")
else
  FINFO=$(python3 "$HERE/vmhelp.py" synth "$FRAMEDIR/frame.raw" "$CAM_WIDTH" "$CAM_HEIGHT" "$CAM_FORMAT")
fi
FMEAN=$(sed -n 's/.*mean=\([0-9]*\).*/\1/p' <<<"$FINFO"); FFNV=$(sed -n 's/.*fnv=\([0-9a-f]*\).*/\1/p' <<<"$FINFO")
# The stand-in's rule (mean luma >= 128 -> abnormal) gives the expected verdict when no demo JSON does.
[ "$SUT" = standin ] && EXPECT=${EXPECT:-$([ "$FMEAN" -ge 128 ] && echo abnormal || echo normal)}
[ -n "${EXPECT:-}" ] || { log "no expected verdict (set EXPECT=)"; exit 2; }
log "SUT=$SUT frame mean=$FMEAN fnv=$FFNV expect verdict $EXPECT"
stage sut-frame

# ---------------------------------------------------------------- initramfs
IRD=$CACHE/initramfs; rm -rf "$IRD"; mkdir -p "$IRD"/{bin,dev,proc,sys,tmp,mod}
if [ "$DARCH" = amd64 ]; then cp /bin/busybox "$IRD/bin/busybox"; else cp "$KROOT/bin/busybox" "$IRD/bin/busybox"; fi
cp "$CACHE/bin/feeder" "$CACHE/bin/standin" "$IRD/bin/"
cp "$SUTBIN" "$IRD/bin/sut"
cp "$CONFIG" "$IRD/cfg.toml"
cp "$FRAMEDIR/frame.raw" "$IRD/frame.raw"
for pair in ${VM_FILES:-}; do
  mkdir -p "$IRD/$(dirname "${pair#*:}")"; cp "$ROOT/${pair%%:*}" "$IRD/${pair#*:}" 2>/dev/null || cp "${pair%%:*}" "$IRD/${pair#*:}"
done
# configfs and vivid with their dependencies, in load order (from modules.dep).
MODLIST=$(python3 - "$MODDIR" configfs vivid <<'EOF'
# No modules.dep in the package (depmod runs at install): read each module's
# "depends=" from its .modinfo and list the files in load order.
import lzma, os, sys
moddir, wanted = sys.argv[1], sys.argv[2:]
paths = {}
for d, _, fs in os.walk(os.path.join(moddir, "kernel")):
    for f in fs:
        if ".ko" in f:
            paths[f.split(".ko")[0].replace("-", "_")] = os.path.relpath(os.path.join(d, f), moddir)
def depends(path):
    data = open(os.path.join(moddir, path), "rb").read()
    if path.endswith(".xz"):
        data = lzma.decompress(data)
    i = data.find(b"\0depends=")
    if i < 0:
        return []
    v = data[i + 9:data.index(b"\0", i + 1)].decode()
    return [x.replace("-", "_") for x in v.split(",") if x]
order = []
def visit(name):
    if name not in paths or paths[name] in order:
        return
    for dep in depends(paths[name]):
        visit(dep)
    order.append(paths[name])
for w in wanted:
    visit(w)
print("\n".join(order))
EOF
)
i=0; LOADS=""
while read -r m; do
  [ -n "$m" ] || continue
  i=$((i + 1)); dst=$(printf '%02d' $i)-$(basename "${m%%.ko*}").ko
  case "$m" in
    *.ko.xz) xz -dc "$MODDIR/$m" > "$IRD/mod/$dst" ;;
    *.ko.zst) zstd -qdc "$MODDIR/$m" > "$IRD/mod/$dst" ;;
    *) cp "$MODDIR/$m" "$IRD/mod/$dst" ;;
  esac
done <<<"$MODLIST"
cp "$KO" "$IRD/mod/99-gpiosim.ko"

cat > "$IRD/env" <<EOF
EXPECT=$EXPECT
FFNV=$FFNV
VERDICT_TIMEOUT=$VERDICT_TIMEOUT
STANDIN_BUG=${STANDIN_BUG:-}
RECORD=$([ "$SUT" = karyoscreen ] && echo /var/lib/karyoscreen/record.jsonl)
RECORD_BUG=${RECORD_BUG:-}
RECORD_GROW_TIMEOUT=${RECORD_GROW_TIMEOUT:-240}
CAM_FORMAT=$CAM_FORMAT
CAM_WIDTH=$CAM_WIDTH
CAM_HEIGHT=$CAM_HEIGHT
LEDS="ready busy normal abnormal indeterminate fault"
LED_ready=$LED_ready
LED_busy=$LED_busy
LED_normal=$LED_normal
LED_abnormal=$LED_abnormal
LED_indeterminate=$LED_indeterminate
LED_fault=$LED_fault
EOF
cp "$HERE/init.sh" "$IRD/init"; chmod +x "$IRD/init"
( cd "$IRD" && find . | LC_ALL=C sort | cpio -o -H newc --quiet ) > "$CACHE/initramfs.cpio"
stage initramfs

# ---------------------------------------------------------------- boot and test
LOG=$CACHE/console.log
trap - ERR
set +e
timeout --foreground "$VM_TIMEOUT" "${QEMU[@]}" -smp "${VM_SMP:-2}" -m "${VM_MEM:-1024}" \
  -kernel "$VMLINUZ" -initrd "$CACHE/initramfs.cpio" \
  -append "console=$CONSOLE panic=-1 loglevel=4 quiet" \
  -display none -serial stdio -monitor none -no-reboot </dev/null 2>&1 | tr -d '\r' | tee "$LOG" | grep --line-buffered -E '^(TEST|vm:|verdict|sut:|standin|feeder|\[ *[0-9.]+\] .*(Oops|BUG|panic|Call trace))' >&2
QRC=${PIPESTATUS[0]}
set -e
stage vm

PASS=$(grep -c '^TEST ok ' "$LOG" || true)
FAIL=$(grep -c '^TEST FAIL ' "$LOG" || true)
if [ "$SUT" = karyoscreen ]; then   # the record the VM printed, checked here
  HOSTCHECKS=$(python3 "$HERE/vmhelp.py" record-check "$LOG" "$FRAMEDIR/frame.raw" "$CAM_FORMAT" "$EXPECT" 2>&1 ||
               echo "TEST FAIL record-check: vmhelp.py failed")
  echo "$HOSTCHECKS" | sed 's/^/host: /' >&2
  PASS=$((PASS + $(grep -c '^TEST ok ' <<<"$HOSTCHECKS" || true)))
  FAIL=$((FAIL + $(grep -c '^TEST FAIL ' <<<"$HOSTCHECKS" || true)))
fi
if ! grep -q '^TEST done' "$LOG"; then
  FAIL=$((FAIL + 1)); log "FAIL: the VM did not finish its checks (qemu rc=$QRC; see $LOG)"
fi
[ "$PASS" -gt 0 ] || { FAIL=$((FAIL + 1)); log "FAIL: no check passed"; }
printf 'stage timings (%s, SUT=%s):\n%s  %-12s %6ss\n' "$ARCH" "$SUT" "$TIMINGS" total \
  "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')" >&2
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
