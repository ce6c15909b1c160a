"""Chromosome areas relative to the median chromosome of their frame, per class, from the ADIR
frames' class maps: the bound under which the device's speck share (`SPECK` in
src/pipeline/segment/set_aside.rs) sets aside no real chromosome.

    python -m karyotrain.areas --frames ../shared/data/frames_adir_dapi --split train
"""
import argparse
import csv
import os

import numpy as np
from PIL import Image

from .data import LABELS
from .spreads import labelmap_class_instances


def relative_areas(labels):
    """A class map -> [(class 1-24, area / the frame's median component area)]."""
    found = labelmap_class_instances(labels)
    areas = np.array([mask.sum() for *_, mask in found], dtype=float)
    median = np.median(areas) if len(areas) else 1.0
    return [(c, a / median) for (c, *_), a in zip(found, areas)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", required=True, help="frames_adir_dapi folder (frames.csv, labelmaps/)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--shares", type=float, nargs="+", default=[0.2, 0.3])
    args = ap.parse_args(argv)
    with open(os.path.join(args.frames, "frames.csv")) as f:
        frames = [r for r in csv.DictReader(f) if r["split"] == args.split]
    per_class = {}
    for fr in frames:
        stem = os.path.splitext(os.path.basename(fr["image"]))[0]
        labels = np.asarray(Image.open(os.path.join(args.frames, "labelmaps", stem + ".png")))
        for c, share in relative_areas(labels):
            per_class.setdefault(c, []).append(share)
    every = np.concatenate([np.array(v) for v in per_class.values()])
    print(f"{len(frames)} frames, {len(every)} chromosomes (components of one class)")
    print("class      n   1st pct   median   " + "   ".join(f"< {s:g}" for s in args.shares))
    for c in sorted(per_class):
        v = np.array(per_class[c])
        below = "   ".join(f"{int((v < s).sum()):5d}" for s in args.shares)
        print(f"{LABELS[c - 1]:>5} {len(v):6d} {np.percentile(v, 1):9.2f} {np.median(v):8.2f}   {below}")
    print("  all " + f"{len(every):6d}" + " " * 21 + "   ".join(f"{int((every < s).sum()):5d}" for s in args.shares))


if __name__ == "__main__":
    main()
