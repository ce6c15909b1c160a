"""The cell step: capacity slots plus one extra slot per class at +4 nats."""
import numpy as np

from karyotrain.metrics import assign_cell, classification_report


def cell_logp(labels, p_true=0.9):
    lp = np.full((len(labels), 24), np.log((1 - p_true) / 23))
    lp[np.arange(len(labels)), labels] = np.log(p_true)
    return lp


def test_normal_cell_is_kept():
    y = np.array([c for c in range(22) for _ in range(2)] + [22, 23])
    assert (assign_cell(cell_logp(y)) == y).all()


def test_swaps_a_weak_third_copy():
    y = np.array([0, 0, 1, 1])
    lp = cell_logp(np.array([0, 0, 0, 1]), 0.6)     # crop 2 looks a bit like 1 but is a 1
    lp[2, 1] = np.log(0.35)
    assert (assign_cell(lp) == y).all()              # cheaper than the +4 nat third slot of 0


def test_strong_trisomy_survives():
    y = np.array([20, 20, 20, 0, 0])                  # trisomy 21
    assert (assign_cell(cell_logp(y, 0.999)) == y).all()


def test_report():
    r = classification_report(np.array([0, 1, 1]), np.array([0, 1, 0]))
    assert abs(r["accuracy"] - 2 / 3) < 1e-12 and r["per_class"]["2"]["recall"] == 0.5  # index 1 is chromosome 2
