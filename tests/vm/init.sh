#!/bin/busybox sh
# /init of the test VM (see run.sh). Prints "TEST ok <name>" / "TEST FAIL <name>: why"
# for each check and "TEST done" at the end, then powers off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
. /env

ok() { echo "TEST ok $1"; }
fail() { echo "TEST FAIL $1: $2"; }
check() { local cn=$1; shift; if "$@"; then ok "$cn"; else fail "$cn" "$*"; fi; }
finish() { echo "TEST done"; sync; poweroff -f; sleep 5; echo o > /proc/sysrq-trigger; }
t() { cut -d' ' -f1 /proc/uptime; }
echo "vm: kernel $(uname -r) $(uname -m), up $(t)s"

# ---- modules
modfail=""
for m in /mod/*.ko; do
  case "$m" in
    *vivid*) insmod "$m" n_devs=1 node_types=0x101 num_inputs=1 input_types=0x3 num_outputs=1 \
                 output_types=0x1 ccs_cap_mode=4 ccs_out_mode=0 || modfail="$modfail $m" ;;
    *) insmod "$m" || modfail="$modfail $m" ;;
  esac
done
[ -z "$modfail" ] && ok modules || fail modules "insmod failed:$modfail"
mount -t configfs none /sys/kernel/config 2>/dev/null
mount -t tracefs none /sys/kernel/tracing 2>/dev/null

# ---- gpio-sim chip with the board's line names (28 lines, GPIO0..GPIO27 as on a Pi)
G=/sys/kernel/config/gpio-sim/karyo
if mkdir $G && mkdir $G/bank0; then
  echo 28 > $G/bank0/num_lines
  n=0
  while [ $n -lt 28 ]; do mkdir $G/bank0/line$n; echo "GPIO$n" > $G/bank0/line$n/name; n=$((n + 1)); done
  for l in $LEDS; do   # lines named in the config but not GPIOn get their own slot
    eval name=\$LED_$l
    case "$name" in GPIO[0-9]|GPIO[0-9][0-9]) ;; *) echo "vm: LED $l line $name not on the sim chip" ;; esac
  done
  echo 1 > $G/live
fi
DEV=$(cat $G/dev_name 2>/dev/null); CHIP=$(cat $G/bank0/chip_name 2>/dev/null)
SIMDIR=/sys/devices/platform/$DEV/$CHIP
check gpio-sim-live test -d "$SIMDIR" -a -c "/dev/$CHIP"
echo "vm: gpio-sim is $CHIP ($DEV); chips: $(ls /dev | grep gpiochip | tr '\n' ' ')"

offset_of() { n=${1#GPIO}; echo "$n"; }   # sim lines are named GPIO<offset>
val() { cat "$SIMDIR/sim_gpio$(offset_of "$1")/value" 2>/dev/null || echo "?"; }
states() { s=""; for l in $LEDS; do eval name=\$LED_$l; s="$s $l=$(val "$name")"; done; echo "${s# }"; }

# ---- camera: feeder holds the frame on vivid's output; a probe captures one frame
check video-nodes test -c /dev/video0 -a -c /dev/video1
feeder /dev/video1 /dev/video0 /frame.raw "$CAM_WIDTH" "$CAM_HEIGHT" "$CAM_FORMAT" > /tmp/feeder.out 2>&1 &
FEEDER=$!
i=0; while [ $i -lt 100 ] && ! grep -q streaming /tmp/feeder.out; do sleep 0.1; i=$((i + 1)); done
cat /tmp/feeder.out
check feeder grep -q streaming /tmp/feeder.out
got=$(standin capture /dev/video0 "$CAM_WIDTH" "$CAM_HEIGHT" "$CAM_FORMAT" 2>&1)
echo "vm: probe $got (fed fnv=$FFNV)"
check camera-frame-equals-fed test "${got#*fnv=}" != "$got" -a "$(echo "${got#*fnv=}" | cut -d' ' -f1)" = "$FFNV"

# ---- trace every value the kernel drives on a GPIO line
TR=/sys/kernel/tracing
if [ -d $TR/events/gpio/gpio_value ]; then
  echo 0 > $TR/tracing_on; echo > $TR/trace; echo 1 > $TR/events/gpio/gpio_value/enable; echo 1 > $TR/tracing_on
fi
BASE=""   # global GPIO number of the sim chip's line 0, as the trace events name lines
for c in /sys/class/gpio/gpiochip*; do
  [ "$(basename "$(readlink -f "$c/device")")" = "$DEV" ] && BASE=$(cat "$c/base")
done
echo "vm: $CHIP global base ${BASE:-unknown}"

# ---- system under test
# The record (karyoscreen only; the stand-in keeps none), where the board's service keeps it.
# RECORD_BUG=elsewhere records to another file than the one checked (the checks must fail).
ARGS=""
if [ -n "$RECORD" ]; then
  mkdir -p "$(dirname "$RECORD")"; rm -f "$RECORD"*
  case "$RECORD_BUG" in elsewhere) ARGS="--record $RECORD.elsewhere" ;; *) ARGS="--record $RECORD" ;; esac
fi
lines() { if [ -f "$RECORD" ]; then wc -l < "$RECORD"; else echo 0; fi; }
acked() { grep '^recorded ' /tmp/sut.out | tail -1 | cut -d' ' -f2; }
echo "vm: starting sut at $(t)s: sut run --config /cfg.toml $ARGS"
STANDIN_BUG=$STANDIN_BUG sut run --config /cfg.toml $ARGS > /tmp/sut.out 2> /tmp/sut.err &
SUT=$!
i=0; lim=$((VERDICT_TIMEOUT * 5)); early=""
while [ $i -lt $lim ] && ! grep -q '^verdict ' /tmp/sut.out && kill -0 $SUT 2>/dev/null; do
  # The record's size at the first acknowledgement, to compare with a later one.
  if [ -n "$RECORD" ] && [ -z "$early" ] && grep -q '^recorded ' /tmp/sut.out; then
    early=$(lines); early_ack=$(acked); early_t=$(t)
    echo "vm: at ${early_t}s the first record was acknowledged (seq $early_ack); the record has $early line(s)"
  fi
  sleep 0.2; i=$((i + 1))
done
first=$(grep '^verdict ' /tmp/sut.out | head -1)
echo "vm: at $(t)s sut said: ${first:-nothing}"
check "verdict-$EXPECT" test "$(echo "$first" | cut -d' ' -f1-2)" = "verdict $EXPECT"

# LEDs: ready and the verdict's LED high, the other verdict LEDs and fault low (busy not judged).
want() { case "$1" in ready|"$EXPECT") echo 1 ;; busy) echo x ;; *) echo 0 ;; esac; }
led_ok() { for l in $LEDS; do eval name=\$LED_$l; w=$(want $l); [ "$w" = x ] || [ "$(val "$name")" = "$w" ] || return 1; done; }
i=0; while [ $i -lt 25 ] && ! led_ok; do sleep 0.2; i=$((i + 1)); done
echo "vm: LEDs while running: $(states)"
check "leds-show-$EXPECT" led_ok

# The record grows while the loop runs: more lines later than at the first acknowledgement
# (the hold needs a second analysed frame before a verdict, so it usually has grown already;
# otherwise wait for the next frame), and every acknowledged record is in it by then.
if [ -n "$RECORD" ]; then
  early=${early:-0}; i=0; lim=$((RECORD_GROW_TIMEOUT * 5))
  while [ $i -lt $lim ] && [ "$(lines)" -le "$early" ] && kill -0 $SUT 2>/dev/null; do sleep 0.2; i=$((i + 1)); done
  later=$(lines); later_ack=$(acked)
  echo "vm: at $(t)s the record has $later line(s), last acknowledged seq ${later_ack:-none}"
  check record-acknowledged-first test "$early" -ge 1 -a "$early" -ge "${early_ack:-1}"
  check record-grows-while-running test "$later" -gt "$early" -a "$later" -ge "${later_ack:-1}"
fi

# SIGTERM: exits 0, every LED driven low before release. The run loop stops between two crops:
# one crop's inference, a few seconds under QEMU's instruction emulation (TCG; 3 s measured on
# x86_64), where finishing the whole frame took minutes; 60 s allowed.
kill -TERM $SUT 2>/dev/null
i=0; while [ $i -lt 300 ] && kill -0 $SUT 2>/dev/null; do sleep 0.2; i=$((i + 1)); done
echo "vm: sut stopped $((i / 5)) s after SIGTERM"
if kill -0 $SUT 2>/dev/null; then fail sigterm-exit "still running 60 s after SIGTERM"; kill -KILL $SUT; wait $SUT
else wait $SUT; rc=$?; check sigterm-exit-0 test "$rc" = 0; fi
sed 's/^/sut: /' /tmp/sut.out; tail -20 /tmp/sut.err | sed 's/^/sut: stderr: /' 
echo "vm: LEDs after exit: $(states)"
allzero=1; for l in $LEDS; do eval name=\$LED_$l; [ "$(val "$name")" = 0 ] || allzero=0; done
check leds-low-after-exit test $allzero = 1
if [ -n "$BASE" ] && [ -f $TR/trace ]; then
  echo 0 > $TR/tracing_on
  grep gpio_value $TR/trace > /tmp/gv
  echo "vm: $(wc -l < /tmp/gv) gpio_value events"
  drove_off=1
  for l in $LEDS; do
    eval name=\$LED_$l; g=$((BASE + $(offset_of "$name")))
    last=$(grep -E "[^0-9]$g set " /tmp/gv | tail -1)
    echo "vm:   $l ($name, gpio $g): last set: ${last##*: }"
    case "$last" in *" set 0"|"") ;; *) drove_off=0 ;; esac   # never driven = never lit
  done
  check leds-driven-off-on-sigterm test $drove_off = 1
else
  fail leds-driven-off-on-sigterm "no gpio trace (base=${BASE:-?})"
fi
# The whole record, for the host to check (vmhelp.py record-check): every line parses, seq
# rises by one, every acknowledged record is there, each names the fed frame. RECORD_BUG=gap
# drops the first line (a record lost: the host's checks must fail).
if [ -n "$RECORD" ]; then
  if [ -f "$RECORD" ]; then
    [ "$RECORD_BUG" = gap ] && sed -i 1d "$RECORD"
    echo "vm: record $RECORD: $(wc -l < "$RECORD") lines, $(wc -c < "$RECORD") bytes, sha256 $(sha256sum "$RECORD" | cut -d' ' -f1)"
    echo "RECORD begin"; sed 's/^/REC /' "$RECORD"; echo "RECORD end"
  else
    echo "vm: record $RECORD: missing"
  fi
fi
kill $FEEDER 2>/dev/null
finish
