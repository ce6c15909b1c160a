"""Composed frames are also written in the frames_* layout that `karyoscreen eval-frames` reads."""
import csv
import json
import os

from karyotrain.compose import write_frames_layout


def test_frames_csv_and_annotations_describe_every_composed_frame(tmp_path):
    truth = {
        "c1.2": dict(count=2, karyotype="2,X", size=[120, 90], background=230,
                     objects=[dict(label="1", bbox=[10, 12, 8, 30]), dict(label="X", bbox=[40, 20, 9, 33])]),
        "c2.1": dict(count=1, karyotype="1,?,-1", size=[60, 60], background=230,
                     objects=[dict(label="1", bbox=[5, 5, 8, 30])], synthetic_structural=True),
    }
    write_frames_layout(str(tmp_path), truth, "test", "G", "/data/pki3_gband", {"c1.2": "c1", "c2.1": "c2"})
    with open(tmp_path / "frames.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["c1.2.png", "c2.1.png"]
    assert rows[0] == dict(image="c1.2.png", ann="ann/c1.2.json", group_id="c1", split="test", count="2",
                           karyotype="2,X", band="G")
    ann = json.loads((tmp_path / rows[0]["ann"]).read_text())
    assert (ann["width"], ann["height"], ann["count"], ann["karyotype"]) == (120, 90, 2, "2,X")
    assert ann["instances"] == [dict(bbox=[10, 12, 8, 30], label="1"), dict(bbox=[40, 20, 9, 33], label="X")]
    assert ann["source"] == dict(composed_from="pki3_gband", split="test")
    assert json.loads((tmp_path / "ann" / "c2.1.json").read_text())["synthetic_structural"] is True
    assert os.path.isdir(tmp_path / "ann")
