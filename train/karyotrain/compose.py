"""Metaphase frames composed from real labelled crops, for end-to-end checks of the device.

One frame per `cell_id` of the chosen split: every crop of that cell, cut to its chromosome,
rotated to a random angle (whole: rotated with expand, the corners filled with background),
placed so that no two boxes touch, on a canvas of the set's polarity background (white for
G-band, black for Q-band, at the level of the crops' own border medians), with mild noise.

    python -m karyotrain.compose --data ../shared/data/pki3_gband --split test \
        --out train/runs/frames/pki3_gband

Writes `<cell_id>.png` per cell and `truth.json`:
    {cell_id: {"count": n, "karyotype": "46,XY", "objects": [{"label": "1", "bbox": [x, y, w, h]}]}}
and, so that `karyoscreen eval-frames OUT` measures them like the real `frames_*` sets,
`frames.csv` (image, ann, group_id, split, count, karyotype, band; split = the split composed
from) and `ann/<cell_id>.json` ({"image", "width", "height", "band", "count", "karyotype",
"instances": [{"bbox": [x, y, w, h], "label": "1"}]}; boxes only, so eval-frames scores
instances by box IoU).
The karyotype string is built as src/analyse.rs builds it: count, X/Y count, then every autosome
with a copy number other than two as +N / -N (repeated), then structural changes with their arm
(`del(5)(q)`, `t(4;11)(q;q)`), in ISCN order.

`--structural F`: in a fraction F of the frames one crop (two for a reciprocal translocation) is
replaced by a SYNTHETIC structural event made from it (karyotrain.structural), and the truth says so.

The frames are derived from the data set and must not be redistributed: they are written under
the gitignored train/runs/ (or anywhere outside the repository), never elsewhere in it.
"""
import argparse
import csv
import json
import os
from collections import defaultdict

import numpy as np
from PIL import Image
from scipy import ndimage

from .data import LABELS, load_gray
from .preprocess import border_median

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNS = os.path.join(REPO, "train", "runs")

GAP = 8            # pixels kept free between any two chromosome boxes
MARGIN = 16        # pixels kept free at the frame's edge
NOISE_SIGMA = 2.0  # gray levels
FOREGROUND = 10    # ink above the crop's own background that counts as chromosome


ABBREVIATION = dict(deletion="del", duplication="dup", inversion="inv", translocation="t")


def iscn_order(label):
    return {"X": 0, "Y": 1}.get(label, 2 + int(label) if label.isdigit() else 99)


def karyotype_of(labels, flags=()):
    """ISCN-style string for a list of chromosome labels ('1'..'22', 'X', 'Y') and structural
    flags [(structure, [(label, arm), ...])] (two pairs for a translocation), as analyse.rs."""
    copies = {l: 0 for l in LABELS}
    for l in labels:
        copies[l] += 1
    sex = "X" * copies["X"] + "Y" * copies["Y"]
    changes = []
    for l in LABELS[:22]:
        n = copies[l]
        changes += [(iscn_order(l), 0, ("+" if n > 2 else "-") + l)] * abs(n - 2)
    for structure, where in flags:
        where = sorted(where, key=lambda w: iscn_order(w[0]))
        text = f"{ABBREVIATION[structure]}({';'.join(l for l, _ in where)})({';'.join(a for _, a in where)})"
        changes.append((iscn_order(where[0][0]), 1, text))
    return ",".join([str(len(labels)), sex or "?"] + [t for *_, t in sorted(changes)])


def check_out_dir(out):
    """Refuse to write derived frames inside the repository except under train/runs/."""
    out = os.path.realpath(out)
    repo, runs = os.path.realpath(REPO), os.path.realpath(RUNS)
    inside = os.path.commonpath([out, repo]) == repo
    under_runs = os.path.commonpath([out, runs]) == runs
    if inside and not under_runs:
        raise SystemExit(f"compose: {out}: frames from the data set may only be written under {runs} "
                         "(gitignored) or outside the repository")


def ink_of(gray, dark_on_light):
    """The crop as ink above its own background (chromosome bright, background 0), cut to the
    chromosome (foreground mask dilated by 2 px), or None when nothing is there."""
    bg = int(border_median(gray))
    g = gray.astype(np.int16)
    ink = np.clip(bg - g if dark_on_light else g - bg, 0, 255).astype(np.uint8)
    mask = ink > FOREGROUND
    if not mask.any():
        return None, bg
    # keep the largest component with everything near it (a chromosome can fall apart at the
    # threshold; specks far from it are crop debris)
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n > 1:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        big = labels == (1 + int(np.argmax(sizes)))
        near = ndimage.binary_dilation(big, iterations=6)
        keep = np.isin(labels, np.unique(labels[near & mask]))
        mask = keep
    mask = ndimage.binary_dilation(mask, iterations=2)
    ink = np.where(mask, ink, 0).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    return ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1], bg


def compose_cell(crops, dark_on_light, rng):
    """crops: [(label, gray u8 array)] -> (frame u8, background level, [(label, bbox)])."""
    pieces, levels = [], []
    for label, gray in crops:
        ink, bg = ink_of(gray, dark_on_light)
        levels.append(bg)
        if ink is None:
            continue
        angle = float(rng.uniform(0.0, 360.0))
        rotated = Image.fromarray(ink).rotate(angle, resample=Image.BILINEAR, expand=True, fillcolor=0)
        r = np.asarray(rotated)
        ys, xs = np.nonzero(r > 0)
        pieces.append((label, r[ys.min():ys.max() + 1, xs.min():xs.max() + 1]))
    background = int(np.median(levels)) if levels else (230 if dark_on_light else 20)
    background = max(background, 180) if dark_on_light else min(background, 60)

    # canvas: about five times the pieces' box area, square, grown until every piece fits
    area = sum((p.shape[0] + GAP) * (p.shape[1] + GAP) for _, p in pieces)
    side = int(np.sqrt(5.0 * area)) + 2 * MARGIN
    side = max(side, max(max(p.shape) for _, p in pieces) + 2 * MARGIN + 1)
    order = sorted(range(len(pieces)), key=lambda i: -pieces[i][1].size)  # big first
    for _ in range(20):
        boxes = [None] * len(pieces)
        placed = []
        ok = True
        for i in order:
            h, w = pieces[i][1].shape
            for _ in range(3000):
                x = int(rng.integers(MARGIN, side - MARGIN - w + 1))
                y = int(rng.integers(MARGIN, side - MARGIN - h + 1))
                if all(x + w + GAP <= px or px + pw + GAP <= x or y + h + GAP <= py or py + ph + GAP <= y
                       for px, py, pw, ph in placed):
                    placed.append((x, y, w, h))
                    boxes[i] = (x, y, w, h)
                    break
            else:
                ok = False
                break
        if ok:
            break
        side = int(side * 1.1)
    else:
        raise RuntimeError("no room for every chromosome")

    ink = np.zeros((side, side), np.float64)
    for (label, p), (x, y, w, h) in zip(pieces, boxes):
        ink[y:y + h, x:x + w] = np.maximum(ink[y:y + h, x:x + w], p)
    noise = rng.normal(0.0, NOISE_SIGMA, ink.shape)
    frame = (background - ink if dark_on_light else background + ink) + noise
    frame = np.clip(np.round(frame), 0, 255).astype(np.uint8)
    objects = [dict(label=label, bbox=list(box)) for (label, _), box in zip(pieces, boxes)]
    return frame, background, objects


def structural_events(set_dir, split, seed):
    """{cell_id: (structure, {crop path: (edited u8 image, arm)})}: one SYNTHETIC event
    (karyotrain.structural) per cell of `split` (two crops for a translocation)."""
    from . import structural as St
    from .data import load_set
    from .model import STRUCTURE_LABELS
    d = load_set(set_dir)
    s = St.synthesize(d, set_dir, split, 1, 0, seed + 100, keep_raw=True, cache=False)
    out = {}
    for k in np.nonzero(s["structure"] > 0)[0]:
        entry = out.setdefault(str(s["cell"][k]), (STRUCTURE_LABELS[s["structure"][k]], {}))
        entry[1][str(d["path"][s["src"][k]])] = (s["raw"][k], St.ARMS[s["arm"][k]])
    return out


def write_frames_layout(out, truth, split, band, data, groups=None):
    """frames.csv + ann/<cell>.json beside the frames, laid out like the real frames_* sets."""
    os.makedirs(os.path.join(out, "ann"), exist_ok=True)
    with open(os.path.join(out, "frames.csv"), "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["image", "ann", "group_id", "split", "count", "karyotype", "band"])
        for cell, t in truth.items():
            image, ann = f"{cell}.png", f"ann/{cell}.json"
            table.writerow([image, ann, (groups or {}).get(cell, cell), split, t["count"], t["karyotype"], band])
            width, height = t["size"]
            with open(os.path.join(out, ann), "w") as a:
                json.dump(dict(image=image, width=width, height=height, band=band, count=t["count"],
                               karyotype=t["karyotype"],
                               instances=[dict(bbox=o["bbox"], label=o["label"]) for o in t["objects"]],
                               source=dict(composed_from=os.path.basename(os.path.normpath(data)), split=split),
                               **({"synthetic_structural": True} if t.get("synthetic_structural") else {})),
                          a)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a set: DIR with labels.csv and images/")
    ap.add_argument("--split", default="test")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="only the first N cells")
    ap.add_argument("--structural", type=float, default=0.0,
                    help="fraction of frames with one SYNTHETIC structural event")
    args = ap.parse_args(argv)
    check_out_dir(args.out)
    with open(os.path.join(args.data, "labels.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == args.split]
    if not rows:
        raise SystemExit(f"compose: {args.data}: no rows in split {args.split!r}")
    cells = defaultdict(list)
    for r in rows:
        cells[r["cell_id"]].append(r)
    os.makedirs(args.out, exist_ok=True)
    # one polarity per set: majority of the crops' own border medians
    sample = rows[:: max(1, len(rows) // 100)]
    votes = [int(border_median(load_gray(os.path.join(args.data, r["path"])))) >= 128 for r in sample]
    dark_on_light = sum(votes) * 2 >= len(votes)
    truth = {}
    ids = sorted(cells)[: args.limit] if args.limit else sorted(cells)
    events = structural_events(args.data, args.split, args.seed) if args.structural else {}
    for n, cell in enumerate(ids):
        rng = np.random.default_rng([args.seed, n])
        crops = [(r["class_name"], load_gray(os.path.join(args.data, r["path"]))) for r in cells[cell]]
        flags = []
        # (no draw without --structural: the plain frames stay the ones earlier runs measured)
        if args.structural and rng.random() < args.structural and events.get(cell):
            structure, replaced = events[cell]
            where = []
            for path, (image, arm) in replaced.items():
                k = next(i for i, r in enumerate(cells[cell]) if r["path"] == path)
                crops[k] = (crops[k][0], image)
                where.append((crops[k][0], arm))
            flags = [(structure, where)]
        frame, background, objects = compose_cell(crops, dark_on_light, rng)
        Image.fromarray(frame).save(os.path.join(args.out, f"{cell}.png"))
        labels = [o["label"] for o in objects]
        truth[cell] = dict(count=len(labels), karyotype=karyotype_of(labels, flags),
                           size=list(frame.shape[::-1]), background=background, objects=objects,
                           **(dict(synthetic_structural=True) if flags else {}))
    with open(os.path.join(args.out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    write_frames_layout(args.out, truth, args.split, "G" if dark_on_light else "Q", args.data,
                        {cell: cells[cell][0].get("group_id", cell) for cell in ids})
    print(json.dumps(dict(out=args.out, frames=len(truth), polarity="dark_on_light" if dark_on_light
                          else "light_on_dark", split=args.split)))


if __name__ == "__main__":
    main()
