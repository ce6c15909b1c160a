//! `adapt` through the real binary on real crops: a "lab" made of BioImLab Q-band val cells
//! (`$KARYOSCREEN_DATA/bioimlab_qband`) whose labels for chromosomes 1 and 2, 3 and 4, 5 and 6 are swapped, a
//! convention the built-in model cannot know. The adapted bundle must learn it from the lab's
//! crops, be signed by the lab's key (and refused without it), and its card must name the base
//! model and the exact set it learnt from.

use std::path::Path;

use sha2::{Digest, Sha256};

mod common;
use common::{data_set, karyoscreen, scratch, LabelRow};

/// The lab's convention: 1 <-> 2, 3 <-> 4, 5 <-> 6.
fn swapped(label: usize) -> usize {
    match label {
        0..=5 => label ^ 1,
        other => other,
    }
}

/// The first `cells` val cells of BioImLab, copied to `dir` with their classes swapped;
/// -> the sha256 over labels.csv and then each crop in cell order, as the card must record it.
fn write_lab_set(dir: &Path, cells: usize) -> String {
    let source = data_set("bioimlab_qband");
    let rows: Vec<LabelRow> =
        csv::Reader::from_path(source.join("labels.csv")).unwrap().deserialize().map(|r| r.unwrap()).collect();
    let mut ids: Vec<&str> = rows.iter().filter(|r| r.split == "val").map(|r| r.cell_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(cells);
    let mut kept: Vec<&LabelRow> =
        rows.iter().filter(|r| r.split == "val" && ids.contains(&r.cell_id.as_str())).collect();
    kept.sort_by(|a, b| a.cell_id.cmp(&b.cell_id));
    let mut csv = String::from("path,label_idx,cell_id,split\n");
    for (i, row) in kept.iter().enumerate() {
        let name = format!("crop{i:03}.png");
        std::fs::copy(source.join(&row.path), dir.join(&name)).unwrap();
        csv += &format!("{name},{},{},lab\n", swapped(row.label_idx), row.cell_id);
    }
    std::fs::write(dir.join("labels.csv"), &csv).unwrap();
    let mut digest = Sha256::new();
    digest.update(csv.as_bytes());
    for i in 0..kept.len() {
        digest.update(std::fs::read(dir.join(format!("crop{i:03}.png"))).unwrap());
    }
    hex::encode(digest.finalize())
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Per-crop accuracy that `eval --json` reports for `model` (None: the built-in one).
fn crop_accuracy(set: &Path, model: Option<(&Path, &Path)>) -> f64 {
    let mut args = vec!["eval".to_string(), set.display().to_string(), "--json".into()];
    if let Some((onnx, key)) = model {
        args.extend(["--model".into(), onnx.display().to_string(), "--trusted-key".into(), key.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report: serde_json::Value = serde_json::from_str(&stdout(&karyoscreen(&args))).unwrap();
    report["crop"]["accuracy"].as_f64().unwrap()
}

#[test]
fn adapt_learns_a_labs_convention_and_signs_what_it_learnt() {
    let root = scratch("adapt", "swapped");
    let lab = root.join("lab");
    std::fs::create_dir_all(&lab).unwrap();
    let set_sha256 = write_lab_set(&lab, 6);
    let key = root.join("lab.key");
    stdout(&karyoscreen(&["model", "keygen", "--out", key.to_str().unwrap()]));
    let key_pub = root.join("lab.key.pub");
    let stem = root.join("lab-model");
    let said = stdout(&karyoscreen(&[
        "adapt",
        lab.to_str().unwrap(),
        "--out",
        stem.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--strength",
        "0",
    ]));
    assert!(said.contains("adapted karyoscreen to"), "{said}");
    let onnx = root.join("lab-model.onnx");
    for file in ["lab-model.onnx", "lab-model.card.json", "lab-model.sig"] {
        assert!(root.join(file).is_file(), "{file} not written");
    }

    // The built-in model calls the swapped classes by their usual names; the adapted one learnt them.
    let before = crop_accuracy(&lab, None);
    let after = crop_accuracy(&lab, Some((&onnx, &key_pub)));
    assert!(after >= 0.95 && after > before + 0.1, "adapted {after:.3} vs built-in {before:.3} on the lab's own crops");

    // Signed by the lab's key: verified with it, refused under the release key alone.
    stdout(&karyoscreen(&["model", "verify", onnx.to_str().unwrap(), "--trusted-key", key_pub.to_str().unwrap()]));
    let refused = karyoscreen(&["model", "verify", onnx.to_str().unwrap()]);
    assert!(!refused.status.success(), "a bundle signed by the lab's key passed under the release key alone");

    // The card names the base model and the exact set.
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("lab-model.card.json")).unwrap()).unwrap();
    let base: serde_json::Value = serde_json::from_str(include_str!("../models/karyoscreen.card.json")).unwrap();
    let a = &card["adaptation"];
    assert_eq!(card["name"], "lab-model");
    assert_eq!(a["base_sha256"], base["onnx_sha256"]);
    assert_eq!(a["set_sha256"], set_sha256.as_str());
    assert_eq!(a["cells"], 6);
    let rows = std::fs::read_to_string(lab.join("labels.csv")).unwrap().lines().count() - 1;
    assert_eq!(a["crops"].as_u64().unwrap() + a["rejected"].as_u64().unwrap(), rows as u64);
    assert!(a["crop_accuracy_after"].as_f64().unwrap() > a["crop_accuracy_before"].as_f64().unwrap());
    assert!(card.get("base_metrics").is_some() && card.get("metrics").is_none());
}
