"""ONNX export, int8 static quantization (QDQ, heads kept float), evaluation, model card."""
import datetime
import hashlib
import json
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

from . import metrics as Mx
from . import preprocess as P
from .data import LABELS
from .model import ARM_LABELS, OUTPUTS, POSITION_LABELS, STRUCTURE_LABELS, n_params
from .structural import CEN

OPSET = 17
N_CALIB = 300


def export_onnx(model, path):
    model.eval()
    img, size = torch.zeros(2, 1, P.S, P.S), torch.zeros(2, 2)
    outputs = OUTPUTS[:len(model(img, size))]
    torch.onnx.export(model, (img, size), path, dynamo=False, opset_version=OPSET,
                      input_names=["image", "size"], output_names=outputs,
                      dynamic_axes={k: {0: "N"} for k in ["image", "size"] + outputs})


class Batches(CalibrationDataReader):
    """Calibration batches from named input arrays of equal length."""

    def __init__(self, inputs, bs=16):
        n = len(next(iter(inputs.values())))
        self.it = iter([{k: v[i:i + bs] for k, v in inputs.items()} for i in range(0, n, bs)])

    def get_next(self):
        return next(self.it, None)


def quantize(float_path, q_path, calibration):
    pre = float_path.replace(".onnx", ".pre.onnx")
    quant_pre_process(float_path, pre)
    quantize_static(pre, q_path, calibration, quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "Relu"])
    # quant_pre_process leaves opset imports of unused domains (com.microsoft, ...): drop them
    m = onnx.load(q_path)
    used = {n.domain for n in m.graph.node}
    keep = [o for o in m.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del m.opset_import[:]
    m.opset_import.extend(keep)
    onnx.checker.check_model(m)
    onnx.save(m, q_path)


def run_onnx(path, img, size, bs=512, all_outputs=False):
    """-> (identity, structure), or all outputs of the model (by name, in OUTPUTS order)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    names = [o for o in OUTPUTS if o in {x.name for x in s.get_outputs()}]
    outs = [[] for _ in names]
    for i in range(0, len(img), bs):
        for o, v in zip(outs, s.run(names, dict(image=img[i:i + bs], size=size[i:i + bs]))):
            o.append(v)
    outs = [np.concatenate(o) for o in outs]
    return outs if all_outputs else outs[:2]


def logit_tolerance(q_path):
    """One quantization step of the last quantized activation, expressed in logits.

    The heads are float Gemms on the concatenated features. Those features come from
    DequantizeLinear outputs (through GlobalAveragePool/Flatten, which cannot enlarge an error),
    so a one-step difference in them (e.g. tract vs onnxruntime rounding) moves a logit by at most
    scale * sum_k |W[row, k]|. Tolerance = max scale feeding the heads * max row L1 norm.
    """
    m = onnx.load(q_path)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    prod = {o: n for n in m.graph.node for o in n.output}

    def scale_above(name, depth=0):
        n = prod.get(name)
        if n is None or depth > 8:
            return 0.0
        if n.op_type == "DequantizeLinear":
            return float(np.max(init[n.input[1]]))
        return max([scale_above(i, depth + 1) for i in n.input if i not in init] or [0.0])

    heads = [n for n in m.graph.node if n.op_type in ("Gemm", "MatMul") and
             any(o in ("identity", "structure") or o.startswith("identity") for o in n.output)]
    heads = [n for n in m.graph.node if n.op_type in ("Gemm", "MatMul")
             and set(n.output) & {"identity", "structure"}] or heads
    scale, l1 = 0.0, 0.0
    for n in heads:
        w = init[n.input[1]]
        trans_b = any(a.name == "transB" and a.i == 1 for a in n.attribute)
        rows = w if (n.op_type == "Gemm" and trans_b) else w.T
        l1 = max(l1, float(np.abs(rows).sum(1).max()))
        scale = max(scale, scale_above(n.input[0]))
    return scale * l1, scale, l1


def class_stats(g):
    """Per-class look of G-band crops (train split only), for rendering synthetic demo cells."""
    tr = g["split"] == "train"
    out = []
    S, m = P.S, P.M
    for c, lab in enumerate(LABELS):
        i = np.nonzero(tr & (g["label"] == c))[0]
        rel_len = float(np.median(np.exp(g["size"][i, 0].astype(np.float64))))
        aspect = float(np.median(g["width"][i] / g["length"][i]))
        mean = g["image"][i, 0].astype(np.float64).mean(0)              # [S,S]
        span = S - 2 * m
        lout = span * min(1.0, 1.0 / aspect)                              # length in output px
        wout = span * min(1.0, aspect)                                    # width in output px
        jc = np.arange(S) + 0.5 - S / 2
        cols = np.abs(jc) <= max(wout / 6, 1.0)                           # central third of content
        prof = mean[:, cols].mean(1)
        rows = S / 2 - lout / 2 + (np.arange(32) + 0.5) * lout / 32     # 32 positions, top->bottom
        ink = np.interp(rows - 0.5, np.arange(S), prof)
        ri = np.clip(np.floor(rows).astype(int), 0, S - 1)
        halfw = (mean[ri] > 0.25).sum(1) / 2.0 / lout
        out.append(dict(label=lab, rel_length=round(rel_len, 5), aspect=round(aspect, 5),
                        centromere=round(CEN[lab], 4),
                        ink_profile=[round(float(v), 5) for v in np.clip(ink, 0, 1)],
                        width_profile=[round(float(v), 5) for v in halfw]))
    return out


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=os.path.dirname(__file__)).stdout.strip()
    except Exception:
        return None


def export_all(model, sets, args, run_dir, best_epoch, train_seconds=0.0, structure=None):
    """best_epoch: the epoch whose weights `model` holds (None when it was not trained here)."""
    os.makedirs(args.out, exist_ok=True)
    fpath = os.path.join(run_dir, f"{args.name}.float.onnx")
    qpath = os.path.join(args.out, f"{args.name}.onnx")
    export_onnx(model, fpath)
    # calibration: ~300 train crops drawn from all sets, fixed seed
    rng = np.random.default_rng(args.seed)
    tr = [(d, np.nonzero(d["split"] == "train")[0]) for d in sets]
    per = [max(1, round(N_CALIB * len(i) / sum(len(j) for _, j in tr))) for _, i in tr]
    ci = [rng.choice(i, min(k, len(i)), replace=False) for (_, i), k in zip(tr, per)]
    cimg = np.concatenate([d["image"][i] for (d, _), i in zip(tr, ci)])
    csize = np.concatenate([d["size"][i] for (d, _), i in zip(tr, ci)])
    quantize(fpath, qpath, Batches(dict(image=cimg, size=csize)))
    q = onnx.load(qpath)
    domains = sorted({n.domain for n in q.graph.node if n.domain})
    assert not domains, f"non-standard ops in quantized model: {domains}"

    metrics, full, agree, n_test, max_dlogit = {}, {}, 0, 0, 0.0
    for d in sets:
        name = str(d["name"])
        metrics[name], full[name] = {}, {}
        for split in ("val", "test"):
            msk = d["split"] == split
            y, cells = d["label"][msk], d["cell"][msk]
            lf, *of = run_onnx(fpath, d["image"][msk], d["size"][msk], all_outputs=True)
            lq, *oq = run_onnx(qpath, d["image"][msk], d["size"][msk], all_outputs=True)
            homolog = lambda outs: outs[3] if len(outs) > 3 else None
            ef = Mx.evaluate(lf, y, cells, homolog=homolog(of), homolog_weight=args.homolog_weight)
            eq = Mx.evaluate(lq, y, cells, homolog=homolog(oq), homolog_weight=args.homolog_weight)
            full[name][split] = dict(float=ef, int8=eq)
            metrics[name][split] = {k: dict(float=Mx.summary(ef[k]), int8=Mx.summary(eq[k]))
                                    for k in ("crop", "cell")}
            if split == "test":
                agree += int((lf.argmax(1) == lq.argmax(1)).sum()); n_test += len(y)
                max_dlogit = max(max_dlogit, float(np.abs(lf - lq).max()))
    tol, act_scale, l1 = logit_tolerance(qpath)
    synthetic = None
    if structure:                       # SYNTHETIC abnormalities, threshold chosen on val (torch float)
        from .train import synth_eval
        thr = structure["threshold"]
        synthetic = dict(note="SYNTHETIC structural abnormalities made from real normal crops of the "
                              "split named (karyotrain.structural); the threshold flags at most "
                              f"{args.fpr:.3%} of the real normal val crops",
                         structure_threshold=thr, torch_float=structure["torch_float"])
        for kind, path in (("float", fpath), ("int8", qpath)):
            pf = lambda a, b, path=path: run_onnx(path, a, b, all_outputs=True)
            synthetic[f"onnx_{kind}"] = {s: synth_eval(pf, sets, structure["synth"], s, threshold=thr)[1]
                                         for s in ("val", "test")}

    gset = next((d for d in sets if str(d["polarity"]) == P.DARK_ON_LIGHT), sets[0])
    card = dict(
        name=args.name, card_version=1,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        onnx_file=os.path.basename(qpath), onnx_sha256=sha256(qpath),
        inputs=[dict(name="image", shape=["N", 1, P.S, P.S], dtype="float32"),
                dict(name="size", shape=["N", 2], dtype="float32")],
        outputs=[dict(name="identity", labels=LABELS), dict(name="structure", labels=STRUCTURE_LABELS),
                 dict(name="arm", labels=ARM_LABELS), dict(name="position", labels=POSITION_LABELS)]
        + ([dict(name="homolog", labels=[f"e{k}" for k in range(args.pair_dim)])] if args.pair_dim else []),
        preprocessing={k: P.PARAMS[k] for k in ("spec", "input_size", "margin", "polarity_threshold",
                                                "contrast_percentile", "smoothing", "size_features")},
        cell_assignment=dict(capacity=Mx.CAPACITY, extra_slot_cost=Mx.EXTRA_SLOT_COST,
                             missing_slot_cost=Mx.MISSING_SLOT_COST,
                             **(dict(homolog_weight=args.homolog_weight) if args.pair_dim else {})),
        metrics=metrics,
        quantization=dict(tool=f"onnxruntime {ort.__version__} quantize_static", format="QDQ",
                          per_channel=True, activation_type="QUInt8", weight_type="QInt8",
                          op_types_to_quantize=["Conv", "Relu"], heads="float",
                          calibration_crops=int(len(cimg)), opset=OPSET,
                          float_bytes=os.path.getsize(fpath), int8_bytes=os.path.getsize(qpath),
                          int8_float_top1_agreement=agree / max(n_test, 1),
                          agreement_crops=n_test, max_abs_logit_diff_test=round(max_dlogit, 5),
                          logit_step=round(tol, 6)),
        training=dict(command=args.command, arch=args.arch, device=args.device,
                      init=args.init and dict(checkpoint=os.path.basename(args.init),
                                              trained_by=args.init_trained_by),
                      data={str(d["name"]): {s: int((d["split"] == s).sum()) for s in ("train", "val", "test")}
                            for d in sets},
                      seed=args.seed, epochs=args.epochs, params=n_params(model),
                      best_epoch=best_epoch,
                      train_seconds=round(train_seconds), git_commit=git_commit()),
        structure_head=("trained on SYNTHETIC structural abnormalities (karyotrain.structural) and real "
                        "normal crops; abnormal when 1 - P(normal) > structure_threshold; arm and "
                        "position are meaningful only for abnormal crops") if structure else
                       "placeholder: trained on normal crops only",
        **(dict(structure_threshold=round(structure["threshold"], 6),
                synthetic=dict(note=synthetic["note"], int8=synthetic["onnx_int8"],
                               float=synthetic["onnx_float"])) if structure else {}),
        class_stats=class_stats(gset),
    )
    with open(os.path.join(args.out, f"{args.name}.card.json"), "w") as f:
        json.dump(card, f, indent=1)
    if synthetic:
        full["synthetic"] = synthetic
    with open(os.path.join(run_dir, "metrics_onnx.json"), "w") as f:
        json.dump(full, f, indent=1)
    print(json.dumps(dict(metrics=metrics, quantization=card["quantization"]), indent=1))
    if synthetic:
        for split in ("val", "test"):
            for n, r in synthetic["onnx_int8"][split].items():
                print(f"SYNTHETIC int8 {n} {split}: AUROC {r['auroc']:.4f} normal flagged "
                      f"{r['normal_flagged_rate']:.4f} arm {r['arm_accuracy']:.3f} pos MAE "
                      f"{r['position_mae']:.3f} recall " +
                      " ".join(f"{k} {v['recall']:.3f}" for k, v in r["per_type"].items()))
    return card
