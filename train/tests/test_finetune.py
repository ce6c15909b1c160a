import numpy as np
import torch

from karyotrain.finetune import finetune, first_cells
from karyotrain.model import KaryoNet


def test_first_cells_takes_one_cell_per_group_from_train_only():
    d = dict(cell=np.array(["a1", "a2", "b1", "c1", "v1"]), split=np.array(["train"] * 4 + ["val"]))
    group_of = {"a1": "a", "a2": "a", "b1": "b", "c1": "c", "v1": "v"}
    assert first_cells(d, group_of, 2) == ["a1", "b1"]
    assert first_cells(d, group_of, 9) == ["a1", "b1", "c1"]


def test_finetune_fits_the_labs_crops_and_leaves_the_start_untouched():
    n, arch = 48, "8s2,16s2"
    label = np.arange(n) % 4
    image = np.zeros((n, 1, 64, 64), np.float32)
    for i, c in enumerate(label):                  # a rod whose length says its class, as does its size
        image[i, 0, 30 - 6 * (c + 1):30 + 6 * (c + 1), 29:35] = 0.8
    size = np.stack([label, -label], 1).astype(np.float32)
    d = dict(image=image, size=size, label=label, cell=np.array(["c0"] * n))
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in KaryoNet(arch).state_dict().items()}
    hits = lambda m: (m(torch.from_numpy(d["image"]), torch.from_numpy(d["size"]))[0].argmax(1).numpy()
                      == d["label"]).mean()
    start = KaryoNet(arch)
    start.load_state_dict(state)
    kept = {k: v.clone() for k, v in state.items()}
    tuned = finetune(state, arch, d, ["c0"], epochs=100, lr=1e-2, seed=0)
    assert hits(tuned) > hits(start.eval()) + 0.3
    assert all(torch.equal(v, kept[k]) for k, v in state.items()), "the starting state was changed"
