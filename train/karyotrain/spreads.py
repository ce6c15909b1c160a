"""Metaphase spreads that look like microscope frames, composed from real crops, with one mask
per chromosome: training data for the learned segmenter (karyotrain.segtrain).

Unlike karyotrain.compose (chromosomes kept apart, for end-to-end checks), a spread here is a
cluster: chromosomes touch side by side and end to end, some cross (overlap pixels belong to both
masks), some are bent; interphase nuclei, debris, uneven illumination, defocus, noise, low
contrast, a mottled background and JPEG compression come on top, in either polarity; a fifth
of the spreads are close-ups whose chromosomes are up to 230 px long. Frames are made at the scale the
segmenter sees (after its integer downscale), so chromosome lengths are drawn in that scale.

Targets at the maps' stride (segprep.STRIDE): chromosome (any mask), core (a chromosome's
interior: distance to anything not itself >= 45 % of its widest, overlap left out) and overlap
(two or more masks).
"""
import csv
import io
import os

import numpy as np
from PIL import Image
from scipy import ndimage

from .compose import ink_of
from .data import load_gray
from .segprep import STRIDE


def load_pieces(set_dir, split, limit, seed):
    """Up to `limit` crops of `split` as ink (chromosome bright, background 0), cut to the chromosome."""
    with open(os.path.join(set_dir, "labels.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == split]
    rng = np.random.default_rng(seed)
    rows = [rows[i] for i in rng.permutation(len(rows))[:limit]]
    sample = rows[:: max(1, len(rows) // 50)]
    from .preprocess import border_median
    dark_on_light = sum(int(border_median(load_gray(os.path.join(set_dir, r["path"])))) >= 128
                        for r in sample) * 2 >= len(sample)
    pieces = []
    for r in rows:
        ink, _ = ink_of(load_gray(os.path.join(set_dir, r["path"])), dark_on_light)
        if ink is not None and min(ink.shape) >= 3:
            pieces.append(ink)
    return pieces


def bend(ink, rng):
    """A mild bend: rows shifted sideways along a parabola (the crops are mostly upright)."""
    h, w = ink.shape
    amount = rng.uniform(-0.25, 0.25) * h
    t = (np.arange(h) - h / 2) / max(h / 2, 1)
    shift = amount * (1 - t ** 2)
    pad = int(np.ceil(abs(amount))) + 1
    out = np.zeros((h, w + 2 * pad), np.uint8)
    for y in range(h):
        s = pad + int(round(shift[y]))
        out[y, s:s + w] = ink[y]
    return out


def place_piece(ink, length, rng):
    """The ink scaled to `length` px along its long side, maybe bent, rotated; -> (ink, mask)."""
    h, w = ink.shape
    f = length / max(h, w) * rng.uniform(0.85, 1.15)
    size = (max(2, int(round(w * f * rng.uniform(0.8, 1.25)))), max(2, int(round(h * f))))
    im = np.asarray(Image.fromarray(ink).resize(size, Image.BILINEAR))
    if rng.random() < 0.3:
        im = bend(im, rng)
    im = np.asarray(Image.fromarray(im).rotate(rng.uniform(0, 360), Image.BILINEAR, expand=True))
    mask = ndimage.binary_fill_holes(im > 12)
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    return im[sl].astype(np.float32), mask[sl]


def smooth_field(shape, scale, rng):
    """A smooth random field in [-1, 1] with features about `scale` px across."""
    h, w = shape
    gh, gw = max(2, h // scale + 2), max(2, w // scale + 2)
    g = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return np.asarray(Image.fromarray(g, mode="F").resize((w, h), Image.BICUBIC))


def nucleus(rng, size):
    """A textured round blob (interphase nucleus), ink scale 0..1."""
    r = size / 2
    yy, xx = np.mgrid[:size, :size]
    a, b = r * rng.uniform(0.8, 1.0), r * rng.uniform(0.65, 1.0)
    th = rng.uniform(0, np.pi)
    u = (xx - r) * np.cos(th) + (yy - r) * np.sin(th)
    v = -(xx - r) * np.sin(th) + (yy - r) * np.cos(th)
    d = (u / a) ** 2 + (v / b) ** 2
    body = np.clip((1.0 - d) * 6, 0, 1)
    texture = 0.8 + 0.2 * smooth_field((size, size), max(4, size // 8), rng)
    return (body * texture).astype(np.float32)


def mottle(shape, median_length, rng):
    """A stained, uneven background (cytoplasm and stain left round a spread): a faint smooth
    texture about a chromosome's width across, with up to a few hundred blotches no wider than
    a chromosome; none of it is a chromosome."""
    h, w = shape
    width = max(3, median_length / 5)
    out = np.clip(smooth_field(shape, int(width * rng.uniform(0.5, 2)), rng), 0, 1) * rng.uniform(0.03, 0.15)
    for _ in range(int(rng.integers(20, 300))):
        r = width * rng.uniform(0.1, 0.6)
        y, x = rng.uniform(0, h), rng.uniform(0, w)
        reach = int(3 * r) + 1
        y0, y1, x0, x1 = max(0, int(y) - reach), min(h, int(y) + reach + 1), max(0, int(x) - reach), min(w, int(x) + reach + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        blotch = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / r ** 2) * rng.uniform(0.1, 0.45)
        out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], blotch)
    return out.astype(np.float32)


def spread(pieces, rng, width=None, height=None, close_up=None):
    """-> (frame u8, masks [(y, x, bool array)] one per chromosome, at its place, dark_on_light).
    `close_up` None: drawn (a fifth are)."""
    # a close-up (a microscope's high-power field) has chromosomes 70-120 px long at the
    # segmenter's scale, so the frame must be large enough to hold the spread
    drawn = rng.random() < 0.2          # drawn even when given, so the later draws stay the same
    close_up = drawn if close_up is None else close_up
    median_length = rng.uniform(70, 120) if close_up else rng.uniform(14, 70)
    width = width or int(rng.choice([768, 896, 1024] if close_up else [512, 640, 768, 896, 1024]))
    height = height or int(width * rng.uniform(0.7, 0.8)) // 2 * 2
    n = int(rng.integers(38, 52)) if rng.random() < 0.85 else int(rng.integers(8, 38))
    pale = rng.uniform(0.4, 0.7)      # the faintest chromosome's gain in this spread
    ink = np.zeros((height, width), np.float32)
    owners = np.zeros((height, width), np.int16)      # last owner, for the placement checks
    masks = []
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    radius = median_length * np.sqrt(n) * rng.uniform(0.25, 0.55)
    touch_ok = rng.uniform(0.0, 0.35)     # this spread's share of chromosomes allowed to touch or cross
    for _ in range(n):
        piece = pieces[int(rng.integers(len(pieces)))]
        length = median_length * rng.uniform(0.35, 1.9)
        placed = place_piece(piece, length, rng)
        if placed is None:
            continue
        p, m = placed
        h, w = m.shape
        if h >= height - 2 or w >= width - 2:
            continue
        may_touch = rng.random() < touch_ok
        for _attempt in range(40):
            x = int(np.clip(cx + rng.normal(0, radius) - w / 2, 0, width - w))
            y = int(np.clip(cy + rng.normal(0, radius) - h / 2, 0, height - h))
            region = owners[y:y + h, x:x + w]
            hit = (region > 0) & m
            if may_touch:
                if hit.sum() <= 0.2 * m.sum():
                    break
            else:
                grown = ndimage.binary_dilation(m, iterations=2)
                if not ((region > 0) & grown).any():
                    break
        else:
            continue
        ink[y:y + h, x:x + w] += p * rng.uniform(pale, 1.2)
        owners[y:y + h, x:x + w][m] = len(masks) + 1
        masks.append((y, x, m))
    ink = np.clip(ink, 0, 255) / 255.0
    # nuclei, some overlapping the spread, some cut by the frame edge
    clutter = np.zeros_like(ink)
    for _ in range(int(rng.integers(0, 4))):
        size = int(median_length * rng.uniform(2.0, 4.5))
        blob = nucleus(rng, size) * rng.uniform(0.5, 1.3)
        x, y = int(rng.integers(-size // 3, width - 2 * size // 3)), int(rng.integers(-size // 3, height - 2 * size // 3))
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + size, width), min(y + size, height)
        clutter[y0:y1, x0:x1] = np.maximum(clutter[y0:y1, x0:x1], blob[y0 - y:y1 - y, x0 - x:x1 - x])
    for _ in range(int(rng.integers(0, 30))):    # debris specks
        r = rng.uniform(0.7, 2.5)
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        yy, xx = np.ogrid[:height, :width]
        sl = (slice(max(0, int(y - 4)), int(y + 5)), slice(max(0, int(x - 4)), int(x + 5)))
        d = ((yy[sl[0]] - y) ** 2 + (xx[:, sl[1]] - x) ** 2) / r ** 2
        clutter[sl] = np.maximum(clutter[sl], np.exp(-d) * rng.uniform(0.2, 0.9))
    if rng.random() < 0.3:
        clutter = np.maximum(clutter, mottle(ink.shape, median_length, rng))
    signal = np.clip(ink + clutter, 0, 1)  # a chromosome on a nucleus shows on top of it
    if rng.random() < 0.7:
        signal = ndimage.gaussian_filter(signal, rng.uniform(0.3, 1.8))
    dark_on_light = rng.random() < 0.45
    gain = rng.uniform(0.25, 1.0) * 255
    illumination = 1.0 + rng.uniform(0, 0.35) * smooth_field(ink.shape, int(max(width, height) / 2), rng)
    if dark_on_light:
        background = rng.uniform(170, 245)
        frame = (background - gain * signal * rng.uniform(0.5, 0.9)) * illumination
    else:
        background = rng.uniform(0, 60)
        frame = background * illumination + gain * signal * illumination
    frame = frame + rng.normal(0, rng.uniform(0.5, 8), frame.shape)
    frame = np.clip(frame, 0, 255) / 255.0
    frame = 255 * frame ** rng.uniform(0.7, 1.4)
    frame = np.clip(np.round(frame), 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=int(rng.integers(40, 95)))
        frame = np.asarray(Image.open(buffer).convert("L"))
    return frame, masks, dark_on_light


def targets_from_masks(masks, shape):
    """Masks [(y, x, bool array)] -> uint8 [3, h/STRIDE, w/STRIDE]: chromosome, core, overlap."""
    h, w = shape
    coverage = np.zeros(shape, np.int16)
    for y, x, m in masks:
        coverage[y:y + m.shape[0], x:x + m.shape[1]] += m
    core = np.zeros(shape, bool)
    for y, x, m in masks:
        window = (slice(y, y + m.shape[0]), slice(x, x + m.shape[1]))
        inside = np.pad(m & (coverage[window] - m <= 0), 1)
        if not inside.any():
            continue
        d = ndimage.distance_transform_edt(inside)[1:-1, 1:-1]
        core[window] |= (d >= max(1.0, 0.45 * d.max())) | medial_band(d)
    overlap = coverage >= 2
    full = np.stack([coverage > 0, core & ~overlap, overlap]).astype(np.float32)
    hs, ws = h // STRIDE, w // STRIDE
    cells = full[:, :hs * STRIDE, :ws * STRIDE].reshape(3, hs, STRIDE, ws, STRIDE).mean(axis=(2, 4))
    return np.stack([cells[0] >= 0.5, cells[1] >= 0.75, cells[2] >= 0.25]).astype(np.uint8)


def medial_band(d):
    """The chromosome's middle line, up to 3 px wide, at least 1.5 px (and a quarter of its half
    width) inside its mask: it carries the core through a centromere or a pale band, where a core
    cut at a fraction of the widest point breaks in two and the chromosome would be counted twice."""
    deep = d >= max(1.5, 0.25 * d.max())
    p = np.pad(d, 1)
    ridge = np.zeros(d.shape, bool)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        before = p[1 - dy:p.shape[0] - 1 - dy, 1 - dx:p.shape[1] - 1 - dx]
        after = p[1 + dy:p.shape[0] - 1 + dy, 1 + dx:p.shape[1] - 1 + dx]
        ridge |= (d >= before) & (d >= after)
    return ndimage.binary_dilation(ridge & deep, structure=np.ones((3, 3))) & deep


def labelmap_instances(labels):
    """A class map (1-24, 255 = overlap of two chromosomes) -> instance masks [(y, x, bool array)]: the 8-connected
    components of each class, overlap pixels joined to every class component they touch.
    Touching homologs stay one instance (the map cannot tell them apart)."""
    return [(y, x, m) for _, y, x, m in labelmap_class_instances(labels)]


def labelmap_class_instances(labels):
    """labelmap_instances with each instance's class first: [(class 1-24, y, x, bool array)]."""
    overlap = labels == 255
    crossings, _ = ndimage.label(overlap, structure=np.ones((3, 3)))
    masks = []
    for c in range(1, 25):
        m = labels == c
        if not m.any():
            continue
        comps, n = ndimage.label(m | overlap, structure=np.ones((3, 3)))
        for i in range(1, n + 1):
            own = (comps == i) & m
            if own.sum() >= 8:
                touched = np.unique(crossings[ndimage.binary_dilation(own) & overlap])
                full = own | np.isin(crossings, touched[touched > 0])
                ys, xs = np.nonzero(full)
                masks.append((c, ys.min(), xs.min(), full[ys.min():ys.max() + 1, xs.min():xs.max() + 1]))
    return masks


def main(argv=None):
    """Spreads from one set's crops of one split, laid out as a frames set (frames.csv, ann/ with
    one box per chromosome) for `karyoscreen eval-frames`: a check of the segmenter on spreads it
    was not trained on, close-ups included (its training spreads come from the train crops)."""
    import argparse
    import json
    from .compose import check_out_dir, write_frames_layout
    ap = argparse.ArgumentParser(description=main.__doc__.split(":")[0])
    ap.add_argument("--data", required=True, help="a crop set: DIR with labels.csv and images/")
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--close-up", action="store_true", help="every spread a close-up")
    ap.add_argument("--band", default="G", choices=["G", "Q"], help="the band column of frames.csv")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    check_out_dir(args.out)
    os.makedirs(args.out, exist_ok=True)
    pieces = load_pieces(args.data, args.split, 1500, args.seed)
    truth = {}
    for n in range(args.frames):
        rng = np.random.default_rng([args.seed, n])
        frame, masks, _ = spread(pieces, rng, close_up=True if args.close_up else None)
        name = f"spread{n:03d}"
        Image.fromarray(frame).save(os.path.join(args.out, name + ".png"))
        boxes = []
        for y, x, m in masks:
            ys, xs = np.nonzero(m)
            boxes.append([int(x + xs.min()), int(y + ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)])
        truth[name] = dict(count=len(masks), karyotype="", size=list(frame.shape[::-1]),
                           objects=[dict(bbox=b, label=None) for b in boxes])
    write_frames_layout(args.out, truth, args.split, args.band, args.data)
    print(json.dumps(dict(out=args.out, frames=len(truth), split=args.split, close_up=args.close_up)))


if __name__ == "__main__":
    main()
