//! The binary as a user runs it: the demo, one analysed frame, and clear one-line errors.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::karyoscreen;

fn scratch(name: &str) -> PathBuf {
    common::scratch("cli", name)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn demo_runs_every_frame_and_lights_leds() {
    let out = karyoscreen(&["demo"]);
    assert!(out.status.success(), "demo failed: {}", stderr(&out));
    let text = stdout(&out);
    let frames = text.lines().filter(|l| l.starts_with("frame ")).count();
    assert_eq!(frames, karyoscreen::tools::demo::DEMO_CELLS.len(), "{text}");
    assert!(text.contains("LED ready"), "{text}");
    let summary = text.lines().find(|l| l.contains("detected karyotypes match")).expect("summary line");
    let matched: usize = summary.split('/').next().unwrap().trim().parse().unwrap();
    assert!(matched >= 1, "no demo karyotype was detected right: {text}");
}

#[test]
fn analyze_json_has_the_documented_fields() {
    let dir = scratch("analyze");
    let frame = dir.join("frame.png");
    let truth = karyoscreen(&["demo", "--write-frame", "2", "--out", frame.to_str().unwrap()]);
    assert!(truth.status.success(), "{}", stderr(&truth));
    let truth: serde_json::Value = serde_json::from_str(stdout(&truth).trim()).unwrap();
    assert_eq!(truth["karyotype"], "47,XY,+21");

    let out = karyoscreen(&["analyze", frame.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let count = result["count"].as_u64().unwrap();
    assert!((40..=52).contains(&count), "segmentation found {count} objects on a 47-chromosome frame");
    let karyotype = result["karyotype"].as_str().unwrap();
    assert!(!karyotype.contains(' ') && karyotype.starts_with(&count.to_string()));
    assert!(["normal", "abnormal", "indeterminate"].contains(&result["verdict"].as_str().unwrap()));
    assert!(!result["reasons"].as_array().unwrap().is_empty());
    let objects = result["objects"].as_array().unwrap();
    assert_eq!(objects.len() as u64, count);
    for key in ["bbox", "label", "confidence", "structure", "structure_confidence"] {
        assert!(objects[0].get(key).is_some(), "object lacks {key}: {}", objects[0]);
    }
    assert!(result["timings"]["infer_ms"].as_f64().unwrap() > 0.0);
}

/// One line on stderr naming the file, a non-zero exit, no panic.
fn assert_clean_error(out: &Output, names: &str) {
    let err = stderr(out);
    assert!(!out.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "error must be one line: {err}");
    assert!(err.contains(names), "error must name {names}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_frames_give_one_line_errors() {
    let dir = scratch("bad-frames");
    let missing = dir.join("missing.png");
    assert_clean_error(&karyoscreen(&["analyze", missing.to_str().unwrap()]), "missing.png");

    let truncated = dir.join("truncated.png");
    let frame = dir.join("frame.png");
    assert!(karyoscreen(&["demo", "--write-frame", "1", "--out", frame.to_str().unwrap()]).status.success());
    let bytes = std::fs::read(&frame).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    assert_clean_error(&karyoscreen(&["analyze", truncated.to_str().unwrap()]), "truncated.png");

    let text = dir.join("notes.png");
    std::fs::write(&text, "not an image").unwrap();
    assert_clean_error(&karyoscreen(&["analyze", text.to_str().unwrap()]), "notes.png");
}

#[test]
fn a_model_that_does_not_match_its_card_is_refused() {
    let dir = scratch("tampered");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let onnx = dir.join("m.onnx");
    let mut bytes = std::fs::read(root.join("karyoscreen.onnx")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&onnx, bytes).unwrap();
    std::fs::copy(root.join("karyoscreen.card.json"), dir.join("m.card.json")).unwrap();
    let out = karyoscreen(&["demo", "--model", onnx.to_str().unwrap()]);
    assert_clean_error(&out, "m.onnx");
    assert!(stderr(&out).contains("sha256"), "{}", stderr(&out));

    let lonely = dir.join("lonely.onnx");
    std::fs::copy(root.join("karyoscreen.onnx"), &lonely).unwrap();
    assert_clean_error(&karyoscreen(&["demo", "--model", lonely.to_str().unwrap()]), "lonely.card.json");
}

#[test]
fn bench_prints_every_stage() {
    let out = karyoscreen(&["bench", "--rounds", "1", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    for stage in ["segment", "preprocess", "infer_per_cell", "analyse", "total"] {
        assert!(report[stage]["median_ms"].as_f64().unwrap() >= 0.0, "{stage}: {report}");
    }
    assert!(report["total"]["median_ms"].as_f64().unwrap() > report["infer_per_cell"]["median_ms"].as_f64().unwrap());
    assert!(report["objects_per_frame"].as_f64().unwrap() > 40.0);
    assert!(report["peak_rss_mb"].as_f64().unwrap() > 1.0);
    let threads: Vec<u64> = report["by_threads"].as_array().unwrap().iter().map(|t| t["threads"].as_u64().unwrap()).collect();
    assert_eq!(threads[0], 1, "{report}");
    assert_eq!(report["plan"], "dequantized");
}

#[test]
fn bench_takes_a_plan_and_threads_and_saves_inputs() {
    let dir = scratch("bench-inputs");
    let frame = dir.join("frame.png");
    let out = karyoscreen(&["demo", "--write-frame", "1", "--out", frame.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let inputs = dir.join("inputs");
    let out = karyoscreen(&[
        "bench", "--rounds", "1", "--json", "--plan", "as-is", "--threads", "2",
        "--save-inputs", inputs.to_str().unwrap(), frame.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["plan"], "as-is");
    let threads: Vec<u64> = report["by_threads"].as_array().unwrap().iter().map(|t| t["threads"].as_u64().unwrap()).collect();
    assert_eq!(threads, [1, 2]);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(inputs.join("cells.json")).unwrap()).unwrap();
    let crops: u64 = meta["crops_per_cell"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum();
    let side = meta["input_size"].as_u64().unwrap();
    assert_eq!(meta["crops_per_cell"].as_array().unwrap().len(), 1);
    assert_eq!(std::fs::metadata(inputs.join("image.f32")).unwrap().len(), crops * side * side * 4);
    assert_eq!(std::fs::metadata(inputs.join("size.f32")).unwrap().len(), crops * 2 * 4);
    let out = karyoscreen(&["bench", "--plan", "int4"]);
    assert!(!out.status.success());
}

#[test]
fn record_keeps_one_parseable_line_per_cell() {
    let dir = scratch("record");
    let record = dir.join("results.jsonl");
    let out = karyoscreen(&["demo", "--record", record.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&record).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), karyoscreen::tools::demo::DEMO_CELLS.len());
    for line in &lines {
        assert_eq!(line["model_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(line["frame_sha256"].as_str().unwrap().len(), 64);
        assert!(line["karyotype"].is_string() && line["verdict"].is_string());
    }
}
