#!/usr/bin/env bash
# A short run of every cargo-fuzz target in fuzz/ (frame decoding + segmentation; board
# profile and model card parsing; the record reader), each from a seed corpus this script writes itself; fails
# when a target crashes (panic, overflow, sanitizer report, timeout or memory blow-up).
#   tests/fuzz.sh                 30 s per target
#   FUZZ_SECONDS=600 tests/fuzz.sh    a longer run
# A crash leaves its input under fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo fuzz passes nightly-only compiler flags; the one stable toolchain takes them with this.
export RUSTC_BOOTSTRAP=1

# Seeds: small frames of each format and depth (a few rods on a background, so segmentation
# finds objects), the shipped board profiles and the model card.
seeds=fuzz/seeds
rm -rf "$seeds"
mkdir -p "$seeds/frame" "$seeds/config" "$seeds/record"
cp boards/*.toml models/karyoscreen.card.json "$seeds/config/"
# Records: two whole lines, one with a torn tail, and a file that is not a record.
printf '{"kind":"cell","seq":1,"time_unix_ms":1}\n{"kind":"case","seq":2,"time_unix_ms":2}\n' >"$seeds/record/whole.jsonl"
printf '{"kind":"cell","seq":7,"time_unix_ms":1}\n{"kind":"ce' >"$seeds/record/torn.jsonl"
cp boards/generic.toml "$seeds/record/not-a-record.toml"
python3 - "$seeds/frame" <<'PY'
import struct, sys, zlib

out = sys.argv[1]

def pixels(w, h, dark_on_light=True):
    bg, ink = (225, 40) if dark_on_light else (15, 200)
    rows = []
    for y in range(h):
        row = []
        for x in range(w):
            rod = any(x0 <= x < x0 + 4 and y0 <= y < y0 + 18 for x0, y0 in ((6, 5), (20, 10), (34, 4)))
            row.append(ink if rod else bg)
        rows.append(row)
    return rows

def png(name, w, h, depth, color, rows, palette=None):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + bytes(r) for r in rows)
    body = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
    if palette:
        body += chunk(b"PLTE", palette)
    body += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    open(f"{out}/{name}", "wb").write(body)

w, h = 48, 32
gray = pixels(w, h)
png("gray8.png", w, h, 8, 0, gray)
png("light-on-dark.png", w, h, 8, 0, pixels(w, h, False))
png("gray16.png", w, h, 16, 0, [sum(([v, v] for v in r), []) for r in gray])
png("rgba8.png", w, h, 8, 6, [sum(([v, v, v, 255] for v in r), []) for r in gray])
png("gray-alpha16.png", w, h, 16, 4, [sum(([v, 0, 255, 255] for v in r), []) for r in gray])
png("palette.png", w, h, 8, 3, [[v // 128 for v in r] for r in gray], palette=bytes([40, 40, 40, 225, 225, 225]))
png("1x1.png", 1, 1, 8, 0, [[0]])

# BMP, 24-bit bottom-up.
stride = (3 * w + 3) // 4 * 4
data = b"".join(bytes(sum(([v, v, v] for v in r), [])) + b"\0" * (stride - 3 * w) for r in reversed(gray))
header = b"BM" + struct.pack("<IHHI", 54 + len(data), 0, 0, 54)
header += struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0)
open(f"{out}/gray.bmp", "wb").write(header + data)

# TIFF, 8-bit gray, one uncompressed strip.
data = b"".join(bytes(r) for r in gray)
entries = [(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
           (277, 3, 1), (278, 4, h), (279, 4, len(data))]
offset = 8 + 2 + 12 * len(entries) + 4
ifd = struct.pack("<H", len(entries))
for tag, kind, value in entries:
    value = offset if tag == 273 else value
    ifd += struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
open(f"{out}/gray.tif", "wb").write(b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + data)
PY

(cd fuzz && cargo fuzz build)
status=0
for target in $(cd fuzz && cargo fuzz list); do
    mkdir -p "fuzz/corpus/$target"
    case "$target" in frame) seed="$seeds/frame" ;; record) seed="$seeds/record" ;; *) seed="$seeds/config" ;; esac
    echo "=== fuzz $target for ${seconds}s"
    if (cd fuzz && cargo fuzz run "$target" "corpus/$target" "../$seed" -- \
            -max_total_time="$seconds" -max_len=65536 -timeout=20 -rss_limit_mb=2048 \
            -print_final_stats=1) >"fuzz/$target.log" 2>&1; then
        grep -E '^Done |^stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "fuzz/$target.log"
    else
        tail -n 40 "fuzz/$target.log" >&2
        echo "fuzz $target: CRASH (log fuzz/$target.log, input under fuzz/artifacts/$target/)" >&2
        status=1
    fi
done
exit "$status"
