import numpy as np

from karyotrain.areas import relative_areas


def test_each_chromosome_is_measured_against_the_frames_median():
    labels = np.zeros((20, 40), np.uint8)
    labels[1:3, 1:6] = 21   # 10 pixels
    labels[5:9, 1:11] = 1   # 40
    labels[12:16, 1:6] = 7  # 20
    labels[12:16, 20:25] = 7  # 20, a second component of class 7
    shares = sorted(relative_areas(labels))
    assert shares == [(1, 2.0), (7, 1.0), (7, 1.0), (21, 0.5)]
