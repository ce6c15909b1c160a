"""Read labelled sets (labels.csv + images), preprocess every crop once, cache as .npz."""
import csv
import os
from multiprocessing import Pool

import numpy as np
from PIL import Image

from . import preprocess as P

CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runs", "cache")
LABELS = [str(i) for i in range(1, 23)] + ["X", "Y"]
SPLITS = ("train", "val", "test")


def load_gray(path):
    im = Image.open(path)
    if im.mode not in ("L", "P", "1"):
        im = im.convert("RGB") if im.mode in ("RGBA", "LA") else im  # drop alpha first
    return np.asarray(im.convert("L"), dtype=np.uint8)


def _work(args):
    path, polarity = args
    g = load_gray(path)
    try:
        r = P.preprocess_full(g, polarity)
    except P.RejectedCrop:
        return None
    return r["image"], r["length"], r["width"], r["area"], P.detect_polarity(g) == polarity




def load_set(set_dir, workers=2):
    """-> dict of arrays for one set: image [n,1,S,S] f32, size [n,2], label, cell, split, ..."""
    set_dir = os.path.abspath(set_dir)
    name = os.path.basename(set_dir.rstrip("/"))
    fn = os.path.join(CACHE, f"{name}-{P.spec_hash()}.npz")
    if os.path.exists(fn):
        return dict(np.load(fn, allow_pickle=False))
    with open(os.path.join(set_dir, "labels.csv")) as f:
        rows = list(csv.DictReader(f))
    # one polarity per set (the device decides once per frame): the per-crop rule, majority vote
    sample = rows[:: max(1, len(rows) // 200)]
    votes = [P.detect_polarity(load_gray(os.path.join(set_dir, r["path"]))) for r in sample]
    polarity = max(set(votes), key=votes.count)
    jobs = [(os.path.join(set_dir, r["path"]), polarity) for r in rows]
    with Pool(workers) as pool:
        res = pool.map(_work, jobs, chunksize=64)
    keep = [i for i, r in enumerate(res) if r is not None]
    rows = [rows[i] for i in keep]
    res = [res[i] for i in keep]
    d = dict(
        image=np.stack([r[0] for r in res]).astype(np.float32),
        length=np.array([r[1] for r in res]), width=np.array([r[2] for r in res]),
        area=np.array([r[3] for r in res], dtype=np.float64),
        polarity_agrees=np.array([r[4] for r in res]),
        label=np.array([int(r["label_idx"]) for r in rows], dtype=np.int64),
        cell=np.array([r["cell_id"] for r in rows]), split=np.array([r["split"] for r in rows]),
        path=np.array([r["path"] for r in rows]), polarity=np.array(polarity),
        n_rejected=np.array(len(jobs) - len(keep)), name=np.array(name))
    d["size"] = np.zeros((len(rows), 2), np.float32)
    for c in np.unique(d["cell"]):                  # size features per cell over all its crops
        i = np.nonzero(d["cell"] == c)[0]
        d["size"][i] = P.size_features(d["length"][i], d["area"][i])
    os.makedirs(CACHE, exist_ok=True)
    np.savez(fn, **d)
    return d


def subset(d, idx):
    return {k: (v[idx] if getattr(v, "ndim", 0) and len(v) == len(d["label"]) else v)
            for k, v in d.items()}


def limit_cells(d, k, seed=0):
    """Keep k cells per split (smoke tests)."""
    rng = np.random.default_rng(seed)
    keep = []
    for s in SPLITS:
        cells = np.unique(d["cell"][d["split"] == s])
        keep += list(rng.choice(cells, min(k, len(cells)), replace=False))
    return subset(d, np.isin(d["cell"], keep))
