"""tract (through `karyoscreen bench`) vs onnxruntime on the same weights, the same input tensors
and the same thread count; prints a table and the ratios tract / onnxruntime float and
tract / onnxruntime int8.

    cd train && . .venv/bin/activate
    python -m karyotrain.ort_compare [--threads 1] [--rounds 3] [--repeats 3]
        [--binary ../target/release/karyoscreen] [--model ../models/karyoscreen.onnx]

What it does:
1. `karyoscreen bench --json --save-inputs DIR` writes the exact preprocessed crops and size
   features of the bench frames (the built-in demo frames) and times tract on them, for both
   execution plans (`--plan dequantized`, the default, and `--plan as-is`).
2. Builds the float twin of the int8 QDQ model the way the Rust `dequantized` plan does
   (src/model.rs, mod dequantize): constant DequantizeLinear → float initializers
   ((q - zero_point) * scale), activation QuantizeLinear→DequantizeLinear → Clip to the
   representable range.
3. Times onnxruntime (CPU, intra_op_num_threads=N, inter_op 1, sequential, all graph
   optimisations) on the float twin and on the int8 file as shipped, one crop at a time at
   batch 1 like tract, per cell of the bench frames.
Tract and onnxruntime runs alternate `--repeats` times; medians over cells and repeats are
reported. On a shared machine every figure is an upper bound.
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def float_twin(model):
    """The float graph karyoscreen's `dequantized` plan runs (same rewrite as src/model.rs)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    new_init, nodes = [], []
    for n in g.node:
        if n.op_type != "DequantizeLinear" or n.domain not in ("", "ai.onnx") or n.input[1] not in init:
            nodes.append(n)
            continue
        scale = init[n.input[1]].astype(np.float32)
        zp = init[n.input[2]] if len(n.input) > 2 and n.input[2] else np.zeros_like(scale, dtype=np.uint8)
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if n.input[0] in init:
            q = init[n.input[0]]
            if scale.size > 1:
                shape = [1] * q.ndim
                shape[axis] = -1
                scale_b, zp_b = scale.reshape(shape), zp.reshape(shape)
            else:
                scale_b, zp_b = scale, zp
            w = (q.astype(np.int64) - zp_b.astype(np.int64)).astype(np.int32).astype(np.float32) * scale_b
            new_init.append(numpy_helper.from_array(w.astype(np.float32), n.output[0]))
            continue
        q = producer.get(n.input[0])
        if (q is None or q.op_type != "QuantizeLinear" or scale.size != 1
                or list(q.input[1:3]) != list(n.input[1:3])):
            nodes.append(n)
            continue
        lo, hi = (0, 255) if zp.dtype == np.uint8 else (-128, 127)
        z = int(zp.reshape(-1)[0])
        s = np.float32(scale.reshape(-1)[0])
        cmin, cmax = n.output[0] + "_clip_min", n.output[0] + "_clip_max"
        new_init.append(numpy_helper.from_array(np.array(np.float32(lo - z) * s, np.float32), cmin))
        new_init.append(numpy_helper.from_array(np.array(np.float32(hi - z) * s, np.float32), cmax))
        nodes.append(helper.make_node("Clip", [q.input[0], cmin, cmax], list(n.output), name=n.name + "_as_clip"))
    # Drop what nothing reads any more.
    while True:
        used = {i for x in nodes for i in x.input} | {o.name for o in g.output}
        kept = [x for x in nodes if any(o in used for o in x.output)]
        if len(kept) == len(nodes):
            break
        nodes = kept
    used = {i for x in nodes for i in x.input}
    inits = [t for t in list(g.initializer) + new_init if t.name in used]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    onnx.checker.check_model(m)
    return m


def session(model_bytes, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def time_cells(sess, images, sizes, cells, rounds):
    """Per-cell wall times (ms) running each crop at batch 1, and the logits of the last round."""
    times, outs = [], None
    for _ in range(rounds):
        outs = []
        start = 0
        for n in cells:
            t0 = time.perf_counter()
            for k in range(start, start + n):
                outs.append(sess.run(None, {"image": images[k:k + 1], "size": sizes[k:k + 1]}))
            times.append((time.perf_counter() - t0) * 1e3)
            start += n
    return times, outs


def bench_tract(binary, model, plan, threads, rounds, save_inputs=None):
    cmd = [binary, "bench", "--model", model, "--json", "--plan", plan, "--threads", str(threads),
           "--rounds", str(rounds)]
    if save_inputs:
        cmd += ["--save-inputs", save_inputs]
    report = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    entry = next(t for t in report["by_threads"] if t["threads"] == threads)
    return report, entry


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3, help="passes over the bench frames per timing run")
    ap.add_argument("--repeats", type=int, default=3, help="alternating tract / onnxruntime runs")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "karyoscreen"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "karyoscreen.onnx"))
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="ort_compare_")
    bench_tract(args.binary, args.model, "dequantized", args.threads, 1, save_inputs=tmp)
    meta = json.load(open(os.path.join(tmp, "cells.json")))
    s, cells = meta["input_size"], meta["crops_per_cell"]
    images = np.fromfile(os.path.join(tmp, "image.f32"), "<f4").reshape(-1, 1, s, s)
    sizes = np.fromfile(os.path.join(tmp, "size.f32"), "<f4").reshape(-1, 2)
    assert images.shape[0] == sum(cells) == sizes.shape[0]

    int8 = onnx.load(args.model)
    sessions = {"float": session(float_twin(int8).SerializeToString(), args.threads),
                "int8": session(int8.SerializeToString(), args.threads)}
    for sess in sessions.values():  # warm-up
        time_cells(sess, images, sizes, cells[:1], 1)

    per_cell = {k: [] for k in ["tract dequantized", "tract as-is", "ort float", "ort int8"]}
    per_crop = {k: [] for k in per_cell}
    outs = {}
    for _ in range(args.repeats):
        for plan in ["dequantized", "as-is"]:
            _, entry = bench_tract(args.binary, args.model, plan, args.threads, args.rounds)
            per_cell[f"tract {plan}"].append(entry["infer_per_cell"]["median_ms"])
            per_crop[f"tract {plan}"].append(entry["infer_per_crop_ms"])
        for kind, sess in sessions.items():
            times, outs[kind] = time_cells(sess, images, sizes, cells, args.rounds)
            per_cell[f"ort {kind}"].append(float(np.median(times)))
            crops = np.tile(np.array(cells, float), args.rounds)
            per_crop[f"ort {kind}"].append(float(np.median(np.array(times) / crops)))

    med = {k: float(np.median(v)) for k, v in per_cell.items()}
    med_crop = {k: float(np.median(v)) for k, v in per_crop.items()}
    ident = {k: np.concatenate([o[0] for o in v]) for k, v in outs.items()}
    agree = float(np.mean(ident["float"].argmax(1) == ident["int8"].argmax(1)))
    maxdiff = float(np.abs(ident["float"] - ident["int8"]).max())
    ratios = {
        "tract/ort_float": med["tract dequantized"] / med["ort float"],
        "tract/ort_int8": med["tract dequantized"] / med["ort int8"],
        "tract_as_is/ort_int8": med["tract as-is"] / med["ort int8"],
    }
    if args.json:
        print(json.dumps(dict(threads=args.threads, crops=int(sum(cells)), cells=len(cells), per_cell_ms=med,
                              per_crop_ms=med_crop, ratios=ratios, ort_float_vs_int8_top1=agree,
                              ort_float_vs_int8_max_logit_diff=maxdiff, onnxruntime=ort.__version__), indent=1))
        return
    print(f"{len(cells)} cells, {sum(cells)} crops (the bench frames' real inputs), batch 1, "
          f"{args.threads} thread(s), onnxruntime {ort.__version__}; medians of {args.repeats} alternating runs")
    print(f"{'runtime / graph':<22}{'per cell ms':>12}{'per crop ms':>13}")
    for k in per_cell:
        print(f"{k:<22}{med[k]:>12.1f}{med_crop[k]:>13.3f}")
    print(f"tract (default plan, dequantized) / onnxruntime float: {ratios['tract/ort_float']:.2f}x")
    print(f"tract (default plan, dequantized) / onnxruntime int8:  {ratios['tract/ort_int8']:.2f}x")
    print(f"tract as-is int8 graph / onnxruntime int8:             {ratios['tract_as_is/ort_int8']:.2f}x")
    print(f"onnxruntime float twin vs int8 on these crops: top-1 agreement {agree:.4f}, "
          f"max identity logit difference {maxdiff:.3f}")


if __name__ == "__main__":
    main()
