"""Labelled chromosome crops of a third look (DAPI, fluorescent, faint banding) from the ADIR
frames' class maps: a crop set in the layout `eval` and the trainer read (labels.csv + images).

    python -m karyotrain.dapi_crops --frames ../shared/data/frames_adir_dapi --out runs/sets/adir_dapi

Every class whose number of copies the frame's karyotype gives is cut (whole-chromosome gains
and losses counted; classes in a rearrangement left out, since the map colours a derivative's
pieces by their origin): a class whose components in a frame do not number its copies (touching
homologs merged into one, or a chromosome broken into two) gives no crop from that frame.
Each crop is the chromosome's bounding box plus a margin, with every pixel outside its mask set
to the frame's background level, as the device's segmenter cuts a crop; one cell per frame, the
frame's split.
"""
import argparse
import csv
import os
import re
from collections import Counter

import numpy as np
from PIL import Image

from .data import LABELS, load_gray
from .spreads import labelmap_class_instances

MARGIN = 2


def expected_copies(karyotype):
    """An ISCN string -> copies per class 1-24, or None when its sex chromosomes cannot be read.
    Whole-chromosome gains and losses (+21, -13) count; a class named in a rearrangement
    (t, ins, der, r, inv, del, dup) maps to None: its pieces carry other classes' pixels."""
    m = re.match(r"\s*\d+\s*,\s*([XY]+)\b", karyotype, re.I)
    if not m:
        return None
    sex = m.group(1).upper()
    copies = {c: 2 for c in range(1, 23)}
    copies[23], copies[24] = sex.count("X"), sex.count("Y")
    index = lambda name: 23 if name == "X" else 24 if name == "Y" else int(name)
    for sign, name in re.findall(r"([+-])\s*(\d+|X|Y)\b(?!\s*[(;])", karyotype[m.end():], re.I):
        c = index(name.upper())
        if 1 <= c <= 24:
            copies[c] += 1 if sign == "+" else -1
    for inside in re.findall(r"(?:t|ins|der|r|inv|del|dup)\(([^)]*)\)", karyotype, re.I):
        for name in re.findall(r"\d+|X|Y", inside, re.I):
            if 1 <= index(name.upper()) <= 24:
                copies[index(name.upper())] = None
    return copies


def frame_crops(gray, labels, copies):
    """-> [(class 1-24, crop uint8)] for the classes whose components number their copies."""
    background = np.uint8(np.median(gray[labels == 0]))
    found = labelmap_class_instances(labels)
    per_class = Counter(c for c, *_ in found)
    crops = []
    for c, y, x, mask in found:
        if copies[c] is None or per_class[c] != copies[c]:
            continue
        h, w = mask.shape
        y0, x0 = max(0, y - MARGIN), max(0, x - MARGIN)
        y1, x1 = min(gray.shape[0], y + h + MARGIN), min(gray.shape[1], x + w + MARGIN)
        inside = np.zeros((y1 - y0, x1 - x0), bool)
        inside[y - y0:y - y0 + h, x - x0:x - x0 + w] = mask
        crops.append((c, np.where(inside, gray[y0:y1, x0:x1], background).astype(np.uint8)))
    return crops


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", required=True, help="frames_adir_dapi folder (frames.csv, images/, labelmaps/)")
    ap.add_argument("--out", required=True, help="new crop set folder")
    args = ap.parse_args(argv)
    with open(os.path.join(args.frames, "frames.csv")) as f:
        frames = list(csv.DictReader(f))
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    rows, skipped = [], 0
    for fr in frames:
        copies = expected_copies(fr["karyotype"])
        if copies is None:
            skipped += 1
            continue
        stem = os.path.splitext(os.path.basename(fr["image"]))[0]
        gray = load_gray(os.path.join(args.frames, fr["image"]))
        labels = np.asarray(Image.open(os.path.join(args.frames, "labelmaps", stem + ".png")))
        for k, (c, crop) in enumerate(frame_crops(gray, labels, copies)):
            path = f"images/{stem}_{k:02d}.png"
            Image.fromarray(crop).save(os.path.join(args.out, path))
            rows.append(dict(path=path, label_idx=c - 1, class_name=LABELS[c - 1], group_id=fr["group_id"],
                             cell_id=stem, split=fr["split"], width=crop.shape[1], height=crop.shape[0],
                             mode="L", source_path=fr["image"]))
    with open(os.path.join(args.out, "labels.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    by_split = Counter(r["split"] for r in rows)
    print(f"{len(rows)} crops from {len(frames) - skipped} frames ({skipped} with unreadable karyotypes skipped): "
          + ", ".join(f"{s} {n}" for s, n in sorted(by_split.items())))


if __name__ == "__main__":
    main()
