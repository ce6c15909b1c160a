"""Train the structure branch (SYNTHETIC abnormalities) beside a shipped identity model and graft
it into that model's int8 ONNX, leaving the identity path byte for byte as it was.

python -m karyotrain.train_structure --base ../models/karyoscreen.onnx \
    --data ../../shared/data/pki3_gband --data ../../shared/data/bioimlab_qband --out ../models

The identity network is not touched: its first conv block's output (the `Stem`, cut out of the
base file) and its logits are the inputs of the branch, which learns normal vs deleted /
duplicated / inverted / translocated band sequences (`StructureNet`). The grafted file's identity
output is checked equal to the base file's.
"""
import argparse
import hashlib
import json
import os
import shlex
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import data as D
from . import export as E
from . import preprocess as P
from . import structural as St
from .model import StructureNet, n_params
from .ort_compare import float_twin
from .train import RUNS, augment, synth_eval

BRANCH_INPUTS = ["stem", "size", "identity"]
BRANCH_OUTPUTS = ["structure", "arm", "position"]


class Stem:
    """The base model's first conv block: image -> the feature map that its second conv reads
    (`tensor`), which the branch reads too. Two versions of it, cut out of the int8 graph and of
    its float twin (what karyoscreen's `dequantized` plan runs: the same values, not rounded to
    the int8 grid). A branch trained on the rounded map alone lost 0.02 AUROC on the device, so it
    trains on both and is chosen on the float twin's."""

    def __init__(self, base_path, run_dir, threads=2):
        m = onnx.load(base_path)
        consumers = lambda t: [n for n in m.graph.node if t in n.input]
        first_conv = next(n for n in m.graph.node if n.op_type == "Conv")
        (quantize,) = consumers(first_conv.output[0])
        (dequantize,) = consumers(quantize.output[0])
        assert (quantize.op_type, dequantize.op_type) == ("QuantizeLinear", "DequantizeLinear"), \
            f"{base_path}: the first conv's output is not quantized as expected"
        self.tensor = dequantize.output[0]
        twin_path = os.path.join(run_dir, "base.float-twin.onnx")
        onnx.save(float_twin(m), twin_path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.sessions = {}
        for version, path in (("int8", base_path), ("twin", twin_path)):
            stem_path = os.path.join(run_dir, f"stem.{version}.onnx")
            onnx.utils.extract_model(path, stem_path, ["image"], [self.tensor])
            self.sessions[version] = ort.InferenceSession(stem_path, so, providers=["CPUExecutionProvider"])

    def __call__(self, img, version="twin", bs=512):
        img = np.ascontiguousarray(img, np.float32)
        return np.concatenate([self.sessions[version].run(None, dict(image=img[i:i + bs]))[0]
                               for i in range(0, len(img), bs)])


class IdentityLogits:
    """The base model's identity logits, remembered per input array: the val and test crops are
    scored every epoch and the identity network never changes."""

    def __init__(self, base_path):
        self.base_path, self.seen = base_path, {}

    def __call__(self, img, size):
        key = hashlib.blake2b(np.ascontiguousarray(img).tobytes() + np.ascontiguousarray(size).tobytes(),
                              digest_size=16).digest()
        if key not in self.seen:
            self.seen[key] = E.run_onnx(self.base_path, img, size)[0]
        return self.seen[key]


@torch.no_grad()
def predict(branch, stem, img, size, ident, bs=512):
    branch.eval()
    outs = [branch(torch.from_numpy(stem(img[i:i + bs])), *(torch.from_numpy(a[i:i + bs]) for a in (size, ident)))
            for i in range(0, len(img), bs)]
    return [np.concatenate([o[k].numpy() for o in outs]) for k in range(3)]


def export_branch(branch, stem_shape, path):
    branch.eval()
    args = (torch.zeros(2, *stem_shape), torch.zeros(2, 2), torch.zeros(2, 24))
    torch.onnx.export(branch, args, path, dynamo=False, opset_version=E.OPSET,
                      input_names=BRANCH_INPUTS, output_names=BRANCH_OUTPUTS,
                      dynamic_axes={k: {0: "N"} for k in BRANCH_INPUTS + BRANCH_OUTPUTS})


def graft(base_path, branch_path, stem_tensor, out_path):
    """Base graph minus its own structure/arm/position heads, plus the branch (names prefixed),
    fed by the base's `stem_tensor`, `size` and `identity`."""
    base, branch = onnx.load(base_path), onnx.load(branch_path)
    g = base.graph
    # keep only what `identity` (and the homolog head, when there is one) needs from the base
    kept_outputs = [o.name for o in g.output if o.name in ("identity", "homolog")]
    need, keep = set(kept_outputs), []
    for n in reversed(g.node):
        if set(n.output) & need:
            keep.append(n)
            need |= set(n.input)
    del g.node[:]
    g.node.extend(reversed(keep))
    used_init = [t for t in g.initializer if t.name in need]
    del g.initializer[:]
    g.initializer.extend(used_init)
    branch = onnx.compose.add_prefix(branch, "structure_branch/")
    rename = {f"structure_branch/{k}": k for k in ["size", "identity"] + BRANCH_OUTPUTS}
    rename["structure_branch/stem"] = stem_tensor
    for n in branch.graph.node:
        n.input[:] = [rename.get(i, i) for i in n.input]
        n.output[:] = [rename.get(o, o) for o in n.output]
    g.node.extend(branch.graph.node)
    g.initializer.extend(branch.graph.initializer)
    outputs = {o.name: o for o in g.output}
    for o in branch.graph.output:
        o.name = rename[o.name]
        outputs[o.name] = o
    del g.output[:]
    g.output.extend(outputs[k] for k in kept_outputs[:1] + BRANCH_OUTPUTS + kept_outputs[1:])
    del g.value_info[:]
    onnx.checker.check_model(base)
    onnx.save(base, out_path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="shipped int8 ONNX whose identity path is kept")
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--out", default="models")
    ap.add_argument("--name", default="karyoscreen")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat-small", type=int, default=3)
    ap.add_argument("--synth-events", type=int, default=16, help="SYNTHETIC events per train cell")
    ap.add_argument("--synth-controls", type=int, default=6, help="straightened unedited crops per train cell")
    ap.add_argument("--synth-eval-events", type=int, default=16)
    ap.add_argument("--synth-eval-controls", type=int, default=4)
    ap.add_argument("--synth-seed", type=int, default=0)
    ap.add_argument("--normal-frac", type=float, default=0.35,
                    help="fraction of the real normal train crops drawn each epoch")
    ap.add_argument("--fpr", type=float, default=0.0,
                    help="threshold: at most this fraction of the real normal val crops flagged; 0 puts "
                         "it above every one of them (a cell has 46 crops: 0.1 %% per crop "
                         "already flags one normal cell in twenty)")
    ap.add_argument("--threshold", type=float,
                    help="use this structure threshold instead of the --fpr one, e.g. the "
                         "max_abnormal_score that karyotrain.frames_eval reports on composed val frames")
    ap.add_argument("--limit-cells", type=int, default=0)
    ap.add_argument("--init", help="start from this branch state dict (with --epochs 0: export only)")
    ap.add_argument("--no-export", action="store_true")
    args = ap.parse_args(argv)
    args.command = "python -m karyotrain.train_structure " + shlex.join(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    run_dir = os.path.join(RUNS, f"{args.name}-structure")
    os.makedirs(run_dir, exist_ok=True)
    t0 = time.time()

    sets = [D.load_set(p) for p in args.data]
    if args.limit_cells:
        sets = [D.limit_cells(d, args.limit_cells, args.seed) for d in sets]
    repeats = lambda d: args.repeat_small if (d["split"] == "train").sum() < 5000 else 1
    synth = St.pools(sets, args.data, args.synth_events, args.synth_controls, args.synth_eval_events,
                     args.synth_eval_controls, seed=args.synth_seed, repeats=repeats)
    ident = IdentityLogits(args.base)
    stem = Stem(args.base, run_dir, args.threads)
    parts = dict(image=[], size=[], ident=[], structure=[], arm=[], position=[])
    for d, ev in zip(sets, synth):
        m = d["split"] == "train"
        normal = dict(image=d["image"][m], size=d["size"][m], structure=np.zeros(m.sum(), np.int64),
                      arm=np.full(m.sum(), -1), position=np.full(m.sum(), -1.0, np.float32))
        for src in (normal, ev["train"]):
            parts["ident"].append(ident(src["image"], src["size"]))
            for k in ("image", "size", "structure", "arm", "position"):
                parts[k].append(np.asarray(src[k]))
    is_normal_crop = np.concatenate([np.full(len(a), i % 2 == 0) for i, a in enumerate(parts["image"])])
    tr = {k: torch.from_numpy(np.concatenate(v).astype(np.float32 if k in ("image", "size", "ident", "position")
                                                         else np.int64))
          for k, v in parts.items()}
    normal_idx = torch.from_numpy(np.nonzero(is_normal_crop)[0])
    synth_idx = torch.from_numpy(np.nonzero(~is_normal_crop)[0])
    print(f"train: {len(normal_idx)} real normal crops ({args.normal_frac:.0%} drawn per epoch), "
          f"{len(synth_idx)} SYNTHETIC ({(tr['structure'] > 0).sum().item()} abnormal) "
          f"({time.time() - t0:.0f}s loading)", flush=True)

    stem_shape = stem(tr["image"][:1].numpy()).shape[1:]
    branch = StructureNet(stem_ch=stem_shape[0], length=stem_shape[1], width=stem_shape[2])
    if args.init:
        branch.load_state_dict(torch.load(args.init, map_location="cpu"))
    print(f"StructureNet: {n_params(branch)} parameters", flush=True)
    opt = torch.optim.AdamW(branch.parameters(), lr=args.lr, weight_decay=5e-4)
    per_epoch = int(round(len(normal_idx) * args.normal_frac)) + len(synth_idx)
    steps = args.epochs * -(-per_epoch // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=max(steps, 1), pct_start=0.2)
    g = torch.Generator().manual_seed(args.seed)

    def pred_fn(img, size):
        li = ident(img, size)
        return (li, *predict(branch, stem, img, size, li))

    hist, best = [], (-1.0, {k: v.clone() for k, v in branch.state_dict().items()}, 0)
    for ep in range(args.epochs):
        branch.train()
        keep = normal_idx[torch.randperm(len(normal_idx), generator=g)[:int(round(len(normal_idx) * args.normal_frac))]]
        idx_all = torch.cat([keep, synth_idx])
        perm = idx_all[torch.randperm(len(idx_all), generator=g)]
        tl, tn = 0.0, 0
        bar = tqdm(range(0, len(perm), args.batch), desc=f"epoch {ep + 1}/{args.epochs}", mininterval=10,
                   file=sys.stdout)
        for i in bar:
            b = perm[i:i + args.batch]
            x, s = augment(tr["image"][b], tr["size"][b], g)
            ys, ya, yp = tr["structure"][b], tr["arm"][b], tr["position"][b]
            version = "int8" if torch.rand(1, generator=g).item() < 0.5 else "twin"
            ls, la, lp = branch(torch.from_numpy(stem(x.numpy(), version)), s, tr["ident"][b])
            loss = F.cross_entropy(ls, ys, label_smoothing=0.02)
            ab = ys > 0
            if ab.any():
                loss = loss + 0.5 * F.cross_entropy(la[ab], ya[ab]) + 2.0 * F.l1_loss(lp[ab, 0], yp[ab])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step(); sched.step()
            tl += loss.item() * len(b); tn += len(b)
            bar.set_postfix(loss=f"{tl / tn:.3f}")
        _, sr = synth_eval(pred_fn, sets, synth, "val", fpr=args.fpr)
        h = dict(epoch=ep + 1, train_loss=tl / tn, val_synthetic_auroc=sr["all"]["auroc"],
                 val_recall_any=sr["all"]["recall_any"], time_s=time.time() - t0)
        hist.append(h)
        print(f"epoch {ep + 1}: loss {h['train_loss']:.4f} | SYNTHETIC val AUROC {h['val_synthetic_auroc']:.4f} "
              f"recall@{args.fpr:.1%}FPR {h['val_recall_any']:.3f} | {h['time_s']:.0f}s", flush=True)
        if h["val_synthetic_auroc"] > best[0]:
            best = (h["val_synthetic_auroc"], {k: v.clone() for k, v in branch.state_dict().items()}, ep + 1)
            torch.save(best[1], os.path.join(run_dir, "branch.pt"))
    branch.load_state_dict(best[1])
    branch.eval()
    thr, sval = synth_eval(pred_fn, sets, synth, "val", fpr=args.fpr, threshold=args.threshold)
    _, stest = synth_eval(pred_fn, sets, synth, "test", threshold=thr)
    report = lambda tag, sr: [print(f"SYNTHETIC {tag} {n}: AUROC {r['auroc']:.4f} "
                                    f"(vs straightened normals {r.get('auroc_vs_straightened_normals', float('nan')):.4f}) "
                                    f"normal flagged {r['normal_flagged_rate']:.4f} arm {r['arm_accuracy']:.3f} "
                                    f"pos MAE {r['position_mae']:.3f} recall "
                                    + " ".join(f"{k} {v['recall']:.3f}" for k, v in r["per_type"].items()))
                              for n, r in sr.items()]
    report("torch val", sval); report("torch test", stest)
    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump(dict(history=hist, best_epoch=best[2], threshold=thr, torch_float=dict(val=sval, test=stest)),
                  f, indent=1)
    if args.no_export:
        return

    # export, quantize like the base (QDQ Conv/Relu), graft, check identity unchanged
    fpath, qpath = (os.path.join(run_dir, f) for f in ("branch.float.onnx", "branch.int8.onnx"))
    export_branch(branch, stem_shape, fpath)
    rng = np.random.default_rng(args.seed)
    ci = rng.choice(len(tr["image"]), min(E.N_CALIB, len(tr["image"])), replace=False)
    E.quantize(fpath, qpath, E.Batches(dict(stem=stem(tr["image"][ci].numpy()), size=tr["size"][ci].numpy(),
                                            identity=tr["ident"][ci].numpy())))
    out_path = os.path.join(args.out, f"{args.name}.onnx")
    grafted = os.path.join(run_dir, "grafted.onnx")
    graft(args.base, qpath, stem.tensor, grafted)
    for d in sets:
        m = d["split"] == "test"
        a = E.run_onnx(args.base, d["image"][m], d["size"][m])[0]
        b = E.run_onnx(grafted, d["image"][m], d["size"][m])[0]
        assert np.array_equal(a, b), f"{d['name']}: grafted identity differs from the base"
    pf = lambda img, size: E.run_onnx(grafted, img, size, all_outputs=True)
    qval = synth_eval(pf, sets, synth, "val", threshold=thr)[1]
    qtest = synth_eval(pf, sets, synth, "test", threshold=thr)[1]
    report("int8 val", qval); report("int8 test", qtest)

    card_path = os.path.join(args.out, f"{args.name}.card.json")
    with open(card_path) as f:
        card = json.load(f)
    os.replace(grafted, out_path)
    card.update(
        onnx_sha256=E.sha256(out_path),
        structure_head=("StructureNet branch (long-axis band sequence pooled from the identity network's "
                        "first conv block, conditioned on the identity logits) trained on SYNTHETIC structural abnormalities (karyotrain.structural) "
                        "and real normal crops; abnormal when 1 - P(normal) > structure_threshold; arm "
                        "and position are meaningful only for abnormal crops"),
        structure_threshold=round(thr, 6),
        synthetic=dict(note="SYNTHETIC structural abnormalities made from real normal crops of the split "
                            "named; " + (f"threshold {args.threshold} given (--threshold)" if args.threshold else
                                         "the threshold flags " + (f"at most {args.fpr:.3%} of" if args.fpr else
                                                                   "none of") + " the real normal val crops"),
                       int8=dict(val=qval, test=qtest), torch_float=dict(val=sval, test=stest)),
        structure_training=dict(command=args.command, init=args.init and os.path.basename(args.init),
                                params=n_params(branch), epochs=args.epochs,
                                best_epoch=best[2], seed=args.seed, train_seconds=round(time.time() - t0),
                                git_commit=E.git_commit()))
    card["quantization"]["int8_bytes"] = os.path.getsize(out_path)
    for c in card["class_stats"]:          # the demo draws structural changes around it
        c["centromere"] = round(St.CEN[c["label"]], 4)
    with open(card_path, "w") as f:
        json.dump(card, f, indent=1)
    print(f"wrote {out_path} ({os.path.getsize(out_path)} bytes) and {card_path}; re-sign the bundle")


if __name__ == "__main__":
    main()
