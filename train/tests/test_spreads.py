"""Segmenter data: the preprocessing's integer steps and the targets cut from masks."""
import numpy as np

from karyotrain import segprep, spreads


def rod(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    ys, xs = np.nonzero(m)
    return ys.min(), xs.min(), m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def test_block_mean_rounds_half_up_and_keeps_partial_edges():
    v = np.array([[0, 1, 2], [1, 1, 255]], np.uint8)
    assert segprep.block_mean(v, 2).tolist() == [[1, 129]]   # (3+2)//4, (257+1)//2


def test_scale_factor_keeps_frames_up_to_max_side():
    assert segprep.scale_factor(1024, 768, 1024) == 1
    assert segprep.scale_factor(1025, 768, 1024) == 2
    assert segprep.scale_factor(2048, 1536, 1024) == 2


def test_dark_on_light_frames_are_inverted_and_normalised():
    frame = np.full((40, 50), 220, np.uint8)
    frame[10:20, 10:30] = 40
    x, (w, h, k) = segprep.frame_to_input(frame)
    assert x.shape == (1, 1, 48, 64) and (w, h, k) == (50, 40, 1)
    assert x[0, 0, 15, 15] == 1.0 and x[0, 0, 0, 0] == 0.0   # chromosome bright, background 0
    assert (x[0, 0, 40:, :] == 0).all()                      # padding


def test_touching_rods_keep_separate_cores():
    shape = (40, 40)
    masks = [rod(shape, 4, 36, 10, 18), rod(shape, 4, 36, 18, 26)]  # side by side, no gap
    t = spreads.targets_from_masks(masks, shape)
    from scipy import ndimage
    _, cores = ndimage.label(t[1], structure=np.ones((3, 3)))
    assert cores == 2
    assert t[2].sum() == 0


def test_crossing_rods_mark_the_overlap_and_keep_it_out_of_the_cores():
    shape = (40, 40)
    masks = [rod(shape, 2, 38, 16, 24), rod(shape, 16, 24, 2, 38)]
    t = spreads.targets_from_masks(masks, shape)
    assert t[2, 8:12, 8:12].all()          # the crossing, at stride 2
    assert not (t[1] & t[2]).any()


def test_label_map_overlap_joins_every_class_that_crosses_it():
    labels = np.zeros((30, 30), np.uint8)
    labels[2:28, 12:18] = 5
    labels[12:18, 2:28] = 9
    labels[12:18, 12:18] = 255
    masks = spreads.labelmap_instances(labels)
    assert len(masks) == 2
    for y, x, m in masks:
        full = np.zeros(labels.shape, bool)
        full[y:y + m.shape[0], x:x + m.shape[1]] = m
        assert full[12:18, 12:18].all()


def test_spread_masks_match_the_frame():
    rng = np.random.default_rng(3)
    pieces = [np.pad(np.full((30, 8), 200, np.uint8), 2)] * 4
    frame, masks, _ = spreads.spread(pieces, rng, width=256, height=192)
    assert frame.shape == (192, 256) and frame.dtype == np.uint8
    assert len(masks) >= 5
    for y, x, m in masks:
        assert y + m.shape[0] <= 192 and x + m.shape[1] <= 256 and m.any()


def test_a_pinched_rod_keeps_one_core():
    shape = (48, 40)
    m = np.zeros(shape, bool)
    m[4:44, 14:26] = True
    m[22:26, 14:17] = m[22:26, 23:26] = False   # a centromere: 12 px wide narrowed to 6
    ys, xs = np.nonzero(m)
    t = spreads.targets_from_masks([(ys.min(), xs.min(), m[ys.min():, xs.min():xs.max() + 1])], shape)
    from scipy import ndimage
    assert ndimage.label(t[1], structure=np.ones((3, 3)))[1] == 1


def test_expected_copies_read_sex_gains_and_losses():
    from karyotrain.segtrain import expected_copies
    c = expected_copies("47,XY,+21")
    assert (c[21], c[1], c[23], c[24]) == (3, 2, 1, 1)
    c = expected_copies("45,X,-7,t(9;22)(q34;q11)")
    assert (c[7], c[9], c[23], c[24]) == (1, 2, 1, 0)


def test_a_spreads_set_has_one_box_per_chromosome_of_each_frame(tmp_path):
    import csv
    import json
    from PIL import Image
    crops = tmp_path / "set"
    (crops / "images").mkdir(parents=True)
    with open(crops / "labels.csv", "w") as f:
        f.write("path,class_name,cell_id,split\n")
        for i in range(6):
            rod_image = np.full((40, 24), 235, np.uint8)
            rod_image[4:36, 8:16] = 60
            Image.fromarray(rod_image).save(crops / "images" / f"{i}.png")
            f.write(f"images/{i}.png,{i + 1},c{i // 3},val\n")
    out = tmp_path / "frames"
    spreads.main(["--data", str(crops), "--split", "val", "--out", str(out), "--frames", "2", "--close-up"])
    with open(out / "frames.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for r in rows:
        ann = json.loads((out / r["ann"]).read_text())
        frame = Image.open(out / r["image"])
        assert int(r["count"]) == ann["count"] == len(ann["instances"]) > 0
        for inst in ann["instances"]:
            x, y, w, h = inst["bbox"]
            assert 0 <= x and 0 <= y and x + w <= frame.width and y + h <= frame.height
