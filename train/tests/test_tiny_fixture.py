"""The parity test's homolog case: the tiny model (karyotrain.tiny) and the committed fixture."""
import hashlib
import json
import os

import numpy as np

from karyotrain import fixtures, tiny
from karyotrain import preprocess as P
from karyotrain.data import LABELS
from karyotrain.model import STRUCTURE_LABELS

FIXTURE = fixtures.TINY_HOMOLOG


def read_f32(folder, name, cols):
    return np.fromfile(os.path.join(folder, name), "<f4").reshape(-1, cols)


def parity_inputs():
    img = read_f32(fixtures.PARITY, "image.f32", P.S * P.S).reshape(-1, 1, P.S, P.S)
    return img, read_f32(fixtures.PARITY, "size.f32", 2)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_tiny_model_has_a_homolog_head_and_a_card_the_runtime_reads(tmp_path):
    img, size = parity_inputs()
    path = tiny.build(str(tmp_path), img, size)
    with open(tmp_path / f"{tiny.NAME}.card.json") as f:
        card = json.load(f)
    # what src/integrity/card.rs and the loader require
    assert card["onnx_file"] == os.path.basename(path) and card["onnx_sha256"] == sha256(path)
    assert [i["name"] for i in card["inputs"]] == ["image", "size"]
    assert card["inputs"][0]["shape"] == ["N", 1, P.S, P.S]
    assert [o["name"] for o in card["outputs"]] == ["identity", "structure", "arm", "position", "homolog"]
    assert card["outputs"][0]["labels"] == LABELS and card["outputs"][1]["labels"] == STRUCTURE_LABELS
    assert len(card["outputs"][4]["labels"]) == tiny.PAIR_DIM
    assert card["preprocessing"] == {k: P.PARAMS[k] for k in card["preprocessing"]}
    assert {"capacity", "extra_slot_cost", "homolog_weight"} <= set(card["cell_assignment"])
    assert os.path.getsize(path) < 32_000

    names = ["identity", "structure", "homolog"]
    identity, structure, homolog = fixtures.ort_session(path).run(names, dict(image=img, size=size))
    n = len(img)
    assert identity.shape == (n, 24) and structure.shape == (n, 5) and homolog.shape == (n, tiny.PAIR_DIM)
    np.testing.assert_allclose(np.linalg.norm(homolog, axis=1), 1.0, atol=1e-5)
    # untrained, but its heads read standardized inputs: outputs differ from input to input
    assert len(set(identity.argmax(1))) >= 4
    assert (homolog @ homolog.T).min() < 0.0


def test_committed_fixture_is_onnxruntimes_output_of_the_committed_model():
    onnx = os.path.join(FIXTURE, f"{tiny.NAME}.onnx")
    with open(os.path.join(FIXTURE, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(FIXTURE, f"{tiny.NAME}.card.json")) as f:
        card = json.load(f)
    assert meta["model_sha256"] == card["onnx_sha256"] == sha256(onnx)
    img, size = parity_inputs()
    assert meta["N"] == len(img) and meta["homolog_dim"] == tiny.PAIR_DIM
    names = ["identity", "structure", "homolog"]
    for name, ours in zip(names, fixtures.ort_session(onnx).run(names, dict(image=img, size=size))):
        theirs = read_f32(FIXTURE, f"{name}.f32", ours.shape[1])
        np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=name)
    assert meta["identity_argmax"] == [int(v) for v in read_f32(FIXTURE, "identity.f32", 24).argmax(1)]


def test_parity_outputs_do_not_depend_on_the_cpus_int8_kernels():
    """The shipped model's committed parity outputs are onnxruntime's run of the QDQ graph as
    written (fixtures.ort_session), which every CPU computes alike."""
    model = os.path.join(fixtures.ROOT, "models", "karyoscreen.onnx")
    img, size = parity_inputs()
    identity, = fixtures.ort_session(model).run(["identity"], dict(image=img, size=size))
    np.testing.assert_allclose(identity, read_f32(fixtures.PARITY, "identity.f32", 24), atol=1e-3)
