import numpy as np

from karyotrain.dapi_crops import MARGIN, expected_copies, frame_crops


def test_karyotype_gives_copies_and_leaves_rearranged_classes_out():
    normal = expected_copies("46,XY")
    assert normal[1] == 2 and normal[23] == 1 and normal[24] == 1
    c = expected_copies("45,XX,-13,t(4;9)")
    assert c[13] == 1 and c[4] is None and c[9] is None and c[23] == 2 and c[24] == 0
    assert expected_copies("47,XX,+21")[21] == 3
    assert expected_copies("not a karyotype") is None


def test_only_classes_whose_components_number_their_copies_are_cut():
    gray = np.full((60, 80), 10, np.uint8)
    labels = np.zeros_like(gray)
    for x0 in (5, 20):                      # class 1: two separate rods
        labels[5:35, x0:x0 + 6] = 1
    labels[40:55, 40:70] = 2                # class 2: one blob where two copies are due
    gray[labels > 0] = 200
    gray[50:60, 0:10] = 30                  # background is the median, not this patch
    copies = expected_copies("46,XX")
    crops = frame_crops(gray, labels, copies)
    assert [c for c, _ in crops] == [1, 1]
    for _, crop in crops:
        assert crop.shape == (30 + 2 * MARGIN, 6 + 2 * MARGIN)
        assert crop[0, 0] == 10 and crop[MARGIN, MARGIN] == 200
