"""The documented training command, end to end on a few real cells: train (with the homolog
head), export, int8, card, then the structure branch grafted on."""
import hashlib
import json
import os

import numpy as np
import onnxruntime as ort
import pytest

from karyotrain import train

DATA = os.environ.get("KARYOSCREEN_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))


def test_short_training_run_writes_a_consistent_int8_model_and_card(tmp_path):
    gband = os.path.join(DATA, "pki3_gband")
    if not os.path.isdir(gband):
        pytest.fail(f"{gband}: the shared data set is required for this test (set KARYOSCREEN_DATA)")
    train.main(["--data", gband, "--limit-cells", "2", "--epochs", "1", "--out", str(tmp_path),
                "--name", "smoke-test", "--device", "cpu", "--pair-dim", "4"])
    onnx_path = tmp_path / "smoke-test.onnx"
    card = json.loads((tmp_path / "smoke-test.card.json").read_text())
    assert card["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert [i["name"] for i in card["inputs"]] == ["image", "size"]
    assert len(card["outputs"][0]["labels"]) == 24
    assert card["preprocessing"]["spec"] == "karyoscreen-pre-v1"
    assert len(card["class_stats"]) == 24
    session = ort.InferenceSession(str(onnx_path))
    assert [o["name"] for o in card["outputs"]] == ["identity", "structure", "arm", "position", "homolog"]
    assert len(card["outputs"][4]["labels"]) == 4 and card["cell_assignment"]["homolog_weight"] == 1.0
    assert card["outputs"][2]["labels"] == ["p", "q"] and card["outputs"][3]["labels"] == ["p_ter_fraction"]
    identity, structure, arm, position, homolog = session.run(
        ["identity", "structure", "arm", "position", "homolog"],
        {"image": np.zeros((3, 1, 64, 64), np.float32), "size": np.zeros((3, 2), np.float32)})
    assert identity.shape == (3, 24) and structure.shape == (3, 5)
    assert arm.shape == (3, 2) and position.shape == (3, 1) and ((0 <= position) & (position <= 1)).all()
    assert homolog.shape == (3, 4) and np.allclose(np.linalg.norm(homolog, axis=1), 1.0, atol=1e-4)
    assert any(n.op_type == "DequantizeLinear" for n in __import__("onnx").load(str(onnx_path)).graph.node)

    # the structure branch, trained on a few cells' SYNTHETIC events and grafted on that model
    from karyotrain import train_structure
    before, before_homolog = session.run(
        ["identity", "homolog"], {"image": np.random.default_rng(0).random((3, 1, 64, 64), np.float32),
                                  "size": np.zeros((3, 2), np.float32)})
    base = tmp_path / "base.onnx"
    base.write_bytes(onnx_path.read_bytes())
    train_structure.main(["--base", str(base), "--data", gband, "--limit-cells", "2", "--epochs", "1",
                          "--synth-events", "4", "--synth-eval-events", "4", "--out", str(tmp_path),
                          "--name", "smoke-test"])
    card = json.loads((tmp_path / "smoke-test.card.json").read_text())
    assert card["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert 0.0 <= card["structure_threshold"] <= 1.0 and "StructureNet" in card["structure_head"]
    assert card["synthetic"]["int8"]["test"]["all"]["n_abnormal"] > 0
    grafted = ort.InferenceSession(str(onnx_path))
    assert [o.name for o in grafted.get_outputs()] == ["identity", "structure", "arm", "position", "homolog"]
    after = grafted.run(["identity", "homolog"], {"image": np.random.default_rng(0).random((3, 1, 64, 64), np.float32),
                                                  "size": np.zeros((3, 2), np.float32)})
    assert np.array_equal(before, after[0]), "grafting the branch changed the identity output"
    assert np.array_equal(before_homolog, after[1]), "grafting the branch changed the homolog output"
