#!/usr/bin/env python3
"""Host-side helpers for tests/vm/run.sh (standard library only).

  vmhelp.py config FILE                 -> shell assignments for the [camera] and [leds] of a board TOML
  vmhelp.py png2raw IN.png OUT.raw W H FMT  -> raw GREY/YUYV frame (+ OUT.raw.png, what the camera shows); prints "mean=<luma> fnv=<hex>"
  vmhelp.py synth OUT.raw W H FMT [LEVEL]   -> synthetic frame (bright field with dark blobs)
  vmhelp.py verdict-json JSONTEXT        -> prints the "verdict" of karyoscreen demo's JSON line
  vmhelp.py record-check CONSOLE.log FRAME.raw FMT EXPECT
                                        -> checks the record the VM dumped to its console; prints
                                           "TEST ok <name>" / "TEST FAIL <name>: why" lines
"""
import hashlib, json, re, shlex, struct, sys, tomllib, zlib

LEDS = ["ready", "busy", "normal", "abnormal", "indeterminate", "fault"]


def config(path):
    with open(path, "rb") as f:
        c = tomllib.load(f)
    cam = c["camera"]
    out = {
        "CAM_DEVICE": cam["device"], "CAM_FORMAT": cam["format"],
        "CAM_WIDTH": cam["width"], "CAM_HEIGHT": cam["height"],
        "GPIO_ABI": c["gpio"].get("abi", "v2"),
    }
    for led in LEDS:
        out[f"LED_{led}"] = c["leds"][led]["line"]
    for k, v in out.items():
        print(f"{k}={shlex.quote(str(v))}")


def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, plte = 8, b"", None
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if typ == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif typ == b"PLTE":
            plte = body
        elif typ == b"IDAT":
            idat += body
    if depth != 8 or interlace:
        raise SystemExit(f"png2raw: only 8-bit non-interlaced PNGs (got depth {depth}, interlace {interlace})")
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride = w * ch
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b = prev[i]
            c = prev[i - ch] if i >= ch else 0
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    luma = []
    for line in rows:
        if ctype == 0 or ctype == 4:
            luma.append(bytes(line[0::ch]))
        else:
            if ctype == 3:
                px = [(plte[3 * v], plte[3 * v + 1], plte[3 * v + 2]) for v in line]
            else:
                px = [(line[i], line[i + 1], line[i + 2]) for i in range(0, stride, ch)]
            luma.append(bytes(min(255, (299 * r + 587 * g + 114 * b_) // 1000) for r, g, b_ in px))
    return w, h, luma


def fit(w, h, luma, W, H):
    """Fit into W x H (the VM camera size) keeping the aspect ratio: centred, shrunk by
    area averaging only if it does not fit, the rest filled with the image's border level."""
    border = sorted(list(luma[0]) + list(luma[-1]) + [r[0] for r in luma] + [r[-1] for r in luma])
    bg = border[len(border) // 2]
    s = min(1.0, W / w, H / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    if (nw, nh) != (w, h):
        small = []
        for y in range(nh):
            y0, y1 = y * h // nh, max(y * h // nh + 1, (y + 1) * h // nh)
            row = bytearray(nw)
            for x in range(nw):
                x0, x1 = x * w // nw, max(x * w // nw + 1, (x + 1) * w // nw)
                tot = sum(sum(luma[yy][x0:x1]) for yy in range(y0, y1))
                row[x] = tot // ((y1 - y0) * (x1 - x0))
            small.append(bytes(row))
        luma = small
    ox, oy = (W - nw) // 2, (H - nh) // 2
    out = []
    for y in range(H):
        r = bytearray([bg]) * W
        if oy <= y < oy + nh:
            r[ox:ox + nw] = luma[y - oy]
        out.append(bytes(r))
    return out


def write_png(rows, path):
    """8-bit greyscale PNG (for looking at / re-analysing what the VM camera shows)."""
    h, w = len(rows), len(rows[0])
    raw = b"".join(b"\0" + r for r in rows)
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def write_raw(rows, out, fmt):
    if fmt == "GREY":
        buf = b"".join(rows)
    elif fmt == "YUYV":
        buf = b"".join(bytes(v for p in r for v in (p, 128)) for r in rows)
    else:
        raise SystemExit("format must be GREY or YUYV")
    open(out, "wb").write(buf)
    h = 2166136261
    for v in buf:
        h = ((h ^ v) * 16777619) & 0xFFFFFFFF
    mean = sum(sum(r) for r in rows) // (len(rows) * len(rows[0]))
    print(f"mean={mean} fnv={h:08x}")


def synth(out, W, H, fmt, level=200):
    rows = []
    for y in range(H):
        r = bytearray([level]) * W
        for cx, cy in ((W // 4, H // 3), (W // 2, H // 2), (3 * W // 4, 2 * H // 3)):
            if abs(y - cy) < H // 10:
                for x in range(cx - W // 30, cx + W // 30):
                    r[x] = 40
        rows.append(bytes(r))
    write_raw(rows, out, fmt)


# Every cell line of the record (src/integrity/record.rs) carries these.
RECORD_KEYS = ("kind", "seq", "time_unix_ms", "origin", "frame_sha256", "model", "model_sha256",
               "card_version", "thresholds", "count", "karyotype", "verdict", "reasons", "timings")


def record_check(log_path, frame_raw, fmt, expect):
    """The record as init.sh dumped it ("REC <line>" between "RECORD begin" and "RECORD end",
    after a "vm: record FILE: N lines, B bytes, sha256 H" line), against the console's other
    lines: the acknowledgements `recorded SEQ ORIGIN` the program printed (init.sh echoes its
    stdout as "sut: ..."). Prints one TEST line per check; returns the number that failed."""
    text = open(log_path, encoding="utf-8", errors="replace").read().split("\n")
    results = []
    def check(name, ok, why=""):
        ok = bool(ok)
        results.append(ok)
        print(f"TEST ok {name}" if ok else f"TEST FAIL {name}: {why}")

    summary = [l for l in text if l.startswith("vm: record ")]
    m = re.search(r": (\d+) lines, (\d+) bytes, sha256 ([0-9a-f]{64})$", summary[-1]) if summary else None
    try:
        body = text[text.index("RECORD begin") + 1:text.index("RECORD end")]
    except ValueError:
        body = None
    if not m or body is None:
        check("record-copied-out", False, summary[-1] if summary else "no record dump on the console")
        return 1
    lines = [l[4:] for l in body if l.startswith("REC ")]
    data = "".join(l + "\n" for l in lines).encode()
    # The dump crossed a serial console: its hash proves the copy is the file, so that a
    # failure below is the record's, not the transport's (a kernel message in the middle).
    check("record-copied-out", len(lines) == len(body) and hashlib.sha256(data).hexdigest() == m[3]
          and len(lines) == int(m[1]) and len(data) == int(m[2]),
          f"the copy ({len(lines)} lines, {len(data)} bytes, {len(body) - len(lines)} other console lines "
          f"among them) is not the VM's file ({m[1]} lines, {m[2]} bytes, sha256 {m[3][:16]}...)")

    records, bad = [], []
    for n, line in enumerate(lines, 1):
        try:
            r = json.loads(line)
        except ValueError as e:
            bad.append(f"line {n} is not JSON ({e})")
            continue
        if not isinstance(r, dict):
            bad.append(f"line {n} is not an object")
            continue
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing or r["kind"] != "cell":
            bad.append(f"line {n}: kind {r.get('kind')!r}, missing {missing}")
        records.append(r)
    check("record-parses", lines and not bad, "; ".join(bad[:3]) or "the record is empty")

    seqs = [r.get("seq") for r in records]
    check("record-seq-consecutive", bool(seqs) and seqs == list(range(1, len(seqs) + 1)),
          f"seq {seqs[:20]}{' ...' if len(seqs) > 20 else ''} (a fresh record counts 1, 2, 3 ...)")

    # What the program acknowledged (printed only after the line was synced) is in the record.
    acks = [l.split(" ", 3)[2:] for l in text if l.startswith("sut: recorded ")]
    by_seq = {r.get("seq"): r for r in records}
    lost = [f"{seq} {origin}" for seq, origin in acks if by_seq.get(int(seq), {}).get("origin") != origin]
    check("record-has-every-acknowledged", acks and not lost,
          f"acknowledged but not in the record: {lost[:5]}" if acks else "the program acknowledged no record")

    # Each line names the frame the camera delivered (the fed frame, byte for byte: the probe
    # checked that) by the sha256 of its 8-bit luma, and gives the expected verdict.
    raw = open(frame_raw, "rb").read()
    luma = raw if fmt == "GREY" else raw[0::2]
    want = hashlib.sha256(luma).hexdigest()
    other = [(r.get("seq"), r.get("frame_sha256"), r.get("verdict")) for r in records
             if r.get("frame_sha256") != want or r.get("verdict") != expect]
    check("record-names-fed-frame", records and not other,
          f"want frame_sha256 {want[:16]}... verdict {expect}; got {other[:3]}")
    models = {(r.get("model_sha256"), r.get("card_version")) for r in records}
    check("record-one-model", len(models) == 1 and all(re.fullmatch(r"[0-9a-f]{64}", str(m[0])) for m in models),
          f"model sha256 / card version per line: {sorted(map(str, models))[:3]}")
    return results.count(False)


def main(a):
    if a[0] == "config":
        config(a[1])
    elif a[0] == "png2raw":
        W, H = int(a[3]), int(a[4])
        w, h, luma = read_png(a[1])
        rows = fit(w, h, luma, W, H)
        write_raw(rows, a[2], a[5])
        write_png(rows, a[2] + ".png")
    elif a[0] == "synth":
        synth(a[1], int(a[2]), int(a[3]), a[4], int(a[5]) if len(a) > 5 else 200)
    elif a[0] == "verdict-json":
        for line in a[1].splitlines():
            line = line.strip()
            if line.startswith("{"):
                print(json.loads(line)["verdict"])
                return
        raise SystemExit("no JSON line with a verdict")
    elif a[0] == "record-check":
        record_check(a[1], a[2], a[3], a[4])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
