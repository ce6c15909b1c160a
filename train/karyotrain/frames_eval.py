"""Runs the device binary on composed frames (karyotrain.compose) and scores it against truth.json.

    python -m karyotrain.frames_eval --frames train/runs/frames/pki3_gband \
        [--binary target/debug/karyoscreen] [--model PATH.onnx]

Prints JSON: frames, count_exact and karyotype_exact (fractions), the analyse time (mean and
median of the sum of the binary's `timings`, and per stage), segmentation diagnostics from the
truth boxes (chromosomes split in two, merged, missed; debris counted as objects), per-object
classification errors on frames whose segmentation was one-to-one, the highest structure score
(1 - P(normal)) any object reached (`max_abnormal_score`: on val frames of normal cells, the
floor for the card's `structure_threshold`), and every mismatch.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRAME_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def overlap(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    return max(w, 0) * max(h, 0)


def segmentation_report(truth_objects, detected):
    """Match detected boxes to the truth boxes they overlap. -> dict of findings."""
    tboxes = [o["bbox"] for o in truth_objects]
    hits = [[] for _ in tboxes]        # detected indices per truth object
    debris, merged = [], []
    for d, obj in enumerate(detected):
        b = obj["bbox"]
        box = (b["x"], b["y"], b["width"], b["height"])
        over = [t for t, tb in enumerate(tboxes) if overlap(box, tb) > 0]
        if not over:
            debris.append(list(box))
        if len(over) > 1:
            merged.append([truth_objects[t]["label"] for t in over])
        for t in over:
            hits[t].append(d)
    split = [truth_objects[t]["label"] for t, h in enumerate(hits) if len(h) > 1]
    missed = [truth_objects[t]["label"] for t, h in enumerate(hits) if not h]
    confusions = []
    one_to_one = not (debris or merged or split or missed)
    if one_to_one:
        for t, h in enumerate(hits):
            got = detected[h[0]]["label"]
            if got != truth_objects[t]["label"]:
                confusions.append((truth_objects[t]["label"], got))
    return dict(split=split, merged=merged, missed=missed, debris=debris,
                one_to_one=one_to_one, confusions=confusions)


def summary(values):
    return dict(mean=round(statistics.fmean(values), 2), median=round(statistics.median(values), 2)) \
        if values else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", required=True, help="folder with frames and truth.json")
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "debug", "karyoscreen"))
    ap.add_argument("--model", default=None, help="passed to the binary as --model")
    args = ap.parse_args(argv)
    with open(os.path.join(args.frames, "truth.json")) as f:
        truth = json.load(f)
    frames = sorted(n for n in os.listdir(args.frames) if n.lower().endswith(FRAME_EXT))
    results, mismatches, failures, top_scores = [], [], [], []
    stage = {k: [] for k in ("segment_ms", "preprocess_ms", "infer_ms", "analyse_ms", "total_ms")}
    seg = Counter()
    confusions = Counter()
    examples = {k: [] for k in ("split", "merged", "missed", "debris")}
    for name in frames:
        cell = os.path.splitext(name)[0]
        if cell not in truth:
            continue
        cmd = [args.binary, "analyze", os.path.join(args.frames, name), "--json"] + \
              (["--model", args.model] if args.model else [])
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            failures.append(dict(cell=cell, error=run.stderr.strip()))
            continue
        r = json.loads(run.stdout)
        t = truth[cell]
        # 1 - P(normal) of the frame's most abnormal-looking object
        top_scores.append(max([o["structure_confidence"] if o["structure"] != "normal"
                               else 1.0 - o["structure_confidence"] for o in r["objects"]], default=0.0))
        total = sum(r["timings"].values())
        for k, v in r["timings"].items():
            stage[k].append(v)
        stage["total_ms"].append(total)
        s = segmentation_report(t.get("objects", []), r["objects"]) if "objects" in t else None
        if s:
            for k in examples:
                if s[k]:
                    seg[k] += len(s[k])
                    seg[f"frames_with_{k}"] += 1
                    examples[k].append(dict(cell=cell, what=s[k][:6]))
            confusions.update(f"{a}->{b}" for a, b in s["confusions"])
        ok_count = r["count"] == t["count"]
        ok_k = r["karyotype"] == t["karyotype"]
        results.append((ok_count, ok_k))
        if not (ok_count and ok_k):
            m = dict(cell=cell, truth=t["karyotype"], detected=r["karyotype"], verdict=r["verdict"],
                     debris_components=r.get("debris"))
            if s:
                m.update({k: s[k] for k in ("split", "merged", "missed") if s[k]})
                if s["debris"]:
                    m["debris_objects"] = len(s["debris"])
                if s["confusions"]:
                    m["confusions"] = [f"{a}->{b}" for a, b in s["confusions"]]
            mismatches.append(m)
        print(f"{cell}: truth {t['karyotype']:<12} detected {r['karyotype']:<16} {total:7.0f} ms",
              file=sys.stderr)
    n = len(results)
    report = dict(
        frames_dir=args.frames, binary=args.binary, frames=n, failures=failures,
        count_exact=round(sum(c for c, _ in results) / n, 4) if n else None,
        karyotype_exact=round(sum(k for _, k in results) / n, 4) if n else None,
        analyse_time_ms={k: summary(v) for k, v in stage.items()},
        # on frames of normal cells: the highest structure score any object reached; a card
        # threshold above it flags no object of these frames
        max_abnormal_score=round(max(top_scores), 6) if top_scores else None,
        segmentation=dict(seg, examples={k: v[:8] for k, v in examples.items() if v}),
        classification_errors_on_one_to_one_frames=dict(confusions.most_common(20)),
        mismatches=mismatches)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
