"""Frame -> segmenter input, the Python twin of the device's learned-segmenter preprocessing
(docs/segmentation.md). Integer steps up to the last division, so both sides agree bit for bit.

1. polarity: border median >= polarity_threshold -> dark on light -> invert (chromosomes bright);
2. k = ceil(max(W, H) / max_side): integer block mean over k x k blocks (edge blocks partial);
3. lo, hi = values at per-mille ranks low_per_mille, high_per_mille of the sorted pixels;
4. x = clamp((v - lo) / max(hi - lo, 1), 0, 1) as float32;
5. padded right and bottom with 0 to multiples of multiple_of.
"""
import numpy as np

from .preprocess import border_median

PREPROCESSING = dict(polarity_threshold=128, max_side=1024, multiple_of=16, low_per_mille=10, high_per_mille=995)
STRIDE = 2          # the maps' cell is STRIDE x STRIDE input pixels
CHANNELS = ("chromosome", "core", "overlap")


def scale_factor(width, height, max_side):
    return max(1, -(-max(width, height) // max_side))


def block_mean(v, k):
    """Mean of each k x k block (partial at the right and bottom edges), rounded half up."""
    if k == 1:
        return v
    h, w = v.shape
    hk, wk = -(-h // k), -(-w // k)
    padded = np.zeros((hk * k, wk * k), np.int64)
    padded[:h, :w] = v
    sums = padded.reshape(hk, k, wk, k).sum(axis=(1, 3))
    rows = np.minimum(k, h - np.arange(hk) * k)
    cols = np.minimum(k, w - np.arange(wk) * k)
    n = rows[:, None] * cols[None, :]
    return ((sums + n // 2) // n).astype(np.uint8)


def oriented(gray_u8, params=PREPROCESSING):
    """Steps 1-2: the frame with chromosomes bright, at the segmenter's scale; and k."""
    h, w = gray_u8.shape
    v = gray_u8
    if int(border_median(gray_u8)) >= params["polarity_threshold"]:
        v = 255 - gray_u8
    k = scale_factor(w, h, params["max_side"])
    return block_mean(v, k), k


def normalise(v, params=PREPROCESSING):
    """Steps 3-4 on an oriented, scaled frame: float32 in [0, 1]."""
    counts = np.cumsum(np.bincount(v.ravel(), minlength=256))
    n = v.size
    rank = lambda per_mille: int(np.searchsorted(counts, min(n - 1, n * per_mille // 1000), side="right"))
    lo, hi = rank(params["low_per_mille"]), rank(params["high_per_mille"])
    x = (v.astype(np.float32) - np.float32(lo)) / np.float32(max(hi - lo, 1))
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def pad(x, multiple_of):
    h, w = x.shape
    hp, wp = -(-h // multiple_of) * multiple_of, -(-w // multiple_of) * multiple_of
    out = np.zeros((hp, wp), np.float32)
    out[:h, :w] = x
    return out


def frame_to_input(gray_u8, params=PREPROCESSING):
    """-> (float32 [1, 1, Hp, Wp], (w, h, k)): the tensor and the scaled frame's size."""
    v, k = oriented(gray_u8, params)
    x = pad(normalise(v, params), params["multiple_of"])
    return x[None, None], (v.shape[1], v.shape[0], k)
