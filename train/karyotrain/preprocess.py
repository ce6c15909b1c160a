"""Preprocessing spec karyoscreen-pre-v1 (docs/preprocessing.md), implemented literally.

Integer steps are exact, float steps use float64, the output tensor is float32.
"""
import hashlib
import numpy as np

SPEC = "karyoscreen-pre-v1"
S = 64                      # input_size
M = 2                       # margin
POLARITY_THRESHOLD = 128
CONTRAST_PERCENTILE = 0.99
PARAMS = dict(spec=SPEC, input_size=S, margin=M, polarity_threshold=POLARITY_THRESHOLD,
              contrast_percentile=CONTRAST_PERCENTILE, smoothing="binomial3",
              size_features=["ln_rel_length", "ln_rel_area"])
DARK_ON_LIGHT, LIGHT_ON_DARK = "dark_on_light", "light_on_dark"


class RejectedCrop(ValueError):
    """No chromosome in crop."""


def spec_hash():
    """Hash of this file's source: any change to the implementation invalidates caches."""
    with open(__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def border_median(img):
    """Step 1: median (lower, index (n-1)//2) of the border pixels, each pixel once."""
    h, w = img.shape
    if h <= 2 or w <= 2:
        px = img.ravel()  # every pixel is a border pixel
    else:
        px = np.concatenate([img[0], img[-1], img[1:-1, 0], img[1:-1, -1]])
    px = np.sort(px, kind="stable")
    return px[(px.size - 1) // 2]


def detect_polarity(gray_u8):
    """Step 2: dark_on_light if the border median >= 128."""
    return DARK_ON_LIGHT if int(border_median(gray_u8)) >= POLARITY_THRESHOLD else LIGHT_ON_DARK


def otsu_threshold(v):
    """Step 5: Otsu on the 256-bin histogram of u8 values; None if fewer than 2 distinct values."""
    hist = np.bincount(v.ravel(), minlength=256).astype(np.int64)
    vals = np.arange(256, dtype=np.int64)
    w0 = np.cumsum(hist)[:255]                  # counts of values <= t, t = 0..254
    s0 = np.cumsum(hist * vals)[:255]
    n, stot = int(hist.sum()), int((hist * vals).sum())
    w1, s1 = n - w0, stot - s0
    ok = (w0 > 0) & (w1 > 0)
    if not ok.any():
        return None
    w0f, w1f = w0.astype(np.float64), w1.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu0 = s0.astype(np.float64) / w0f
        mu1 = s1.astype(np.float64) / w1f
        score = w0f * w1f * (mu0 - mu1) ** 2
    score = np.where(ok, score, -np.inf)
    return int(np.argmax(score))               # argmax returns the first maximum: first t wins ties


def smooth_binomial3(a):
    """Step 7: [1,2,1]/4 along x then along y, zero outside the image."""
    p = np.pad(a, ((0, 0), (1, 1)))
    a = (p[:, :-2] + 2.0 * p[:, 1:-1] + p[:, 2:]) / 4.0
    p = np.pad(a, ((1, 1), (0, 0)))
    return (p[:-2] + 2.0 * p[1:-1] + p[2:]) / 4.0


def bilinear(img, x, y):
    """Bilinear sample of img at float coords (x=column, y=row); pixels outside are 0."""
    h, w = img.shape
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    out = np.zeros_like(x, dtype=np.float64)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            v = np.where(inside, img[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)], 0.0)
            out += wx * wy * v
    return out


def preprocess_full(gray_u8, polarity=None):
    """All steps 1-10; returns a dict with the tensor and the intermediate quantities."""
    g = np.asarray(gray_u8)
    if g.dtype != np.uint8 or g.ndim != 2:
        raise TypeError("expected a 2-D uint8 image")
    if polarity is None:
        polarity = detect_polarity(g)
    ink = (255 - g) if polarity == DARK_ON_LIGHT else g.copy()            # step 3
    bg = border_median(ink)                                                  # step 4
    inkp = np.where(ink > bg, ink - bg, 0).astype(np.uint8)
    t = otsu_threshold(inkp)                                                 # step 5
    if t is None:
        raise RejectedCrop("no chromosome in crop (fewer than two distinct values)")
    mask = inkp > t
    n = int(mask.sum())
    if n == 0:
        raise RejectedCrop("no chromosome in crop (empty mask)")
    vals = np.sort(inkp[mask])                                               # step 6
    p = max(int(vals[int(np.floor(CONTRAST_PERCENTILE * (n - 1)))]), 1)
    norm = np.minimum(inkp.astype(np.float64) / p, 1.0)
    sm = smooth_binomial3(norm)                                              # step 7
    ys, xs = np.nonzero(mask)                                                # step 8
    xs, ys = xs.astype(np.float64), ys.astype(np.float64)
    cx, cy = xs.mean(), ys.mean()
    dx, dy = xs - cx, ys - cy
    mu20, mu02, mu11 = (dx * dx).mean(), (dy * dy).mean(), (dx * dy).mean()
    theta = 0.5 * np.arctan2(2.0 * mu11, mu20 - mu02)
    ax, ay = np.cos(theta), np.sin(theta)
    if ay < 0:
        ax, ay = -ax, -ay
    ux, uy = ay, -ax
    s = dx * ux + dy * uy                                                    # step 9
    tt = dx * ax + dy * ay
    length = tt.max() - tt.min() + 1.0
    width = s.max() - s.min() + 1.0
    sc, tc = (s.max() + s.min()) / 2.0, (tt.max() + tt.min()) / 2.0
    k = (S - 2 * M) / max(length, width)                                     # step 10
    c = (np.arange(S, dtype=np.float64) + 0.5 - S / 2.0) / k
    dv, du = np.meshgrid(c, c, indexing="ij")                                # rows i -> dv, cols j -> du
    x = cx + (sc + du) * ux + (tc + dv) * ax
    y = cy + (sc + du) * uy + (tc + dv) * ay
    img = bilinear(sm, x, y).astype(np.float32)[None]
    return dict(image=img, length=float(length), width=float(width), area=n, polarity=polarity,
                otsu_t=t, bg=int(bg), p=p, cx=cx, cy=cy, theta=float(theta), mu11=float(mu11))


def preprocess_crop(gray_u8, polarity=None):
    """-> (image f32 [1,S,S], length, area)."""
    r = preprocess_full(gray_u8, polarity)
    return r["image"], r["length"], r["area"]


def median(v):
    """Median; mean of the two middle values for an even count."""
    v = np.sort(np.asarray(v, dtype=np.float64))
    n = v.size
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def size_features(lengths, areas):
    """Step 11 for one cell: [n,2] f32 = [ln(length/median), ln(area/median)]."""
    L = np.asarray(lengths, dtype=np.float64)
    A = np.asarray(areas, dtype=np.float64)
    return np.stack([np.log(L / median(L)), np.log(A / median(A))], 1).astype(np.float32)
