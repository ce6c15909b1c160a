"""Leave-one-source-out on a few real cells of two sources: each run leaves its source out of
training and is tested on it; the lab augmentation keeps crops in range and is reproducible."""
import json
import os

import pytest
import torch

from karyotrain import loso
from karyotrain.train import RUNS, lab_augment

DATA = os.environ.get("KARYOSCREEN_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))


def test_each_source_is_tested_by_a_model_that_never_saw_it():
    sources = [os.path.join(DATA, s) for s in ("pki3_gband", "bioimlab_qband")]
    for s in sources:
        if not os.path.isdir(s):
            pytest.fail(f"{s}: the shared data set is required for this test (set KARYOSCREEN_DATA)")
    name = "loso-test"
    loso.main(sum((["--data", s] for s in sources), []) + ["--name", name, "--jobs", "2", "--",
              "--epochs", "1", "--limit-cells", "2", "--device", "cpu", "--lab-augment"])
    out = json.load(open(os.path.join(RUNS, name, "loso.json")))
    assert set(out["test"]) == {"pki3_gband", "bioimlab_qband", loso.ALL}
    assert set(out["test"][loso.ALL]) == {"pki3_gband", "bioimlab_qband"}
    for left_out in ("pki3_gband", "bioimlab_qband"):
        assert list(out["test"][left_out]) == [left_out]
        fig = out["test"][left_out][left_out]
        assert fig["n"] > 0 and 0.0 <= fig["crop"] <= 1.0 and 0.0 <= fig["cell"] <= 1.0
        trained_on = json.load(open(os.path.join(RUNS, name, "without-" + left_out, "metrics.json")))["torch_float"]
        assert left_out not in trained_on and len(trained_on) == 1


def test_lab_augment_keeps_range_and_follows_its_generator():
    x = torch.zeros(4, 1, 64, 64)
    x[:, :, 8:56, 28:36] = 0.8
    a = lab_augment(x, torch.Generator().manual_seed(1))
    b = lab_augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, x, atol=1e-3)
    assert not torch.allclose(a[0], a[1], atol=1e-3), "each crop draws its own"


class _ReadsClassFromPixel(torch.nn.Module):
    """Identity logits: one-hot of the class written in each crop's first pixel."""
    homolog = None

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, size):
        identity = torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 24).float()
        return identity, torch.zeros(len(x), 5), torch.zeros(len(x), 1), torch.zeros(len(x), 1)


def test_by_group_scores_each_case_of_val_and_test_apart(tmp_path):
    import numpy as np
    # (path, group, split, label, read as)
    crops = [("a.png", "G1", "val", 3, 3), ("b.png", "G1", "val", 4, 5), ("c.png", "G2", "val", 7, 7),
             ("d.png", "G3", "test", 1, 1), ("e.png", "G3", "test", 2, 2), ("f.png", "G9", "train", 0, 9)]
    (tmp_path / "labels.csv").write_text("path,group_id\n" + "".join(f"{p},{g}\n" for p, g, *_ in crops))
    image = np.zeros((len(crops), 1, 4, 4), np.float32)
    image[:, 0, 0, 0] = [read for *_, read in crops]
    d = dict(image=image, size=np.zeros((len(crops), 2), np.float32), path=np.array([c[0] for c in crops]),
             split=np.array([c[2] for c in crops]), label=np.array([c[3] for c in crops]))
    out = loso.group_figures(_ReadsClassFromPixel(), d, str(tmp_path))
    assert out == {"val": {"G1": (2, 0.5), "G2": (1, 1.0)}, "test": {"G3": (2, 1.0)}}
