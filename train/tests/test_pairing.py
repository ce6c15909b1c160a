"""The homolog pairing: its training term, whole-cell batches, and the cell step's swap search."""
import numpy as np
import torch

from karyotrain.metrics import assign_cell, pair_swaps
from karyotrain.train import cell_batches, homolog_loss, train_cell_keys


def crossed_pair_cell():
    """A normal cell (class c on crops 2c, 2c+1) whose homolog vectors put each pair together,
    with crop 1 (a 1) and crop 2 (a 2) each a little likelier to be the other one."""
    truth = np.array([c for c in range(22) for _ in range(2)] + [22, 22])
    logp = np.full((46, 24), np.log(0.1 / 23))
    logp[np.arange(46), truth] = np.log(0.9)
    logp[1, :2], logp[2, :2] = np.log([0.40, 0.45]), np.log([0.45, 0.40])
    homolog = np.eye(24)[truth].astype(np.float32)
    return truth, logp, homolog


def test_homolog_vectors_untangle_a_crossed_pair():
    truth, logp, homolog = crossed_pair_cell()
    slots = assign_cell(logp)
    assert list(slots[:4]) == [0, 1, 0, 1]                 # the slots follow the likelihood
    assert (pair_swaps(logp, homolog, slots, 1.0) == truth).all()
    # a pairing term too weak to pay for the likelihood it costs leaves the slots' answer
    assert (pair_swaps(logp, homolog, slots, 0.05) == slots).all()


def test_swaps_keep_every_count():
    rng = np.random.default_rng(0)
    logp = np.log(rng.dirichlet(np.ones(24) * 0.3, 47))
    homolog = rng.normal(size=(47, 8)).astype(np.float32)
    homolog /= np.linalg.norm(homolog, axis=1, keepdims=True)
    slots = assign_cell(logp)
    paired = pair_swaps(logp, homolog, slots, 4.0)
    assert (paired != slots).any()
    assert (np.bincount(paired, minlength=24) == np.bincount(slots, minlength=24)).all()


def test_homolog_loss_rewards_vectors_that_find_their_homolog():
    y = torch.tensor([0, 0, 1, 1, 2, 0, 0, 1])
    cell = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])          # class 2 and cell 1's 1 have no pair
    axis = torch.eye(8)
    good = axis[y + 3 * cell]                               # each pair on its own axis
    bad = axis[torch.arange(8)]                             # every crop alone
    assert homolog_loss(good, y, cell, 0.1) < 1e-3
    assert homolog_loss(bad, y, cell, 0.1) > 1.0
    # crops of another cell are not candidates: the same vectors across cells cost nothing
    assert homolog_loss(axis[y], y, cell, 0.1) < 1e-3


def test_cell_batches_keep_cells_together():
    sets = [dict(split=np.array(["train"] * 6 + ["val"]), cell=np.array([5, 5, 9, 9, 9, 5, 1])),
            dict(split=np.array(["train"] * 4), cell=np.array([3, 3, 4, 4]))]
    keys = train_cell_keys(sets, lambda d: 2 if len(d["cell"]) == 4 else 1)
    # set 0: cells 5 and 9; set 1 repeated twice in a row per crop: four cells of two crops
    assert list(keys) == [0, 0, 1, 1, 1, 0, 2, 3, 2, 3, 4, 5, 4, 5]
    batches = cell_batches(keys, 4, np.random.default_rng(0))
    order = np.concatenate(batches)
    assert sorted(order) == list(range(14)) and all(len(b) == 4 for b in batches[:-1])
    runs = np.flatnonzero(np.diff(keys[order]) != 0) + 1    # cells are contiguous in the order
    assert len(runs) == len(np.unique(keys)) - 1
