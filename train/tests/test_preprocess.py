"""Golden vectors and properties of the karyoscreen-pre-v1 preprocessing."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from karyotrain import preprocess as P
from karyotrain.fixtures import GOLDEN, draw_rod

MANIFEST = os.path.join(GOLDEN, "manifest.json")


def load_manifest():
    with open(MANIFEST) as f:
        return json.load(f)


@pytest.mark.parametrize("item", load_manifest()["images"], ids=lambda i: i["file"])
def test_golden(item):
    g = np.asarray(Image.open(os.path.join(GOLDEN, item["file"])))
    assert g.dtype == np.uint8 and g.ndim == 2
    r = P.preprocess_full(g)
    want = np.fromfile(os.path.join(GOLDEN, item["tensor"]), dtype="<f4").reshape(1, P.S, P.S)
    assert r["polarity"] == item["polarity"]
    assert r["area"] == item["area"]
    assert abs(r["length"] - item["length"]) <= 1e-4
    assert r["image"].dtype == np.float32 and r["image"].shape == (1, P.S, P.S)
    assert np.abs(r["image"] - want).max() <= 1e-4


def test_golden_cell_size():
    m = load_manifest()
    size = P.size_features([i["length"] for i in m["images"]], [i["area"] for i in m["images"]])
    assert np.abs(size - np.array(m["cell"]["size"], dtype=np.float32)).max() <= 1e-6


def test_polarity_both_ways():
    dark = draw_rod((50, 70), 20.0, 45, 5.0, "dark", 3.0, None, seed=1)
    light = draw_rod((50, 70), 20.0, 45, 5.0, "light", 3.0, None, seed=1)
    assert P.detect_polarity(dark) == P.DARK_ON_LIGHT
    assert P.detect_polarity(light) == P.LIGHT_ON_DARK
    a, la, aa = P.preprocess_crop(dark)
    b, lb, ab = P.preprocess_crop(light)
    assert abs(la - lb) < 3 and abs(aa - ab) / aa < 0.15
    assert np.abs(a - b).mean() < 0.05        # same rod, opposite stains -> nearly the same tensor


def test_rotation_invariance_roughly():
    base = None
    for ang in (10.0, 55.0, 100.0, 170.0):
        g = draw_rod((90, 90), ang, 60, 6.0, "dark", 2.0, None, seed=3)
        img, length, area = P.preprocess_crop(g)
        # the axis direction may flip (a 180 deg turn of the output): compare to both
        if base is None:
            base, bl = img, length
            continue
        d = min(np.abs(img - base).mean(), np.abs(img[:, ::-1, ::-1] - base).mean(),
                np.abs(img[:, ::-1, :] - base).mean(), np.abs(img[:, :, ::-1] - base).mean())
        assert d < 0.05, (ang, d)
        assert abs(length - bl) < 3


def test_output_range_and_margin():
    g = draw_rod((40, 90), 0.0, 70, 6.0, "dark", 3.0, None, seed=5)
    img, _, _ = P.preprocess_crop(g)
    assert img.min() >= 0 and img.max() <= 1
    assert img.max() > 0.9


@pytest.mark.parametrize("g", [np.full((30, 20), 200, np.uint8), np.zeros((8, 8), np.uint8),
                               np.full((5, 5), 255, np.uint8)])
def test_reject_blank(g):
    with pytest.raises(P.RejectedCrop):
        P.preprocess_crop(g)


def test_border_median_each_pixel_once():
    g = np.zeros((3, 3), np.uint8)
    g[1, 1] = 255                               # interior pixel is not border
    g[0, :] = [1, 2, 3]; g[2, :] = [7, 8, 9]; g[1, 0] = 4; g[1, 2] = 6
    assert P.border_median(g) == 4              # sorted 1,2,3,4,6,7,8,9 -> index 3


def test_size_features_even_median():
    s = P.size_features([1.0, 2.0, 4.0, 8.0], [1.0, 1.0, 1.0, 1.0])
    assert np.allclose(s[:, 0], np.log(np.array([1, 2, 4, 8]) / 3.0))
    assert np.allclose(s[:, 1], 0)
