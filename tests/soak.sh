#!/usr/bin/env bash
# Soak: N frames (default 10000) through the real run loop (the built-in demo cells, round and
# round, console LEDs, every cell recorded with rotation), sampling the process's resident
# memory as it goes. Prints frames, time, and RSS at start, middle, end and peak: flat memory
# means no leak. A measurement, not a pass/fail test: run by hand, numbers go in the README.
#   tests/soak.sh [FRAMES] [BINARY]
set -euo pipefail
frames=${1:-10000}
bin=${2:-target/release/karyoscreen}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
"$bin" run --board generic --source demo --console-leds --max-frames "$frames" \
    --record "$work/record.jsonl" --record-max-bytes 4000000 --record-keep 3 >"$work/out.txt" 2>"$work/err.txt" &
pid=$!
: >"$work/rss.txt"
while kill -0 "$pid" 2>/dev/null; do
    done_frames=$(grep -c '^recorded ' "$work/out.txt" || true)
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$rss" ] && echo "$done_frames $rss" >>"$work/rss.txt"
    sleep 5
done
wait "$pid" || { echo "soak: karyoscreen failed:"; cat "$work/err.txt"; exit 1; }
end=$(date +%s)
recorded=$(grep -c '^recorded ' "$work/out.txt" || true)
echo "frames recorded: $recorded of $frames in $((end - start)) s"
awk 'NR == 1 {first = $0} {rows[NR] = $0; if ($2 > peak) peak = $2}
     END {print "RSS (frames done, KiB): first " first "; middle " rows[int(NR / 2) + 1] "; last " rows[NR] "; peak " peak " KiB"}' \
    "$work/rss.txt"
