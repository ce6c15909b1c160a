"""Train the karyoscreen classifier, evaluate it, export int8 ONNX and write the model card.

python -m karyotrain.train --data ../shared/data/pki3_gband --data ../shared/data/bioimlab_qband \
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


def lab_augment(x, g):
    """What differs between labs after preprocessing, on a batch of preprocessed crops: width
    (chromatid separation, spreading) x0.8-1.25 across the long axis, blur (optics, banding
    resolution) sigma 0-1.5 px, band contrast (gamma x/÷1.6, contrast 0.7-1.1) and sensor noise
    (sigma 0-0.04). Each crop draws its own."""
    n, dev = x.shape[0], x.device
    rand = lambda *shape: torch.rand(*shape, generator=g, device=dev)
    widen = 0.8 + 0.45 * rand(n)
    zero, one = torch.zeros(n, device=dev), torch.ones(n, device=dev)
    theta = torch.stack([torch.stack([1 / widen, zero, zero], 1), torch.stack([zero, one, zero], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False),
                      mode="bilinear", padding_mode="zeros", align_corners=False)
    sigma = 1.5 * rand(n, 1)
    taps = torch.arange(-3, 4, device=dev, dtype=x.dtype)
    k = torch.exp(-taps ** 2 / (2 * sigma.clamp(min=1e-3) ** 2))
    k = (k / k.sum(1, keepdim=True))[:, None, None, :]            # [n,1,1,7], one kernel per crop
    rows = F.conv2d(x.transpose(0, 1), k, padding=(0, 3), groups=n)
    x = F.conv2d(rows, k.transpose(2, 3), padding=(3, 0), groups=n).transpose(0, 1)
    gamma = torch.exp((rand(n, 1, 1, 1) * 2 - 1) * 0.47)
    contrast = 0.7 + 0.4 * rand(n, 1, 1, 1)
    x = x.clamp(0, 1) ** gamma * contrast
    return (x + 0.04 * rand(n, 1, 1, 1) * torch.randn(x.shape, generator=g, device=dev)).clamp(0, 1)


def distill_loss(student_logits, teacher_logits, temperature):
    """Hinton's distillation term: KL from the teachers' mean softened distribution to the
    student's, times T² so its gradient scale does not depend on T."""
    t = torch.stack([torch.softmax(l / temperature, 1) for l in teacher_logits]).mean(0)
    return F.kl_div(torch.log_softmax(student_logits / temperature, 1), t,
                    reduction="batchmean") * temperature ** 2


def homolog_loss(homolog, y, group, temperature):
    """InfoNCE within each cell: every crop whose class has exactly one other crop in its cell
    must pick that homolog, by cosine / temperature, among all the other crops of the cell."""
    same_cell = group[:, None] == group[None, :]
    self_pair = torch.eye(len(y), dtype=torch.bool, device=y.device)
    homolog_pair = same_cell & (y[:, None] == y[None, :]) & ~self_pair
    has_one = homolog_pair.sum(1) == 1
    if not has_one.any():
        return homolog.sum() * 0.0
    sim = (homolog @ homolog.T / temperature).masked_fill(~same_cell | self_pair, -1e9)
    return F.cross_entropy(sim[has_one], homolog_pair[has_one].float().argmax(1))


def train_cell_keys(sets, repeats):
    """One key per training crop (in train_part's order) naming its cell; each repeat of a small
    set's cell counts as a cell of its own."""
    keys, offset = [], 0
    for d in sets:
        _, cell = np.unique(d["cell"][d["split"] == "train"], return_inverse=True)
        r = repeats(d)
        # np.repeat copies each crop r times in a row: copy k of every crop makes cell copy k
        keys.append(offset + np.repeat(cell * r, r) + np.tile(np.arange(r), len(cell)))
        offset += r * (int(cell.max()) + 1)
    return np.concatenate(keys)


def cell_batches(keys, batch, rng):
    """Crops cell by cell, cells in random order, cut into batches of `batch` -> index arrays.
    The homolog term compares crops within a cell, so a batch holds cells, not scattered crops;
    a cell cut at a batch's edge only loses the pairs that straddle it. Equal batch sizes: three
    whole cells per batch (a new shape each step) trained about 1.3x slower per crop."""
    members = np.argsort(keys, kind="stable")
    starts = np.searchsorted(keys[members], np.arange(keys.max() + 2))
    order = np.concatenate([members[starts[c]:starts[c + 1]] for c in rng.permutation(int(keys.max()) + 1)])
    return [order[i:i + batch] for i in range(0, len(order), batch)]


def load_teacher(spec):
    """`CHECKPOINT:ARCH` -> a frozen KaryoNet in eval mode."""
    path, _, arch = spec.rpartition(":")
    if not path:
        raise SystemExit(f"--teacher {spec!r}: expected CHECKPOINT:ARCH")
    m = KaryoNet(arch)
    m.load_state_dict(torch.load(path, map_location="cpu"))
    return m.eval().requires_grad_(False)


@torch.no_grad()
def predict(model, img, size, bs=512, all_outputs=False):
    """-> (identity, structure) logits, or all outputs (model.OUTPUTS order) with all_outputs."""
    model.eval()
    dev = next(model.parameters()).device
    outs = [[] for _ in range(5 if model.homolog is not None else 4)]
    for i in range(0, len(img), bs):
        r = model(torch.from_numpy(img[i:i + bs]).to(dev), torch.from_numpy(size[i:i + bs]).to(dev))
        for o, v in zip(outs, r):
            o.append(v.cpu().numpy())
    outs = [np.concatenate(o) if o else np.zeros((0,)) for o in outs]
    return outs if all_outputs else outs[:2]


def identity_and_homolog(model, img, size):
    """-> identity logits and homolog vectors (None when the model has no homolog head)."""
    outs = predict(model, img, size, all_outputs=True)
    return outs[0], outs[4] if len(outs) > 4 else None


def synth_eval(pred_fn, sets, synth, split, threshold=None, fpr=0.005):
    """Structure metrics (SYNTHETIC) per set and pooled; the threshold (if None) is chosen here so
    that at most `fpr` of the real normal crops of this split (all sets) are flagged.
    pred_fn(img, size) -> (identity, structure, arm, position)."""
    normals, syns = [], []
    for d, sy in zip(sets, synth):
        m = d["split"] == split
        normals.append(pred_fn(d["image"][m], d["size"][m])[1])
        s = sy[split]
        o = pred_fn(s["image"], s["size"])
        syns.append(dict(structure_logits=o[1], arm_logits=o[2], position_pred=o[3],
                         structure=s["structure"], subtype=s["subtype"], arm=s["arm"],
                         position=s["position"]))
    if threshold is None:
        threshold = Mx.threshold_for_fpr(Mx.abnormal_score(np.concatenate(normals)), fpr)
    out = {str(d["name"]): Mx.structure_report(n, sy, threshold) for d, n, sy in zip(sets, normals, syns)}
    pooled = {k: np.concatenate([sy[k] for sy in syns]) for k in syns[0]}
    out["all"] = Mx.structure_report(np.concatenate(normals), pooled, threshold)
    return threshold, out


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
    ap.add_argument("--lab-augment", action="store_true",
                    help="also augment what differs between labs (lab_augment: width, blur, band contrast, noise)")
    ap.add_argument("--repeat-small", type=int, default=1,
                    help="repeat sets under 5000 training crops this many times per epoch")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--init", help="start from this state dict (with --epochs 0: export only)")
    ap.add_argument("--no-export", action="store_true", help="stop after training and metrics")
    ap.add_argument("--init-trained-by", help="with --init: the command that trained that state (for the card)")
    ap.add_argument("--synth-events", type=int, default=0,
                    help="structure head: SYNTHETIC abnormal events per train cell (x --repeat-small for "
                         "small sets); 0 = placeholder head trained on normal crops only")
    ap.add_argument("--synth-controls", type=int, default=6,
                    help="straightened but unedited crops per train cell (labelled normal)")
    ap.add_argument("--synth-eval-events", type=int, default=16, help="events per val/test cell")
    ap.add_argument("--synth-seed", type=int, default=0)
    ap.add_argument("--normal-frac", type=float, default=1.0,
                    help="fraction of the normal train crops drawn each epoch (all synthetic ones are)")
    ap.add_argument("--structure-weight", type=float, default=1.0)
    ap.add_argument("--fpr", type=float, default=0.005,
                    help="structure threshold: at most this fraction of real normal val crops flagged")
    ap.add_argument("--teacher", action="append", default=[],
                    help="distil identity from this CHECKPOINT:ARCH (repeat for an ensemble; the "
                         "teachers see the same augmented batch)")
    ap.add_argument("--distill-weight", type=float, default=1.0)
    ap.add_argument("--distill-temperature", type=float, default=2.0)
    ap.add_argument("--pair-dim", type=int, default=0,
                    help="add a homolog head of this size, trained within cells (crops batched "
                         "cell by cell); the cell step then pairs homologs by it")
    ap.add_argument("--pair-loss-weight", type=float, default=1.0)
    ap.add_argument("--pair-temperature", type=float, default=0.1)
    ap.add_argument("--homolog-weight", type=float, default=1.0,
                    help="cell step: nats per unit of (1 - cosine) between the two crops of a class")
    args = ap.parse_args(argv)
    if args.pair_dim and (args.synth_events or args.normal_frac < 1.0):
        ap.error("--pair-dim batches whole cells: it cannot be combined with --synth-events or --normal-frac")
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
    cell_key = train_cell_keys(sets, repeats)
    xva, sva, yva = cat("image", "val"), cat("size", "val"), cat("label", "val")
    n_normal = len(ytr)
    zs = np.zeros(n_normal, np.int64)
    ystr, yarm, ypos = zs, zs - 1, np.full(n_normal, -1.0, np.float32)
    synth = []
    if args.synth_events:
        from . import structural as St
        synth = St.pools(sets, args.data, args.synth_events, args.synth_controls,
                         args.synth_eval_events, seed=args.synth_seed, repeats=repeats)
        tr = [e["train"] for e in synth]
        xtr = np.concatenate([xtr] + [e["image"] for e in tr])
        str_ = np.concatenate([str_] + [e["size"] for e in tr])
        ytr = np.concatenate([ytr] + [e["label"] for e in tr])
        ystr = np.concatenate([ystr] + [e["structure"] for e in tr])
        yarm = np.concatenate([yarm] + [e["arm"] for e in tr])
        ypos = np.concatenate([ypos] + [e["position"] for e in tr])
    print(f"train {len(ytr)}  val {len(yva)}  ({time.time() - t0:.0f}s loading)")

    model = KaryoNet(args.arch, pair_dim=args.pair_dim)
    if args.init:
        missing, unexpected = model.load_state_dict(torch.load(args.init, map_location="cpu"), strict=False)
        assert not unexpected and all(k.split(".")[0] in ("arm", "position", "homolog") for k in missing), \
            (missing, unexpected)
    model.to(args.device)
    teachers = [load_teacher(t).to(args.device) for t in args.teacher]
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    n_epoch = int(round(n_normal * args.normal_frac)) + len(ytr) - n_normal
    steps = max(8, max(1, args.epochs) * math.ceil(n_epoch / args.batch))  # OneCycleLR needs a few
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.25)
    g = torch.Generator(device=args.device).manual_seed(args.seed)
    Xtr, Str, Ytr, Key = (torch.from_numpy(a).to(args.device) for a in (xtr, str_, ytr, cell_key))
    Ystr, Yarm, Ypos = (torch.from_numpy(a).to(args.device) for a in (ystr, yarm, ypos))
    owner = np.concatenate([np.full((d["split"] == "val").sum(), i) for i, d in enumerate(sets)])
    vmask = lambda d: d["split"] == "val"

    def val_identity(m):
        """(crop accuracy, cell-step accuracy) on val, each set weighing the same."""
        lv, hv = identity_and_homolog(m, xva, sva)
        hit = lv.argmax(1) == yva
        crop = float(np.mean([hit[owner == i].mean() for i in range(len(sets))]))
        cell = float(np.mean([Mx.evaluate(lv[owner == i], yva[owner == i], d["cell"][vmask(d)],
                                          per_class=False, homolog=None if hv is None else hv[owner == i],
                                          homolog_weight=args.homolog_weight)["cell"]["accuracy"]
                              for i, d in enumerate(sets)]))
        return lv, crop, cell

    base = None
    if args.init and args.synth_events and args.epochs:
        _, bc, bcell = val_identity(model)
        base = dict(crop=bc, cell=bcell)
        print(f"init: val identity crop {bc:.4f} cell {bcell:.4f} (mean over sets): the floor", flush=True)
    hist, best = [], (-1e9, {k: v.clone() for k, v in model.state_dict().items()})
    best_epoch = None
    for ep in range(args.epochs):
        model.train()
        if args.normal_frac < 1.0:
            keep = torch.randperm(n_normal, generator=g, device=args.device)[:int(round(n_normal * args.normal_frac))]
            idx_all = torch.cat([keep, torch.arange(n_normal, len(Ytr), device=args.device)])
            perm = idx_all[torch.randperm(len(idx_all), generator=g, device=args.device)]
        else:
            perm = torch.randperm(len(Ytr), generator=g, device=args.device)
        if args.pair_dim:   # (`perm` above stays drawn: the documented runs' random stream)
            batches = [torch.from_numpy(b).to(args.device)
                       for b in cell_batches(cell_key, args.batch, np.random.default_rng([args.seed, ep]))]
        else:
            batches = [perm[i:i + args.batch] for i in range(0, len(perm), args.batch)]
        tl, tc, tn = 0.0, 0, 0
        bar = tqdm(batches, desc=f"epoch {ep + 1}/{args.epochs}", mininterval=5, file=sys.stdout)
        for idx in bar:
            x, s = augment(Xtr[idx], Str[idx], g, args.rotate)
            if args.lab_augment:
                x = lab_augment(x, g)
            y = Ytr[idx]
            li, ls, la, lp, *homolog = model(x, s)
            if args.synth_events:
                ys, ya, yp = Ystr[idx], Yarm[idx], Ypos[idx]
                ab = ys > 0
                loss = F.cross_entropy(li, y, label_smoothing=0.05) + \
                    args.structure_weight * F.cross_entropy(ls, ys, label_smoothing=0.02)
                if ab.any():
                    loss = loss + 0.5 * F.cross_entropy(la[ab], ya[ab]) + \
                        2.0 * F.l1_loss(lp[ab, 0], yp[ab])
            else:
                # structure head placeholder: every training crop is "normal" (index 0)
                loss = F.cross_entropy(li, y, label_smoothing=0.05) + \
                    0.1 * F.cross_entropy(ls, torch.zeros_like(y), label_smoothing=0.05)
            if args.pair_dim:
                loss = loss + args.pair_loss_weight * homolog_loss(homolog[0], y, Key[idx], args.pair_temperature)
            if teachers:
                with torch.no_grad():
                    teacher_logits = [t(x, s)[0] for t in teachers]
                loss = loss + args.distill_weight * distill_loss(li, teacher_logits,
                                                                 args.distill_temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step(); sched.step()
            tl += loss.item() * len(y); tc += (li.argmax(1) == y).sum().item(); tn += len(y)
            bar.set_postfix(loss=f"{tl / tn:.3f}", acc=f"{tc / tn:.3f}")
        # choose on val, each set weighing the same whatever its size
        lv, vacc, vcell = val_identity(model)
        vloss = F.cross_entropy(torch.from_numpy(lv), torch.from_numpy(yva)).item()
        h = dict(epoch=ep + 1, train_loss=tl / tn, train_acc=tc / tn, val_loss=vloss,
                 val_acc=vacc, val_cell_acc=vcell, time_s=time.time() - t0)
        # a homolog head acts only through the cell step: choose those runs by it
        score = vcell if args.pair_dim else vacc
        if args.synth_events:
            pf = lambda a, b: predict(model, a, b, all_outputs=True)
            _, sr = synth_eval(pf, sets, synth, "val", fpr=args.fpr)
            h["val_synthetic_auroc"] = sr["all"]["auroc"]
            # the structure head is chosen by AUROC among epochs whose identity is no worse than
            # the initial state's on val (crop and cell step); otherwise by identity
            ok = base is None or (vacc >= base["crop"] and vcell >= base["cell"])
            score = (1.0 + sr["all"]["auroc"]) if ok else vacc - 1.0
            h["eligible"] = bool(ok)
        hist.append(h)
        print(f"epoch {ep + 1}: train loss {tl / tn:.4f} acc {tc / tn:.4f} | val loss {vloss:.4f} "
              f"acc {vacc:.4f} cell {vcell:.4f} (mean over sets)"
              + (f" | SYNTHETIC val AUROC {h['val_synthetic_auroc']:.4f} eligible {h['eligible']}"
                 if args.synth_events else "") + f" | {time.time() - t0:.0f}s", flush=True)
        if score > best[0]:
            best = (score, {k: v.clone() for k, v in model.state_dict().items()})
            best_epoch = ep + 1
            torch.save(best[1], os.path.join(run_dir, "best.pt"))
    model.load_state_dict(best[1])
    model.cpu().eval()

    # evaluation (torch float) per set and split, per crop and after the cell step
    results = {}
    for d in sets:
        results[str(d["name"])] = {}
        for split in ("val", "test"):
            m = d["split"] == split
            li, hi = identity_and_homolog(model, d["image"][m], d["size"][m])
            results[str(d["name"])][split] = Mx.evaluate(li, d["label"][m], d["cell"][m], homolog=hi,
                                                         homolog_weight=args.homolog_weight)
    structure = None
    if args.synth_events:
        pf = lambda a, b: predict(model, a, b, all_outputs=True)
        thr, sval = synth_eval(pf, sets, synth, "val", fpr=args.fpr)
        _, stest = synth_eval(pf, sets, synth, "test", threshold=thr)
        structure = dict(threshold=thr, synth=synth, torch_float=dict(val=sval, test=stest),
                         best_epoch=best_epoch,
                         init_val_identity=base)
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(dict(history=hist, torch_float=results,
                       synthetic=structure and dict(note="SYNTHETIC structural abnormalities",
                                                    structure_threshold=structure["threshold"],
                                                    init_val_identity=base, best_epoch=best_epoch,
                                                    torch_float=structure["torch_float"])), f, indent=1)
    for n, r in results.items():
        for split, rr in r.items():
            print(f"{n} {split}: crop acc {rr['crop']['accuracy']:.4f}  cell acc {rr['cell']['accuracy']:.4f}")
    if structure:
        for split in ("val", "test"):
            for n, r in structure["torch_float"][split].items():
                print(f"SYNTHETIC {n} {split}: AUROC {r['auroc']:.4f} normal flagged {r['normal_flagged_rate']:.4f} "
                      f"arm acc {r['arm_accuracy']:.3f} pos MAE {r['position_mae']:.3f} recall "
                      + " ".join(f"{k} {v['recall']:.3f}" for k, v in r["per_type"].items()))
    from .plots import plot_all
    plot_all(hist, results, run_dir)
    if args.no_export:
        return

    from .export import export_all
    export_all(model, sets, args, run_dir, best_epoch, train_seconds=time.time() - t0, structure=structure)


if __name__ == "__main__":
    main()
