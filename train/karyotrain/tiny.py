"""A tiny model with a homolog head, for the parity test's homolog case (the shipped model has no
homolog output, so without it the runtime's homolog path would never meet onnxruntime).

KaryoNet(arch `8s2,16s2`, pair_dim 4) with random weights from a fixed seed (its BatchNorm
statistics are those of the calibration inputs, so activations have a realistic range), exported
and int8-quantized exactly as export.py does the shipped model, with a card the runtime's card
parser and loader accept. Untrained: it tests the runtimes, not screening.
"""
import json
import os
import tempfile

import onnx
import onnxruntime as ort
import torch

from . import metrics as Mx
from . import preprocess as P
from .data import LABELS
from .export import OPSET, Batches, export_onnx, logit_tolerance, quantize, sha256
from .model import ARM_LABELS, POSITION_LABELS, STRUCTURE_LABELS, KaryoNet, n_params

NAME = "tiny_homolog"
ARCH = "8s2,16s2"
PAIR_DIM = 4
SEED = 5
HOMOLOG_WEIGHT = 1.0
# Untrained heads would give every input nearly one output (one class for all 24 parity inputs):
# their weights are divided by the features' mean standard deviation over the calibration
# inputs, and all but the homolog head read the features centred on their mean, so outputs
# differ from input to input. The homolog head is not centred: an input near the mean
# would get a short vector before normalisation, whose direction the dequantized plan's unrounded
# activations turn (a constant background rounds to one step for the whole crop): centred, the
# runtimes' cosine fell to 0.998 for 2 of generator seeds 0-12; not centred, it stays >= 0.9996
# and the vectors still point many ways (least cosine between inputs 0.63 at most).


def features(net, image, size):
    """What KaryoNet's heads read (eval mode): pooled conv features and the size features."""
    f = net.pool(net.features(image)).flatten(1)
    return torch.cat([f, torch.relu(net.size_fc(size))], 1)


def build(out_dir, img, size, name=NAME):
    """Writes `<out_dir>/<name>.onnx` (int8 QDQ, calibrated on img/size) and its card; returns the
    ONNX path."""
    torch.manual_seed(SEED)
    net = KaryoNet(ARCH, pair_dim=PAIR_DIM)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:                      # running statistics := the statistics of these inputs
        bn.momentum = 1.0
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(img), torch.from_numpy(size))
    net.eval()
    with torch.no_grad():
        z = features(net, torch.from_numpy(img), torch.from_numpy(size))
        mean, sd = z.mean(0), z.std(0).mean()
        for head in (net.identity, net.structure, net.arm, net.position, net.homolog):
            head.weight.div_(sd)
            if head is not net.homolog:
                head.bias.sub_(head.weight @ mean)
    os.makedirs(out_dir, exist_ok=True)
    qpath = os.path.join(out_dir, f"{name}.onnx")
    with tempfile.TemporaryDirectory() as tmp:
        fpath = os.path.join(tmp, f"{name}.float.onnx")
        export_onnx(net, fpath)
        quantize(fpath, qpath, Batches(dict(image=img, size=size)))
        float_bytes = os.path.getsize(fpath)
    q = onnx.load(qpath)
    assert not {n.domain for n in q.graph.node if n.domain}, "non-standard ops in the quantized model"
    card = dict(
        name=name, card_version=1,
        onnx_file=os.path.basename(qpath), onnx_sha256=sha256(qpath),
        inputs=[dict(name="image", shape=["N", 1, P.S, P.S], dtype="float32"),
                dict(name="size", shape=["N", 2], dtype="float32")],
        outputs=[dict(name="identity", labels=LABELS), dict(name="structure", labels=STRUCTURE_LABELS),
                 dict(name="arm", labels=ARM_LABELS), dict(name="position", labels=POSITION_LABELS),
                 dict(name="homolog", labels=[f"e{k}" for k in range(PAIR_DIM)])],
        preprocessing={k: P.PARAMS[k] for k in ("spec", "input_size", "margin", "polarity_threshold",
                                                "contrast_percentile", "smoothing", "size_features")},
        cell_assignment=dict(capacity=Mx.CAPACITY, extra_slot_cost=Mx.EXTRA_SLOT_COST,
                             missing_slot_cost=Mx.MISSING_SLOT_COST, homolog_weight=HOMOLOG_WEIGHT),
        quantization=dict(tool=f"onnxruntime {ort.__version__} quantize_static", format="QDQ",
                          per_channel=True, activation_type="QUInt8", weight_type="QInt8",
                          op_types_to_quantize=["Conv", "Relu"], heads="float",
                          calibration_crops=int(len(img)), opset=OPSET,
                          float_bytes=float_bytes, int8_bytes=os.path.getsize(qpath),
                          logit_step=round(logit_tolerance(qpath)[0], 6)),
        training=dict(command="python -m karyotrain.fixtures", arch=ARCH, pair_dim=PAIR_DIM, seed=SEED,
                      params=n_params(net), epochs=0,
                      note="UNTRAINED: random weights (fixed seed), BatchNorm statistics of the "
                           "calibration inputs; a parity test fixture, not a screening model"),
    )
    with open(os.path.join(out_dir, f"{name}.card.json"), "w") as f:
        json.dump(card, f, indent=1)
    return qpath
