"""Give an imported crop set (`karyoscreen import-karyograms`, one cell per image) the split and
group of its source's frames.csv, so that copies of one karyogram stay in one split.

    python -m karyotrain.splits --labels runs/sets/akshan/labels.csv \
        --frames ../shared/data/karyograms_akshan/frames.csv
"""
import argparse
import csv
import os
from collections import Counter


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", required=True, help="the imported set's labels.csv (rewritten in place)")
    ap.add_argument("--frames", required=True, help="the source's frames.csv (image, group_id, split)")
    args = ap.parse_args(argv)
    with open(args.frames) as f:
        by_stem = {os.path.splitext(os.path.basename(r["image"]))[0]: r for r in csv.DictReader(f)}
    with open(args.labels) as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    unknown = sorted({r["cell_id"] for r in rows if r["cell_id"] not in by_stem})
    if unknown:
        raise SystemExit(f"{args.labels}: {len(unknown)} cells have no row in {args.frames} (the first: {unknown[0]})")
    for r in rows:
        source = by_stem[r["cell_id"]]
        r["split"], r["group_id"] = source["split"], source["group_id"]
    tmp = args.labels + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, args.labels)
    cells = Counter(split for split, _ in {(r["split"], r["cell_id"]) for r in rows})
    print(f"{args.labels}: {len(rows)} crops, cells per split " + ", ".join(f"{s} {n}" for s, n in sorted(cells.items())))


if __name__ == "__main__":
    main()
