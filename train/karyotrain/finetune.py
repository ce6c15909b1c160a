"""Fine-tune the whole network on a few karyograms of a new lab (the deeper sibling of
`karyoscreen adapt`, which refits only the head on the board): start from a checkpoint that never
saw the lab, train on its first K train cells (one per group: distinct karyograms or cases), report
its val split (to choose the settings) or its test split, per crop and after the cell step (torch float).

    python -m karyotrain.finetune --init runs/loso-lab40/without-akshan/best.pt \
        --data runs/sets/akshan --cells 1 3 5 --arch 32s2,64s2,96,128s2,160
"""
import argparse
import csv
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from . import data as D
from . import metrics as Mx
from .model import DEFAULT_ARCH, KaryoNet
from .train import augment, identity_and_homolog, lab_augment


def cell_groups(set_dir):
    """cell_id -> group_id from the set's labels.csv (copies of one karyogram share a group)."""
    with open(os.path.join(set_dir, "labels.csv")) as f:
        return {r["cell_id"]: r.get("group_id") or r["cell_id"] for r in csv.DictReader(f)}


def first_cells(d, group_of, k):
    """The first k train cells by cell id, one per group."""
    groups, cells = set(), []
    train = d["split"] == "train"
    for cell in sorted(set(d["cell"][train])):
        group = group_of[cell]
        if group not in groups:
            groups.add(group)
            cells.append(cell)
    return cells[:k]


def finetune(state, arch, d, cells, epochs, lr, seed):
    """-> the model fine-tuned on the crops of `cells` (all layers, augmented as in training)."""
    torch.manual_seed(seed)
    model = KaryoNet(arch)
    model.load_state_dict(state)
    m = np.isin(d["cell"], cells)
    x, s, y = (torch.from_numpy(d[k][m]) for k in ("image", "size", "label"))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(64):
            xb, sb = augment(x[idx], s[idx], g)
            loss = F.cross_entropy(model(lab_augment(xb, g), sb)[0], y[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def figures(model, d, split):
    m = d["split"] == split
    logits, _ = identity_and_homolog(model, d["image"][m], d["size"][m])
    r = Mx.evaluate(logits, d["label"][m], d["cell"][m], per_class=False)
    return dict(n=int(m.sum()), crop=r["crop"]["accuracy"], cell=r["cell"]["accuracy"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", required=True, help="checkpoint (best.pt) of a model that never saw the set")
    ap.add_argument("--data", required=True, help="the new lab's set dir (labels.csv + crops)")
    ap.add_argument("--cells", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--arch", default=DEFAULT_ARCH)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", default="test", choices=["val", "test"],
                    help="the split reported: val to choose --epochs and --lr, test once chosen")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    d = D.load_set(args.data)
    state = torch.load(args.init, map_location="cpu")
    base = KaryoNet(args.arch)
    base.load_state_dict(state)
    rows = {0: figures(base.eval(), d, args.report)}
    group_of = cell_groups(args.data)
    for k in args.cells:
        cells = first_cells(d, group_of, k)
        rows[k] = figures(finetune(state, args.arch, d, cells, args.epochs, args.lr, args.seed), d, args.report)
        rows[k]["train_crops"] = int(np.isin(d["cell"], cells).sum())
    print(json.dumps(dict(init=args.init, data=os.path.basename(args.data.rstrip("/")), epochs=args.epochs,
                          lr=args.lr, split=args.report, figures=rows)))
    for k, r in rows.items():
        print(f"{k} cells: {args.report} per crop {100 * r['crop']:.1f} %, after the cell step {100 * r['cell']:.1f} %")


if __name__ == "__main__":
    main()
