"""Write project-generated test fixtures (no image from the shared data is ever copied).

python -m karyotrain.fixtures [--name karyoscreen]

tests/fixtures/golden/  8 synthetic 8-bit PNGs + manifest.json + the spec's output tensors (raw LE f32)
tests/fixtures/parity/  24 model inputs + onnxruntime outputs of models/<name>.onnx + meta.json
tests/fixtures/tiny_homolog/  a tiny untrained int8 model with a homolog head (karyotrain.tiny) + its
    card + onnxruntime outputs on the parity inputs + meta.json: the parity test's homolog case
tests/fixtures/cell_step.json  synthetic cells' class probabilities and homolog vectors with the
    classes the trainer's cell step gives them, slots alone and with the pairing term
tests/fixtures/segmenter/  a tiny untrained segmentation network (karyoscreen-seg-v1 input and
    output) + its card, one generated frame, its input tensor (karyotrain.segprep) and PyTorch's
    output maps + meta.json: the device's segmenter preprocessing and tract run checked against them
Deterministic: running it twice gives identical files (golden and cell-step byte for byte; the tiny
model's ONNX bytes may change with the torch/onnxruntime versions, its card and outputs with them).
"""
import argparse
import hashlib
import json
import os

import numpy as np
from PIL import Image

from . import preprocess as P
from .data import LABELS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDEN = os.path.join(ROOT, "tests", "fixtures", "golden")
PARITY = os.path.join(ROOT, "tests", "fixtures", "parity")
TINY_HOMOLOG = os.path.join(ROOT, "tests", "fixtures", "tiny_homolog")
CELL_STEP = os.path.join(ROOT, "tests", "fixtures", "cell_step.json")
SEGMENTER = os.path.join(ROOT, "tests", "fixtures", "segmenter")
CELL_STEP_WEIGHT = 1.0

# name, (H, W), angle (deg, image x right / y down), length, half-width, polarity, noise sigma, extra
GOLDEN_SPECS = [
    ("rod_000_dark", (37, 81), 0.0, 64, 6.0, "dark", 4.0, None),
    ("rod_090_dark", (90, 41), 90.0, 70, 7.0, "dark", 3.0, None),
    ("rod_030_light", (71, 83), 30.0, 60, 5.5, "light", 5.0, None),
    ("rod_135_light", (64, 64), 135.0, 55, 5.0, "light", 4.0, None),
    ("rod_030_dark_gradient", (77, 95), 30.0, 72, 7.5, "dark", 3.0, "gradient"),
    ("small_017_dark", (23, 29), 17.0, 16, 4.0, "dark", 3.0, None),
    ("rod_120_light_odd", (53, 47), 120.0, 40, 4.5, "light", 6.0, None),
    ("bent_075_dark", (101, 59), 75.0, 85, 6.5, "dark", 5.0, "bent"),
]


def draw_rod(hw, angle, length, halfw, polarity, sigma, extra, seed, ink_profile=None, width_profile=None):
    """A banded, capsule-shaped rod; returns a uint8 H x W image."""
    rng = np.random.default_rng(seed)
    h, w = hw
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = np.deg2rad(angle)
    ax, ay = np.cos(a), np.sin(a)
    cx, cy = (w - 1) / 2 + 0.3, (h - 1) / 2 - 0.2
    t = (x - cx) * ax + (y - cy) * ay
    s = (x - cx) * ay - (y - cy) * ax
    if extra == "bent":                                   # gentle bow
        s = s - 0.004 * t ** 2
    tn = np.clip(t / length + 0.5, 0, 1)                   # 0..1 along the rod
    if width_profile is not None:
        hwid = np.interp(tn, (np.arange(32) + 0.5) / 32, width_profile) * length
    else:
        hwid = halfw * np.ones_like(t)
    tc = np.clip(np.abs(t) - (length / 2 - hwid), 0, None)  # rounded ends
    d = np.sqrt(tc ** 2 + s ** 2)
    cover = np.clip(hwid + 0.5 - d, 0, 1)                  # anti-aliased edge
    if ink_profile is not None:
        band = np.interp(tn, (np.arange(32) + 0.5) / 32, ink_profile)
    else:
        band = 0.55 + 0.45 * np.sign(np.sin(tn * 2 * np.pi * 5.5 + 0.4)) * 0.8  # stained bands
        band = np.clip(band, 0.1, 1.0)
    ink = cover * band * 170.0
    if polarity == "dark":
        g = 235.0 - ink
    else:
        g = 18.0 + ink
    if extra == "gradient":
        g = g - 25.0 * (x / w) - 10.0 * (y / h)            # uneven illumination
    g = g + rng.normal(0, sigma, g.shape)
    return np.clip(np.round(g), 0, 255).astype(np.uint8)


def write_f32(path, arr):
    np.ascontiguousarray(arr, dtype="<f4").tofile(path)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def golden():
    os.makedirs(GOLDEN, exist_ok=True)
    items, tensors, L, A = [], [], [], []
    for k, (name, hw, ang, ln, hwid, pol, sig, extra) in enumerate(GOLDEN_SPECS):
        g = draw_rod(hw, ang, ln, hwid, pol, sig, extra, seed=1000 + k)
        Image.fromarray(g, mode="L").save(os.path.join(GOLDEN, f"{name}.png"), optimize=False)
        r = P.preprocess_full(g)
        write_f32(os.path.join(GOLDEN, f"{name}.f32"), r["image"])
        tensors.append(r["image"]); L.append(r["length"]); A.append(r["area"])
        items.append(dict(file=f"{name}.png", height=hw[0], width=hw[1], polarity=r["polarity"],
                          length=r["length"], area=r["area"], tensor=f"{name}.f32",
                          debug=dict(border_median_ink_bg=r["bg"], otsu_t=r["otsu_t"], p=r["p"],
                                     cx=r["cx"], cy=r["cy"], theta=r["theta"], mu11=r["mu11"],
                                     width=r["width"])))
    size = P.size_features(L, A)
    man = dict(spec=P.SPEC, params=P.PARAMS, tolerance=1e-4,
               tensor_format="raw little-endian float32, shape [1,64,64], row-major",
               note="polarity is detected per image (lone crop rule); size is for all 8 as one cell",
               images=items, cell=dict(median_length=P.median(L), median_area=P.median(A),
                                       size=[[float(v) for v in row] for row in size]))
    with open(os.path.join(GOLDEN, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
    return np.stack(tensors), size


def renders(card, n=12):
    """Synthetic G-band-like cells drawn from the card's class_stats, preprocessed by the spec."""
    stats = card["class_stats"]
    labels = [0, 1, 4, 6, 8, 11, 14, 17, 20, 21, 22, 23][:n]
    imgs, L, A = [], [], []
    for k, c in enumerate(labels):
        st = stats[c]
        length = 90 * st["rel_length"]
        hwid = max(2.0, 0.5 * st["aspect"] * length)
        side = int(np.ceil(length + 4 * hwid)) + 6
        g = draw_rod((side, side + 3), 20.0 + 37 * k, length, hwid, "dark", 3.0, None, seed=2000 + k,
                     ink_profile=st["ink_profile"], width_profile=st["width_profile"])
        r = P.preprocess_full(g, P.DARK_ON_LIGHT)
        imgs.append(r["image"]); L.append(r["length"]); A.append(r["area"])
    return np.stack(imgs), P.size_features(L, A), labels


def ort_session(model):
    """onnxruntime on one thread, running the QDQ graph as written: every DequantizeLinear, float
    Conv and QuantizeLinear by its ONNX definition. Its extended optimisations would fuse them into
    int8 kernels that, on an x86-64 CPU without VNNI (AVX2 only), saturate u8 x s8 pair sums at
    int16: on such a CPU (onnxruntime 1.32) the shipped model's identity logits moved by up to 5.3
    and 4 of the 24 classes changed, while this unfused run is within 0.0095 of the outputs
    committed before (made with the fused kernels on another CPU). Unfused, the fixtures are the
    same on every CPU."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def parity(name, gold_img, gold_size):
    from .export import logit_tolerance
    model = os.path.join(ROOT, "models", f"{name}.onnx")
    with open(os.path.join(ROOT, "models", f"{name}.card.json")) as f:
        card = json.load(f)
    rimg, rsize, rlab = renders(card)
    rng = np.random.default_rng(7)
    nimg = rng.random((4, 1, P.S, P.S)).astype(np.float32)
    nsize = rng.uniform(-1, 1, (4, 2)).astype(np.float32)
    img = np.concatenate([gold_img, rimg, nimg]).astype(np.float32)
    size = np.concatenate([gold_size, rsize, nsize]).astype(np.float32)
    sess = ort_session(model)
    heads = ["identity", "structure"] + [o.name for o in sess.get_outputs() if o.name == "homolog"]
    outs = dict(zip(heads, sess.run(heads, dict(image=img, size=size))))
    ident = outs["identity"]
    os.makedirs(PARITY, exist_ok=True)
    for fn, arr in [("image", img), ("size", size)] + list(outs.items()):
        write_f32(os.path.join(PARITY, f"{fn}.f32"), arr)
    stale = os.path.join(PARITY, "homolog.f32")
    if "homolog" not in outs and os.path.exists(stale):
        os.remove(stale)
    tol, scale, l1 = logit_tolerance(model)
    n = len(img)
    meta = dict(
        N=n, model=f"{name}.onnx", model_sha256=sha256(model),
        shapes=dict(image=[n, 1, P.S, P.S], size=[n, 2], **{k: list(v.shape) for k, v in outs.items()}),
        homolog_dim=int(outs["homolog"].shape[1]) if "homolog" in outs else 0,
        format="raw little-endian float32, row-major",
        rows=dict(golden=[0, 8], renders=[8, 8 + len(rimg)], noise=[8 + len(rimg), n]),
        render_labels=[LABELS[c] for c in rlab],
        identity_argmax=[int(v) for v in ident.argmax(1)],
        logit_tolerance=tol,
        logit_tolerance_comment=(
            "one quantization step in logits: the heads are float Gemms fed by the dequantized "
            "output of the last quantized activation (through GlobalAveragePool, which cannot "
            f"enlarge a step); step = activation scale {scale:.6g} x max L1 norm of a head weight "
            f"row {l1:.6g}. A runtime that rounds one step differently stays within this."),
        generated_by="python -m karyotrain.fixtures (onnxruntime, 1 thread, graph as written: ORT_ENABLE_BASIC)")
    with open(os.path.join(PARITY, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return img, size


def tiny_homolog(img, size):
    """The parity test's homolog case: a tiny int8 model with a homolog head (karyotrain.tiny)
    and onnxruntime's outputs for the parity inputs (tests/fixtures/parity/{image,size}.f32)."""
    import onnxruntime as ort
    from . import tiny
    from .export import logit_tolerance
    model = tiny.build(TINY_HOMOLOG, img, size)
    heads = ["identity", "structure", "homolog"]
    outs = dict(zip(heads, ort_session(model).run(heads, dict(image=img, size=size))))
    for fn, arr in outs.items():
        write_f32(os.path.join(TINY_HOMOLOG, f"{fn}.f32"), arr)
    tol, scale, l1 = logit_tolerance(model)
    top2 = np.sort(outs["identity"], 1)[:, -2:]
    n = len(img)
    meta = dict(
        N=n, model=os.path.basename(model), model_sha256=sha256(model),
        inputs="tests/fixtures/parity/image.f32 and size.f32",
        shapes={k: list(v.shape) for k, v in outs.items()},
        homolog_dim=int(outs["homolog"].shape[1]),
        format="raw little-endian float32, row-major",
        identity_argmax=[int(v) for v in outs["identity"].argmax(1)],
        identity_top2_gap=[round(float(v), 6) for v in top2[:, 1] - top2[:, 0]],
        logit_tolerance=tol,
        logit_tolerance_comment=(
            f"one quantization step in logits, as for the shipped model: activation scale {scale:.6g} "
            f"x max L1 norm of a head weight row {l1:.6g}"),
        generated_by=f"python -m karyotrain.fixtures (karyotrain.tiny; onnxruntime {ort.__version__}, 1 thread, ORT_ENABLE_BASIC)")
    with open(os.path.join(TINY_HOMOLOG, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


def cell_step():
    """Synthetic cells (no model, no data): noisy class probabilities in which some pairs of
    crops of two classes each look a little more like the other class (the slots alone swap
    them), homolog vectors near their class's centre, and the classes metrics.assign_cells
    gives them with and without the pairing term."""
    from .metrics import assign_cells
    rng = np.random.default_rng(11)
    cells = []
    for extra, sex in [([], [22, 22]), ([], [22, 23]), ([20], [22, 23]), ([], [22])]:   # +21; 45,X
        truth = np.array(sorted([c for c in range(22) for _ in range(2)] + extra) + sex)
        logits = rng.normal(0, 1.0, (len(truth), 24)) + 6.0 * np.eye(24)[truth]
        crossed = rng.choice(44, (4, 2), replace=False)     # autosome crops, two by two
        for i, j in crossed:
            logits[i, truth[j]] = logits[i, truth[i]] + rng.uniform(-0.5, 1.0)
            logits[j, truth[i]] = logits[j, truth[j]] + rng.uniform(-0.5, 1.0)
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
        centres = rng.normal(0, 1, (24, 8))
        homolog = centres[truth] + rng.normal(0, 0.6, (len(truth), 8))
        homolog = (homolog / np.linalg.norm(homolog, axis=1, keepdims=True)).astype(np.float32)
        logp, ids = np.log(probs.astype(np.float64)), np.zeros(len(truth))
        cells.append(dict(identity=probs.tolist(), homolog=homolog.tolist(),
                          slots=assign_cells(logp, ids).tolist(),
                          paired=assign_cells(logp, ids, homolog, CELL_STEP_WEIGHT).tolist()))
    with open(CELL_STEP, "w") as f:
        json.dump(dict(homolog_weight=CELL_STEP_WEIGHT, cells=cells,
                       generated_by="python -m karyotrain.fixtures (karyotrain.metrics.assign_cells)"), f)


def seg_frame(hw=(397, 610), seed=31):
    """A dark-on-light frame (no shared data): banded rods, two of them crossing, two touching side by
    side, a speck, uneven illumination and noise."""
    rng = np.random.default_rng(seed)
    h, w = hw
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    g = 228.0 - 18.0 * (x / w) - 8.0 * (y / h)
    rods = [(60, 80, 10.0, 70, 6.0), (200, 90, 80.0, 90, 6.5), (200, 90, 170.0, 80, 6.0),
            (420, 120, 92.0, 60, 5.5), (434, 124, 88.0, 64, 5.5), (330, 280, 35.0, 110, 7.0),
            (520, 300, 140.0, 50, 5.0), (110, 300, 60.0, 30, 4.5)]
    for k, (cx, cy, ang, ln, hwid) in enumerate(rods):
        side = int(ln + 4 * hwid) | 1
        patch = 235.0 - draw_rod((side, side), ang, ln, hwid, "dark", 0.0, None, seed=3000 + k).astype(np.float64)
        y0, x0 = cy - side // 2, cx - side // 2
        g[y0:y0 + side, x0:x0 + side] -= patch
    g[370:373, 40:42] -= 120.0                                # a speck
    g = g + rng.normal(0, 3.0, g.shape)
    return np.clip(np.round(g), 0, 255).astype(np.uint8)


def segmenter():
    """The segmenter's preprocessing and network checks: a tiny untrained fully-convolutional net
    with the karyoscreen-seg-v1 input and output, exported as the classifier is (opset OPSET, no
    dynamo); one generated frame, its input tensor from karyotrain.segprep and PyTorch's maps."""
    import torch
    from torch import nn
    from . import segprep
    from .export import OPSET
    torch.manual_seed(17)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                        nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 1)).eval()
    os.makedirs(SEGMENTER, exist_ok=True)
    name = "tiny_segmenter"
    onnx_path = os.path.join(SEGMENTER, f"{name}.onnx")
    torch.onnx.export(net, torch.zeros(1, 1, 32, 48), onnx_path, dynamo=False, opset_version=OPSET,
                      input_names=["frame"], output_names=["maps"],
                      dynamic_axes=dict(frame={2: "H", 3: "W"}, maps={2: "h", 3: "w"}))
    # max_side 256 (the real card says 1024): the 610 x 397 frame is scaled by k = 3 with partial
    # edge blocks, so the block mean is checked too.
    prep = dict(segprep.PREPROCESSING, max_side=256)
    card = dict(
        name=name, kind="segmenter", card_version=1, created="fixture", onnx_file=f"{name}.onnx",
        onnx_sha256=sha256(onnx_path), spec="karyoscreen-seg-v1",
        input=dict(name="frame", shape=[1, 1, "H", "W"], dtype="float32"),
        output=dict(name="maps", channels=list(segprep.CHANNELS), stride=segprep.STRIDE),
        preprocessing=prep, instances=dict(min_core_pixels=3, min_object_pixels=40),
        training=dict(note="untrained: random weights (torch seed 17), for the runtime checks only"), metrics={})
    with open(os.path.join(SEGMENTER, f"{name}.card.json"), "w") as f:
        json.dump(card, f, indent=1)
    g = seg_frame()
    Image.fromarray(g, mode="L").save(os.path.join(SEGMENTER, "frame.png"), optimize=False)
    x, (w, h, k) = segprep.frame_to_input(g, prep)
    with torch.no_grad():
        maps = net(torch.from_numpy(x)).numpy()
    write_f32(os.path.join(SEGMENTER, "input.f32"), x)
    write_f32(os.path.join(SEGMENTER, "maps.f32"), maps)
    meta = dict(frame="frame.png", frame_size=[g.shape[1], g.shape[0]], scaled_size=[w, h], k=k,
                shapes=dict(input=list(x.shape), maps=list(maps.shape)), model_sha256=card["onnx_sha256"],
                input_sha256=hashlib.sha256(np.ascontiguousarray(x, "<f4").tobytes()).hexdigest(),
                map_tolerance=1e-4, format="raw little-endian float32, row-major",
                generated_by=f"python -m karyotrain.fixtures (karyotrain.segprep, torch {torch.__version__})")
    with open(os.path.join(SEGMENTER, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description="write tests/fixtures/golden, cell_step.json, segmenter, parity and tiny_homolog")
    ap.add_argument("--name", default="karyoscreen")
    ap.add_argument("--golden-only", action="store_true")
    args = ap.parse_args(argv)
    gi, gs = golden()
    cell_step()
    segmenter()
    if not args.golden_only:
        tiny_homolog(*parity(args.name, gi, gs))


if __name__ == "__main__":
    main()
