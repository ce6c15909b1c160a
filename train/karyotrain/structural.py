"""Synthetic structural abnormalities (SYNTHETIC: no public set has such labels).

Made from real normal crops at native scale, before preprocessing, along the chromosome's long
axis: the crop is straightened along its principal axis (the same frame as preprocessing step 8:
axis `a` with `a.y >= 0`, so the top end of the crop stays the start -- in both sets the crops are
karyogram crops with the p arm on top), then rows are edited:

| subtype | head class | edit |
|---|---|---|
| terminal_deletion | deletion | drop a distal 15-40 % from p-ter or q-ter (within that arm) |
| interstitial_deletion | deletion | remove an interior 10-30 % segment within one arm |
| duplication | duplication | repeat an interior 10-30 % segment in tandem, within one arm |
| paracentric_inversion | inversion | reverse a 15-35 % segment within one arm |
| pericentric_inversion | inversion | reverse a segment spanning the centromere (asymmetric: it moves) |
| translocation | translocation | two crops of one cell swap distal segments (reciprocal, same arm); each derivative keeps its centromere |

Each synthetic crop records `structure` (head class), `structure_subtype`, `chromosome`, `arm`
(p or q: where the first breakpoint, the one nearest p-ter, lies relative to the centromere) and
`position` (that breakpoint as a fraction of the original length from p-ter). The edited strip
goes through the unchanged `preprocess_full`; its size features are taken against its cell's
median with the edited crop(s) in place of the originals.

Centromere positions: the `acen` bands of the GRCh38 ideogram (shared/data/ideogram).
"""
import csv
import hashlib
import os
from multiprocessing import Pool

import numpy as np

from . import preprocess as P
from .data import CACHE, LABELS, load_gray
from .model import STRUCTURE_LABELS

SUBTYPES = ["terminal_deletion", "interstitial_deletion", "duplication", "paracentric_inversion",
            "pericentric_inversion", "translocation"]
SUBTYPE_CLASS = dict(terminal_deletion="deletion", interstitial_deletion="deletion",
                     duplication="duplication", paracentric_inversion="inversion",
                     pericentric_inversion="inversion", translocation="translocation")
ARMS = ["p", "q"]
MIN_LENGTH = 16          # crops shorter than this (native px along the axis) are not edited
MIN_ROWS = 3             # an edited segment spans at least this many native rows
PAD = 3                  # background rows/cols around the edited strip

IDEOGRAM = os.environ.get("KARYOSCREEN_IDEOGRAM", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "ideogram",
    "cytoBand_hg38.tsv"))
# fallback: the same numbers, computed from that file (end of the p11.1 acen band / length)
_CEN_FALLBACK = {
    "1": 0.4957, "2": 0.3877, "3": 0.4584, "4": 0.2629, "5": 0.2688, "6": 0.3501, "7": 0.3772, "8": 0.3114, "9": 0.3107, "10": 0.2975, "11": 0.3953, "12": 0.2664, "13": 0.1548, "14": 0.1607, "15": 0.1863, "16": 0.4074, "17": 0.3015, "18": 0.2302, "19": 0.4470, "20": 0.4360, "21": 0.2569, "22": 0.2952, "X": 0.3909, "Y": 0.1817}


def centromere_fractions(path=IDEOGRAM):
    """{label: centromere position as a fraction of the length from p-ter} from the acen bands."""
    if not os.path.exists(path):
        return dict(_CEN_FALLBACK)
    ends, cen = {}, {}
    with open(path) as f:
        for line in f:
            c, s, e, band, stain = line.rstrip("\n").split("\t")[:5]
            lab = c.replace("chr", "")
            ends[lab] = max(ends.get(lab, 0), int(e))
            if stain == "acen" and band.startswith("p"):
                cen[lab] = int(e)                 # p11.1 acen ends where q11 acen starts
    return {lab: cen[lab] / ends[lab] for lab in LABELS}


CEN = centromere_fractions()


# ---------------------------------------------------------------- straightening and strips
def straighten(g, polarity):
    """-> (body [L, W] float64 gray rows along the long axis, p-ter first; background gray)."""
    g = np.asarray(g)
    ink = (255 - g) if polarity == P.DARK_ON_LIGHT else g.copy()
    bg = P.border_median(ink)
    inkp = np.where(ink > bg, ink - bg, 0).astype(np.uint8)
    t = P.otsu_threshold(inkp)
    if t is None or not (inkp > t).any():
        raise P.RejectedCrop("no chromosome in crop")
    ys, xs = np.nonzero(inkp > t)
    xs, ys = xs.astype(np.float64), ys.astype(np.float64)
    cx, cy = xs.mean(), ys.mean()
    dx, dy = xs - cx, ys - cy
    theta = 0.5 * np.arctan2(2.0 * (dx * dy).mean(), (dx * dx).mean() - (dy * dy).mean())
    ax, ay = np.cos(theta), np.sin(theta)
    if ay < 0:
        ax, ay = -ax, -ay
    ux, uy = ay, -ax
    s, tt = dx * ux + dy * uy, dx * ax + dy * ay
    L = int(round(tt.max() - tt.min() + 1))
    W = int(round(s.max() - s.min() + 1))
    tv = tt.min() + np.arange(L, dtype=np.float64)
    sv = (s.max() + s.min()) / 2.0 + np.arange(W, dtype=np.float64) - (W - 1) / 2.0
    T, Sg = np.meshgrid(tv, sv, indexing="ij")
    x, y = cx + Sg * ux + T * ax, cy + Sg * uy + T * ay
    bgv = float(P.border_median(g))
    body = P.bilinear(g.astype(np.float64) - bgv, x, y) + bgv    # outside the crop: background
    return body, bgv


def to_image(body, bgv, pad=PAD):
    """Strip rows -> u8 image with `pad` background rows and columns around."""
    h, w = body.shape
    out = np.full((h + 2 * pad, w + 2 * pad), bgv)
    out[pad:pad + h, pad:pad + w] = body
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _cut(L, f):
    return int(np.clip(round(f * L), 0, L))


def terminal_deletion(body, frac, end):
    """Drop the distal `frac` of the length from p-ter (end='p', top) or q-ter (end='q')."""
    k = max(_cut(len(body), frac), 1)
    return body[k:] if end == "p" else body[:len(body) - k]


def interstitial_deletion(body, a, b):
    L = len(body)
    return np.concatenate([body[:_cut(L, a)], body[_cut(L, b):]])


def duplication(body, a, b):
    """Tandem: the segment [a, b) followed by itself."""
    L = len(body)
    i, j = _cut(L, a), _cut(L, b)
    return np.concatenate([body[:j], body[i:j], body[j:]])


def inversion(body, a, b):
    L = len(body)
    i, j = _cut(L, a), _cut(L, b)
    return np.concatenate([body[:i], body[i:j][::-1], body[j:]])


def _fit_width(x, w, bgv):
    """Centre-pad or centre-crop columns to width w."""
    d = w - x.shape[1]
    if d > 0:
        return np.pad(x, ((0, 0), (d // 2, d - d // 2)), constant_values=bgv)
    if d < 0:
        return x[:, (-d) // 2:(-d) // 2 + w]
    return x


def translocation(body_a, body_b, fa, fb, arm, bgv=255.0):
    """Reciprocal exchange of the distal segments beyond breakpoints fa, fb (fractions from p-ter)
    on `arm` of both: each derivative keeps its own centromere. -> (der_a, der_b)."""
    ia, ib = _cut(len(body_a), fa), _cut(len(body_b), fb)
    w = max(body_a.shape[1], body_b.shape[1])
    A, B = _fit_width(body_a, w, bgv), _fit_width(body_b, w, bgv)
    if arm == "q":
        return np.concatenate([A[:ia], B[ib:]]), np.concatenate([B[:ib], A[ia:]])
    return np.concatenate([B[:ib], A[ia:]]), np.concatenate([A[:ia], B[ib:]])


def arm_of(position, cen):
    return "p" if position < cen else "q"


# ---------------------------------------------------------------- event sampling
def _profile(body, bgv):
    """Mean ink of the central third of the columns, per row (for the visibility check)."""
    w = body.shape[1]
    c = body[:, w // 3: max(w // 3 + 1, 2 * w // 3)]
    return np.abs(c - bgv).mean(1)


def _visible(before, after, bgv, thr=0.12):
    pa, pb = _profile(before, bgv), _profile(after, bgv)
    rng = max(pa.max() - pa.min(), 1.0)
    return np.abs(pa - pb).mean() / rng >= thr


def _segment_in_arm(rng, cen, f, L, lo_ter=0.05, lo_cen=0.03):
    """A segment [a, a+f) inside one arm with margins; None if no arm fits."""
    f = max(f, MIN_ROWS / L)
    room = {"p": (lo_ter, cen - lo_cen - f), "q": (cen + lo_cen, 1 - lo_ter - f)}
    arms = [k for k, (lo, hi) in room.items() if hi > lo]
    if not arms:
        return None
    lo, hi = room[arms[rng.integers(len(arms))]]
    a = rng.uniform(lo, hi)
    return a, a + f


def single_event(rng, body, bgv, label, subtype):
    """-> (edited body, dict(arm, position)) or None when this crop cannot carry the subtype."""
    cen, L = CEN[label], len(body)
    if L < MIN_LENGTH:
        return None
    if subtype == "terminal_deletion":
        arms = [a for a, n in (("p", cen), ("q", 1 - cen)) if n >= 0.2]
        end = arms[rng.integers(len(arms))]
        armlen = cen if end == "p" else 1 - cen
        f = rng.uniform(0.15, min(0.40, armlen - 0.05))
        pos = f if end == "p" else 1 - f
        return terminal_deletion(body, f, end), dict(arm=end, position=pos)
    if subtype in ("interstitial_deletion", "duplication"):
        seg = _segment_in_arm(rng, cen, rng.uniform(0.10, 0.30), L)
        if seg is None:
            return None
        fn = interstitial_deletion if subtype == "interstitial_deletion" else duplication
        return fn(body, *seg), dict(arm=arm_of(seg[0], cen), position=seg[0])
    if subtype == "paracentric_inversion":
        for _ in range(10):
            seg = _segment_in_arm(rng, cen, rng.uniform(0.15, 0.35), L, lo_ter=0.03, lo_cen=0.02)
            if seg is None:
                return None
            out = inversion(body, *seg)
            if _visible(body, out, bgv):
                return out, dict(arm=arm_of(seg[0], cen), position=seg[0])
        return None
    if subtype == "pericentric_inversion":
        for _ in range(10):
            a = rng.uniform(0.05, max(cen - 0.03, 0.06))
            b = rng.uniform(max(cen + 0.05, a + 0.15), 0.95)
            if b - a < max(0.15, MIN_ROWS / L) or abs((a + b) / 2 - cen) < 0.06 or a >= cen:
                continue
            out = inversion(body, a, b)
            if _visible(body, out, bgv):
                return out, dict(arm="p", position=a)
        return None
    raise ValueError(subtype)


def translocation_event(rng, body_a, la, body_b, lb, bgv):
    """-> (der_a, info_a, der_b, info_b) or None; the derivatives differ in length from the
    originals by >= 8 % so that the exchange is visible."""
    ca, cb = CEN[la], CEN[lb]
    if min(len(body_a), len(body_b)) < MIN_LENGTH:
        return None
    for _ in range(20):
        arm = ARMS[rng.integers(2)]
        if arm == "p" and min(ca, cb) < 0.25:       # no p-arm exchange for acrocentrics
            arm = "q"
        if arm == "q":
            fa = rng.uniform(ca + 0.05, 0.9)
            fb = rng.uniform(cb + 0.05, 0.9)
        else:
            fa = rng.uniform(0.1, ca - 0.05)
            fb = rng.uniform(0.1, cb - 0.05)
        da, db = translocation(body_a, body_b, fa, fb, arm, bgv)
        if (abs(len(da) - len(body_a)) >= 0.08 * len(body_a) and
                abs(len(db) - len(body_b)) >= 0.08 * len(body_b)):
            return da, dict(arm=arm, position=fa), db, dict(arm=arm, position=fb)
    return None


# ---------------------------------------------------------------- one cell -> synthetic crops
def _cell_job(args):
    """One cell: `n_events` abnormal events and `n_controls` straightened unedited crops.
    -> list of records (raw u8 image, preprocessed tensor, length, area, fields, replaced crops)."""
    paths, labels, polarity, n_events, n_controls, seed, keep_raw = args
    rng = np.random.default_rng(seed)
    bodies = {}

    def body(i):
        if i not in bodies:
            try:
                bodies[i] = straighten(load_gray(paths[i]), polarity)
            except P.RejectedCrop:
                bodies[i] = None
        return bodies[i]

    def finish(b, bgv):
        img = to_image(b, bgv)
        try:
            r = P.preprocess_full(img, polarity)
        except P.RejectedCrop:
            return None
        return (img if keep_raw else None), r["image"], r["length"], r["area"]

    out, n = [], len(paths)
    for _ in range(n_controls):
        i = int(rng.integers(n))
        if body(i) is None:
            continue
        f = finish(*body(i))
        if f:
            out.append([dict(src=i, structure="normal", subtype="straightened", arm="", position=-1.0,
                             label=labels[i], replaces=[i]), f])
    for _ in range(n_events):
        st = SUBTYPES[rng.integers(len(SUBTYPES))]
        if st == "translocation":
            i, j = rng.choice(n, 2, replace=False)
            if labels[i] == labels[j] or body(i) is None or body(j) is None:
                continue
            ev = translocation_event(rng, body(i)[0], LABELS[labels[i]], body(j)[0],
                                     LABELS[labels[j]], body(i)[1])
            if ev is None:
                continue
            fa, fb = finish(ev[0], body(i)[1]), finish(ev[2], body(j)[1])
            if fa is None or fb is None:
                continue
            gid = f"t{len(out)}"
            for k, info, f, partner in ((i, ev[1], fa, j), (j, ev[3], fb, i)):
                out.append([dict(src=int(k), structure="translocation", subtype=st, label=labels[k],
                                 partner=LABELS[labels[partner]], group=gid, replaces=[int(i), int(j)],
                                 **info), f])
            continue
        i = int(rng.integers(n))
        if body(i) is None:
            continue
        ev = single_event(rng, body(i)[0], body(i)[1], LABELS[labels[i]], st)
        if ev is None:
            continue
        f = finish(ev[0], body(i)[1])
        if f:
            out.append([dict(src=i, structure=SUBTYPE_CLASS[st], subtype=st, label=labels[i],
                             replaces=[i], **ev[1]), f])
    return out


def _hash():
    h = hashlib.sha256()
    for fn in (__file__, P.__file__):
        with open(fn, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:10]


def synthesize(d, set_dir, split, events_per_cell, controls_per_cell=0, seed=0, workers=2,
               keep_raw=False, cache=True):
    """Synthetic crops for every cell of `split` of the loaded set `d` (from data.load_set).

    -> dict image [n,1,S,S], size [n,2], label, structure (index into STRUCTURE_LABELS), subtype,
    arm (0 p, 1 q, -1 none), position (-1 none), cell, src (index into d), partner, group
    (+ raw: list of u8 images when keep_raw). Every crop in it is SYNTHETIC."""
    name = str(d["name"])
    idx = np.nonzero(d["split"] == split)[0]
    cells = list(dict.fromkeys(d["cell"][idx]))
    which = hashlib.sha256("\n".join(map(str, d["path"][idx])).encode()).hexdigest()[:8]
    fn = os.path.join(CACHE, f"synth-{name}-{split}-{which}-e{events_per_cell}-c{controls_per_cell}"
                             f"-s{seed}-{_hash()}.npz")
    if cache and not keep_raw and os.path.exists(fn):
        return dict(np.load(fn, allow_pickle=False))
    members = [idx[d["cell"][idx] == c] for c in cells]
    polarity = str(d["polarity"])
    jobs = [([os.path.join(set_dir, p) for p in d["path"][m]], [int(v) for v in d["label"][m]],
             polarity, events_per_cell, controls_per_cell,
             int.from_bytes(hashlib.sha256(f"{seed}/{name}/{c}".encode()).digest()[:4], "little"),
             keep_raw) for c, m in zip(cells, members)]
    if workers > 1:
        with Pool(workers) as pool:
            res = pool.map(_cell_job, jobs, chunksize=4)
    else:
        res = [_cell_job(j) for j in jobs]
    recs = dict(image=[], size=[], label=[], structure=[], subtype=[], arm=[], position=[], cell=[],
                src=[], partner=[], group=[], raw=[])
    for c, m, out in zip(cells, members, res):
        L0, A0 = d["length"][m].astype(np.float64), d["area"][m].astype(np.float64)
        for info, (raw, img, length, area) in out:
            # size against the cell's median with the edited crop(s) in place of the originals
            L, A = L0.copy(), A0.copy()
            mine = None
            for k in info["replaces"]:
                if k == info["src"]:
                    L[k], A[k], mine = length, area, k
                else:                       # translocation partner: its derivative's size
                    twin = next(o for o in out if o[0].get("group") == info.get("group")
                                and o[0]["src"] == k)
                    L[k], A[k] = twin[1][2], twin[1][3]
            sz = P.size_features(L, A)[mine]
            recs["image"].append(img); recs["size"].append(sz); recs["label"].append(info["label"])
            recs["structure"].append(STRUCTURE_LABELS.index(info["structure"]))
            recs["subtype"].append(info["subtype"])
            recs["arm"].append(ARMS.index(info["arm"]) if info["arm"] else -1)
            recs["position"].append(info["position"]); recs["cell"].append(c)
            recs["src"].append(int(m[info["src"]])); recs["partner"].append(info.get("partner", ""))
            recs["group"].append(f"{c}/{info['group']}" if info.get("group") else "")
            recs["raw"].append(raw)
    raw = recs.pop("raw")
    s = dict(image=np.stack(recs["image"]).astype(np.float32) if recs["image"] else
             np.zeros((0, 1, P.S, P.S), np.float32),
             size=np.array(recs["size"], np.float32).reshape(-1, 2),
             label=np.array(recs["label"], np.int64), structure=np.array(recs["structure"], np.int64),
             subtype=np.array(recs["subtype"], dtype="U32"), arm=np.array(recs["arm"], np.int64),
             position=np.array(recs["position"], np.float32), cell=np.array(recs["cell"]),
             src=np.array(recs["src"], np.int64), partner=np.array(recs["partner"], dtype="U4"),
             group=np.array(recs["group"]), name=np.array(name), split=np.array(split))
    if keep_raw:
        s["raw"] = raw
    elif cache:
        os.makedirs(CACHE, exist_ok=True)
        np.savez(fn, **s)
    return s


def pools(sets, set_dirs, train_events, train_controls, eval_events, eval_controls=0, seed=0,
          repeats=lambda d: 1):
    """Per set: {"train", "val", "test"} synthetic pools (train ones `repeats(d)` times larger,
    so small sets weigh as they do in the normal crops). Every crop in them is SYNTHETIC."""
    out = []
    for d, sd in zip(sets, set_dirs):
        ev = {s: synthesize(d, sd, s, eval_events, eval_controls, seed + 1) for s in ("val", "test")}
        ev["train"] = synthesize(d, sd, "train", train_events * repeats(d), train_controls * repeats(d), seed)
        print(f"{d['name']}: SYNTHETIC train {len(ev['train']['label'])} "
              f"(abnormal {(ev['train']['structure'] > 0).sum()}), val {len(ev['val']['label'])}, "
              f"test {len(ev['test']['label'])}", flush=True)
        out.append(ev)
    return out


# ---------------------------------------------------------------- synthetic set writer
def write_set(set_dir, out_dir, split="test", events_per_cell=4, seed=0, workers=2):
    """A labelled set laid out like shared/data/<set>/ from `split` crops: one synthetic cell per
    source cell (cell_id + "_syn"), its normal crops as they are plus `events_per_cell` abnormal
    events, each replacing its original crop(s). Columns: those of labels.csv plus
    structure, structure_subtype, arm, position (all SYNTHETIC). Images are 8-bit gray PNG."""
    from PIL import Image
    from .data import load_set
    d = load_set(set_dir)
    with open(os.path.join(set_dir, "labels.csv")) as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    s = synthesize(d, set_dir, split, events_per_cell, 0, seed, workers, keep_raw=True, cache=False)
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    fields = list(next(iter(rows.values())).keys()) + ["structure", "structure_subtype", "arm", "position"]
    out_rows = []
    # per cell keep non-overlapping events (each source crop replaced at most once)
    taken, chosen = set(), []
    for k in range(len(s["label"])):
        grp = s["group"][k]
        srcs = [int(j) for j in np.nonzero(s["group"] == grp)[0]] if grp else [k]
        if any(int(s["src"][j]) in taken for j in srcs):
            continue
        if grp and k != srcs[0]:
            continue
        for j in srcs:
            taken.add(int(s["src"][j])); chosen.append(j)
    by_src = {int(s["src"][j]): j for j in chosen}
    for i in np.nonzero(d["split"] == split)[0]:
        r = dict(rows[str(d["path"][i])])
        cell = r["cell_id"] + "_syn"
        stem = os.path.splitext(os.path.basename(r["path"]))[0]
        j = by_src.get(int(i))
        if j is None:
            img = load_gray(os.path.join(set_dir, r["path"]))
            extra = dict(structure="normal", structure_subtype="", arm="", position="")
            fn = f"images/{stem}.png"
        else:
            img = s["raw"][j]
            extra = dict(structure=STRUCTURE_LABELS[s["structure"][j]],
                         structure_subtype=str(s["subtype"][j]), arm=ARMS[s["arm"][j]],
                         position=f"{float(s['position'][j]):.4f}")
            fn = f"images/{stem}_{extra['structure_subtype']}.png"
        Image.fromarray(img).save(os.path.join(out_dir, fn))
        r.update(path=fn, cell_id=cell, group_id=r["group_id"] + "_syn", width=img.shape[1],
                 height=img.shape[0], mode="L", **extra)
        r["source_path"] = "SYNTHETIC from " + r["source_path"] if j is not None else r["source_path"]
        out_rows.append(r)
    with open(os.path.join(out_dir, "labels.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(out_rows)
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(f"SYNTHETIC structural abnormalities made by karyotrain.structural.write_set from the "
                f"{split} split of {os.path.basename(set_dir.rstrip('/'))} (seed {seed}, "
                f"{events_per_cell} events per cell). Not real patient abnormalities; do not redistribute.\n")
    return len(out_rows), len(chosen)


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="write a SYNTHETIC structural-abnormality test set")
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--events-per-cell", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(CACHE), "synth"))
    a = ap.parse_args(argv)
    for sd in a.data:
        name = os.path.basename(os.path.abspath(sd).rstrip("/"))
        od = os.path.join(a.out, f"{name}-{a.split}")
        n, k = write_set(sd, od, a.split, a.events_per_cell, a.seed)
        print(f"{od}: {n} crops, {k} synthetic abnormal (SYNTHETIC)")


if __name__ == "__main__":
    main()
