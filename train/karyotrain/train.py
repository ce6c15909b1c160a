"""Train the karyoscreen classifier, evaluate it, export int8 ONNX and write the model card.

python -m karyotrain.train --data /work/shared/data/pki3_gband --data /work/shared/data/bioimlab_qband \
    --out ../models --name karyoscreen --epochs 14 --seed 0
"""
import argparse
import json
import math
import os
import shlex
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import data as D
from . import metrics as Mx
from .model import DEFAULT_ARCH, KaryoNet, n_params

RUNS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runs")


def augment(x, s, g, rotate=15.0):
    """Random H and V flips, rotation +-`rotate` deg, scale 0.9-1.1, gamma/contrast, +-5% size noise."""
    n, dev = x.shape[0], x.device
    rand = lambda *shape: torch.rand(*shape, generator=g, device=dev)
    ang = (rand(n) * 2 - 1) * math.radians(rotate)
    sc = 0.9 + 0.2 * rand(n)
    fx = torch.where(rand(n) < 0.5, -1.0, 1.0)
    fy = torch.where(rand(n) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    zero = torch.zeros(n, device=dev)
    theta = torch.stack([torch.stack([cos * fx, -sin * fy, zero], 1),
                         torch.stack([sin * fx, cos * fy, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gamma = torch.exp((rand(n, 1, 1, 1) * 2 - 1) * 0.3)
    contrast = 0.8 + 0.4 * rand(n, 1, 1, 1)
    x = (x.clamp(0, 1) ** gamma * contrast).clamp(0, 1)
    s = s + torch.log1p((rand(*s.shape) * 2 - 1) * 0.05)
    return x, s


@torch.no_grad()
def predict(model, img, size, bs=512):
    model.eval()
    dev = next(model.parameters()).device
    out_i, out_s = [], []
    for i in range(0, len(img), bs):
        a, b = model(torch.from_numpy(img[i:i + bs]).to(dev), torch.from_numpy(size[i:i + bs]).to(dev))
        out_i.append(a.cpu().numpy()); out_s.append(b.cpu().numpy())
    return np.concatenate(out_i), np.concatenate(out_s)


def load(args):
    sets = []
    for p in args.data:
        d = D.load_set(p)
        if args.limit_cells:
            d = D.limit_cells(d, args.limit_cells, args.seed)
        sets.append(d)
    return sets


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True, help="set dir (labels.csv + images)")
    ap.add_argument("--out", default="models")
    ap.add_argument("--name", default="karyoscreen")
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--limit-cells", type=int, default=0, help="cells per split per set (smoke test)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", default=DEFAULT_ARCH, help="conv blocks: channels, s2 = stride 2")
    ap.add_argument("--rotate", type=float, default=15.0, help="augmentation rotation range, degrees")
    ap.add_argument("--repeat-small", type=int, default=1,
                    help="repeat sets under 5000 training crops this many times per epoch")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--init", help="start from this state dict (with --epochs 0: export only)")
    ap.add_argument("--no-export", action="store_true", help="stop after training and metrics")
    ap.add_argument("--init-trained-by", help="with --init: the command that trained that state (for the card)")
    args = ap.parse_args(argv)
    args.command = "python -m karyotrain.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run_dir = os.path.join(RUNS, args.name)
    os.makedirs(run_dir, exist_ok=True)
    t0 = time.time()

    sets = load(args)
    cat = lambda k, split: np.concatenate([d[k][d["split"] == split] for d in sets])
    repeats = lambda d: args.repeat_small if (d["split"] == "train").sum() < 5000 else 1
    train_part = lambda k: np.concatenate([np.repeat(d[k][d["split"] == "train"], repeats(d), 0) for d in sets])
    xtr, str_, ytr = train_part("image"), train_part("size"), train_part("label")
    xva, sva, yva = cat("image", "val"), cat("size", "val"), cat("label", "val")
    print(f"train {len(ytr)}  val {len(yva)}  ({time.time() - t0:.0f}s loading)")

    model = KaryoNet(args.arch)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu"))
    model.to(args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    steps = max(1, args.epochs) * math.ceil(len(ytr) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.25)
    g = torch.Generator(device=args.device).manual_seed(args.seed)
    Xtr, Str, Ytr = (torch.from_numpy(a).to(args.device) for a in (xtr, str_, ytr))
    hist, best = [], (-1.0, {k: v.clone() for k, v in model.state_dict().items()})
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(len(Ytr), generator=g, device=args.device)
        tl, tc, tn = 0.0, 0, 0
        bar = tqdm(range(0, len(perm), args.batch), desc=f"epoch {ep + 1}/{args.epochs}",
                   mininterval=5, file=sys.stdout)
        for i in bar:
            idx = perm[i:i + args.batch]
            x, s = augment(Xtr[idx], Str[idx], g, args.rotate)
            y = Ytr[idx]
            li, ls = model(x, s)
            # structure head placeholder: every training crop is "normal" (index 0)
            loss = F.cross_entropy(li, y, label_smoothing=0.05) + \
                0.1 * F.cross_entropy(ls, torch.zeros_like(y), label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step(); sched.step()
            tl += loss.item() * len(y); tc += (li.argmax(1) == y).sum().item(); tn += len(y)
            bar.set_postfix(loss=f"{tl / tn:.3f}", acc=f"{tc / tn:.3f}")
        # choose on val, each set weighing the same whatever its size
        lv, _ = predict(model, xva, sva)
        vloss = F.cross_entropy(torch.from_numpy(lv), torch.from_numpy(yva)).item()
        hit = lv.argmax(1) == yva
        owner = np.concatenate([np.full((d["split"] == "val").sum(), i) for i, d in enumerate(sets)])
        vacc = float(np.mean([hit[owner == i].mean() for i in range(len(sets))]))
        hist.append(dict(epoch=ep + 1, train_loss=tl / tn, train_acc=tc / tn, val_loss=vloss,
                         val_acc=vacc, time_s=time.time() - t0))
        print(f"epoch {ep + 1}: train loss {tl / tn:.4f} acc {tc / tn:.4f} | val loss {vloss:.4f} "
              f"acc {vacc:.4f} (mean over sets) | {time.time() - t0:.0f}s", flush=True)
        if vacc > best[0]:
            best = (vacc, {k: v.clone() for k, v in model.state_dict().items()})
            torch.save(best[1], os.path.join(run_dir, "best.pt"))
    model.load_state_dict(best[1])
    model.cpu().eval()

    # evaluation (torch float) per set and split, per crop and after the cell step
    results = {}
    for d in sets:
        results[str(d["name"])] = {}
        for split in ("val", "test"):
            m = d["split"] == split
            li, _ = predict(model, d["image"][m], d["size"][m])
            results[str(d["name"])][split] = Mx.evaluate(li, d["label"][m], d["cell"][m])
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(dict(history=hist, torch_float=results), f, indent=1)
    for n, r in results.items():
        for split, rr in r.items():
            print(f"{n} {split}: crop acc {rr['crop']['accuracy']:.4f}  cell acc {rr['cell']['accuracy']:.4f}")
    from .plots import plot_all
    plot_all(hist, results, run_dir)
    if args.no_export:
        return

    from .export import export_all
    export_all(model, sets, args, hist, run_dir, train_seconds=time.time() - t0)


if __name__ == "__main__":
    main()
