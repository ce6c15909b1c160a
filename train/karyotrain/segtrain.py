"""The learned segmenter: a small U-Net from a frame to three maps at stride 2 (chromosome, core,
overlap), trained on composed spreads (karyotrain.spreads) and the real DAPI frames' class maps
(train split), chosen on the val split, exported to ONNX with its card.

    python -m karyotrain.segtrain --data ../shared/data --minutes 40 --out models/segmenter.onnx

The card follows docs/segmentation.md; sign the bundle with `karyoscreen model sign`.
"""
import argparse
import csv
import datetime
import hashlib
import json
import os
import time
from multiprocessing import Pool

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from . import spreads as S
from .data import load_gray
from .segprep import CHANNELS, PREPROCESSING, STRIDE, frame_to_input, normalise, oriented

SPEC = "karyoscreen-seg-v1"
PATCH = 256
OPSET = 13
# The device's instance cutting (docs/segmentation.md), chosen on the val frames with
# `karyoscreen eval-frames`: core_logit.light_on_dark -1..2 x min_core_pixels 4..20 x
# min_object_pixels 30..80 on frames_bioimlab_q and frames_adir_dapi; dark_on_light -2, the highest
# value at which the network breaks no more isolated G-band chromosomes (composed val frames) than
# the one before it (docs/segmentation.md).
INSTANCES = dict(min_core_pixels=8, min_object_pixels=50, core_logit=dict(light_on_dark=1.0, dark_on_light=-2.0))


def conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SegNet(nn.Module):
    """Encoder at strides 2, 4, 8, 16; decoder back to stride 2 by transposed convolutions whose
    output is added to the encoder's (cheaper than concatenation on a board's CPU)."""

    def __init__(self, widths=(16, 24, 40, 64)):
        super().__init__()
        a, b, c, d = widths
        self.e1 = nn.Sequential(conv(1, a, 2), conv(a, a))
        self.e2 = nn.Sequential(conv(a, b, 2), conv(b, b))
        self.e3 = nn.Sequential(conv(b, c, 2), conv(c, c))
        self.e4 = nn.Sequential(conv(c, d, 2), conv(d, d))
        self.u3, self.d3 = nn.ConvTranspose2d(d, c, 2, 2), conv(c, c)
        self.u2, self.d2 = nn.ConvTranspose2d(c, b, 2, 2), conv(b, b)
        self.u1, self.d1 = nn.ConvTranspose2d(b, a, 2, 2), conv(a, a)
        self.head = nn.Conv2d(a, len(CHANNELS), 1)

    def forward(self, x):
        x1 = self.e1(x)
        x2 = self.e2(x1)
        x3 = self.e3(x2)
        x4 = self.e4(x3)
        y = self.d3(self.u3(x4) + x3)
        y = self.d2(self.u2(y) + x2)
        y = self.d1(self.u1(y) + x1)
        return self.head(y)


def load_onnx_weights(model, path):
    """Start from an exported SegNet: its convolutions hold the batch norms folded in, so each
    norm becomes the identity (scale 1, mean 0, variance 1 - eps) with the folded bias."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(path).graph
    values = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    folded = [n for n in graph.node if n.op_type == "Conv" and not n.input[1].startswith("head")]
    blocks = [b for part in (model.e1, model.e2, model.e3, model.e4) for b in part] + [model.d3, model.d2, model.d1]
    assert len(folded) == len(blocks), f"{path}: not a SegNet of these widths"
    with torch.no_grad():
        for node, (conv, norm, _) in zip(folded, blocks):
            conv.weight.copy_(values[node.input[1]])
            norm.weight.fill_(1.0)
            norm.bias.copy_(values[node.input[2]])
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)
        for name in ("u3", "u2", "u1", "head"):
            getattr(model, name).weight.copy_(values[name + ".weight"])
            getattr(model, name).bias.copy_(values[name + ".bias"])


# ---- data ---------------------------------------------------------------------------------

def frames_rows(data, folder, split):
    with open(os.path.join(data, folder, "frames.csv")) as f:
        return [r for r in csv.DictReader(f) if r["split"] == split]


def expected_copies(karyotype):
    """Copies of each class (1-24) in an ISCN string's count and sex and its whole gains and
    losses (+21, -7); structural rearrangements are not read."""
    fields = karyotype.replace(" ", "").split(",")
    copies = {c: 2 for c in range(1, 23)}
    sex = fields[1] if len(fields) > 1 else ""
    copies[23], copies[24] = sex.count("X"), sex.count("Y")
    for f in fields[2:]:
        name = f[1:]
        c = {"X": 23, "Y": 24}.get(name, int(name) if name.isdigit() and 1 <= int(name) <= 22 else None)
        if f[:1] in "+-" and c is not None:
            copies[c] += 1 if f[0] == "+" else -1
    return copies


def dapi_sample(args):
    """A real DAPI frame and the targets of its class map, at the segmenter's scale, with a fourth
    channel weighting the core target: 0 on a class's components when the class has fewer of
    them than the karyotype has copies. Such a component is touching homologs that the class map
    cannot tell apart, and its single core would teach the network to join them."""
    data, row = args
    gray = load_gray(os.path.join(data, "frames_adir_dapi", row["image"]))
    stem = os.path.splitext(os.path.basename(row["image"]))[0]
    labels = np.asarray(Image.open(os.path.join(data, "frames_adir_dapi", "labelmaps", stem + ".png")))
    v, k = oriented(gray)
    assert k == 1, "DAPI frames are below max_side"
    found = S.labelmap_class_instances(labels)
    t = S.targets_from_masks([(y, x, m) for _, y, x, m in found], v.shape)
    copies = expected_copies(row["karyotype"])
    joined = np.zeros(v.shape, bool)
    for c, y, x, m in found:
        if sum(1 for f in found if f[0] == c) < copies.get(c, 2):
            joined[y:y + m.shape[0], x:x + m.shape[1]] |= m
    hs, ws = t.shape[1:]
    cells = joined[:hs * STRIDE, :ws * STRIDE].reshape(hs, STRIDE, ws, STRIDE).any(axis=(1, 3))
    weight = ~ndimage.binary_dilation(cells, structure=np.ones((3, 3)))
    return normalise(v), np.concatenate([t, weight[None].astype(np.uint8)])


def synthetic_sample(args):
    set_dir, seed, pieces_limit = args
    rng = np.random.default_rng(seed)
    pieces = _PIECES.setdefault(set_dir, S.load_pieces(set_dir, "train", pieces_limit, 0))
    frame, masks, _ = S.spread(pieces, rng)
    v, k = oriented(frame)
    t = S.targets_from_masks(masks, v.shape)
    return normalise(v), np.concatenate([t, np.ones_like(t[:1])])


_PIECES = {}


def random_patch(x, t, rng):
    """A PATCH² window (zero-padded where the frame is smaller) and its targets, flipped/rotated."""
    h, w = x.shape
    y0 = int(rng.integers(0, max(1, h - PATCH + 1))) // STRIDE * STRIDE
    x0 = int(rng.integers(0, max(1, w - PATCH + 1))) // STRIDE * STRIDE
    px = np.zeros((PATCH, PATCH), np.float32)
    pt = np.zeros((t.shape[0], PATCH // STRIDE, PATCH // STRIDE), np.float32)
    win = x[y0:y0 + PATCH, x0:x0 + PATCH]
    px[:win.shape[0], :win.shape[1]] = win
    tw = t[:, y0 // STRIDE:(y0 + PATCH) // STRIDE, x0 // STRIDE:(x0 + PATCH) // STRIDE]
    pt[:, :tw.shape[1], :tw.shape[2]] = tw
    r = int(rng.integers(4))
    px, pt = np.rot90(px, r), np.rot90(pt, r, axes=(1, 2))
    if rng.random() < 0.5:
        px, pt = px[:, ::-1], pt[:, :, ::-1]
    return np.ascontiguousarray(px), np.ascontiguousarray(pt)


# ---- evaluation ---------------------------------------------------------------------------

def predict(model, gray):
    x, (w, h, k) = frame_to_input(gray)
    with torch.no_grad():
        maps = model(torch.from_numpy(x))[0].numpy()
    return maps[:, :-(-h // STRIDE), :-(-w // STRIDE)]


def count_markers(maps, min_core=INSTANCES["min_core_pixels"], core_logit=INSTANCES["core_logit"]["light_on_dark"]):
    """Objects as the device counts them on a fluorescent frame (all the real val frames are),
    roughly: core components (crossings not paired)."""
    fg = maps[0] > 0
    core = fg & (maps[1] > core_logit) & ~(maps[2] > 0)
    lab, n = ndimage.label(core, structure=np.ones((3, 3)))
    if n == 0:
        return 0
    sizes = ndimage.sum(core, lab, range(1, n + 1))
    return int((sizes >= min_core).sum())


def evaluate(model, data, split):
    """Count error on real frames of `split` (bioimlab Q with count >= 40, DAPI) and DAPI
    foreground IoU; -> dict."""
    model.eval()
    out = {}
    for folder in ("frames_bioimlab_q", "frames_adir_dapi"):
        errors, ious = [], []
        for r in frames_rows(data, folder, split):
            if int(r["count"]) < 40:
                continue
            gray = load_gray(os.path.join(data, folder, r["image"]))
            maps = predict(model, gray)
            errors.append(count_markers(maps) - int(r["count"]))
            if folder == "frames_adir_dapi":
                x, t = dapi_sample((data, r))
                fg, truth = maps[0][:t.shape[1], :t.shape[2]] > 0, t[0][:maps.shape[1], :maps.shape[2]] > 0
                ious.append((fg & truth).sum() / max(1, (fg | truth).sum()))
        e = np.abs(np.array(errors))
        out[folder] = dict(frames=len(errors), exact=float(np.mean(e == 0)), within2=float(np.mean(e <= 2)),
                           mean_abs=float(e.mean()), mean_signed=float(np.mean(errors)),
                           **(dict(fg_iou=float(np.mean(ious))) if ious else {}))
    model.train()
    return out


def score(ev):
    """Model choice on val: mean |count error| over both real sets (lower is better)."""
    return ev["frames_bioimlab_q"]["mean_abs"] + ev["frames_adir_dapi"]["mean_abs"]


# ---- export ---------------------------------------------------------------------------------

def export(model, path, meta):
    model.eval()
    x = torch.zeros(1, 1, 64, 96)
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=OPSET, input_names=["frame"],
                      output_names=["maps"], dynamic_axes={"frame": {2: "H", 3: "W"}, "maps": {2: "h", 3: "w"}})
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    stem = os.path.splitext(path)[0]
    card = dict(name="segmenter", kind="segmenter", card_version=1,
                created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                onnx_file=os.path.basename(path), onnx_sha256=sha, spec=SPEC,
                input=dict(name="frame", shape=[1, 1, "H", "W"], dtype="float32"),
                output=dict(name="maps", channels=list(CHANNELS), stride=STRIDE),
                preprocessing=dict(PREPROCESSING), instances=dict(INSTANCES),
                **meta)
    with open(stem + ".card.json", "w") as f:
        json.dump(card, f, indent=1)
        f.write("\n")
    return card


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the folder holding frames_* and the crop sets")
    ap.add_argument("--out", required=True, help="PATH.onnx (card written beside it)")
    ap.add_argument("--minutes", type=float, default=40)
    ap.add_argument("--synthetic", type=int, default=480, help="composed spreads in the pool")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", help="start from this exported segmenter (.onnx) instead of random weights")
    ap.add_argument("--keep-steps", action="store_true",
                    help="also export every evaluated checkpoint as OUT-steps/step-N.onnx, to choose among on the device")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    sets = [os.path.join(args.data, "bioimlab_qband"), os.path.join(args.data, "pki3_gband")]
    jobs = [(sets[i % 2], args.seed * 100000 + i, 1500) for i in range(args.synthetic)]
    with Pool(args.threads) as pool:
        synthetic = pool.map(synthetic_sample, jobs, chunksize=8)
        real = pool.map(dapi_sample, [(args.data, r) for r in frames_rows(args.data, "frames_adir_dapi", "train")])
    print(json.dumps(dict(synthetic=len(synthetic), dapi_train=len(real), prepare_s=round(time.time() - t0))), flush=True)

    model = SegNet()
    if args.init:
        load_onnx_weights(model, args.init)
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    weights = torch.tensor([1.0, 1.0, 3.0]).view(1, 3, 1, 1)
    deadline = time.time() + 60 * args.minutes
    step, best, log = 0, None, []
    evaluate_every = 300
    while time.time() < deadline:
        batch = [random_patch(*(real[rng.integers(len(real))] if rng.random() < 0.35
                                else synthetic[rng.integers(len(synthetic))]), rng) for _ in range(args.batch)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))[:, None]
        t = torch.from_numpy(np.stack([b[1] for b in batch]))
        lr = 2e-3 * min(1.0, (step + 1) / 100) * max(0.05, 1 - (time.time() - t0) / (60 * args.minutes + 60))
        for g in opt.param_groups:
            g["lr"] = lr
        per_pixel = F.binary_cross_entropy_with_logits(model(x), t[:, :3], reduction="none") * weights
        per_pixel[:, 1] *= t[:, 3]          # the core target where the truth can give it
        loss = per_pixel.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(json.dumps(dict(step=step, loss=round(float(loss), 4), lr=round(lr, 5),
                                  minutes=round((time.time() - t0) / 60, 1))), flush=True)
        if step % evaluate_every == 0 or time.time() >= deadline:
            ev = evaluate(model, args.data, "val")
            log.append(dict(step=step, val=ev))
            print(json.dumps(log[-1]), flush=True)
            if args.keep_steps:
                steps_dir = os.path.splitext(args.out)[0] + "-steps"
                os.makedirs(steps_dir, exist_ok=True)
                export(model, os.path.join(steps_dir, f"step-{step}.onnx"), dict(metrics=dict(val=ev)))
                model.train()
            if best is None or score(ev) < best[0]:
                best = (score(ev), step, ev, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[3])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    meta = dict(training=dict(command="python -m karyotrain.segtrain --data DATA --minutes "
                              f"{args.minutes:g} --synthetic {args.synthetic} --seed {args.seed}"
                              + (f" --init {os.path.basename(args.init)}" if args.init else ""),
                              steps=step, best_step=best[1], patch=PATCH, batch=args.batch,
                              synthetic_spreads=len(synthetic), dapi_train_frames=len(real),
                              chosen_on="val: mean |count error|, frames_bioimlab_q (count >= 40) + frames_adir_dapi",
                              parameters=sum(p.numel() for p in model.parameters())),
                metrics=dict(val=best[2]))
    card = export(model, args.out, meta)
    runs = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "train", "runs")
    os.makedirs(runs, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(runs, f"segmenter-{card['onnx_sha256'][:12]}.pt"))
    print(json.dumps(dict(out=args.out, best_step=best[1], val=best[2], sha256=card["onnx_sha256"])), flush=True)


if __name__ == "__main__":
    main()
