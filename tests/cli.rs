//! The binary as a user runs it: the demo, one analysed frame, and clear one-line errors.

use std::path::{Path, PathBuf};
use std::process::Output;

use karyoscreen::device::indicate::Led;
use karyoscreen::integrity::card::sha256_hex;
use karyoscreen::integrity::record::frame_sha256;
use karyoscreen::tools::demo::{render_cell, DEMO_CELLS};

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
fn demo_reads_every_karyotype_right_and_lights_its_leds() {
    let out = karyoscreen(&["demo"]);
    assert!(out.status.success(), "demo failed: {}", stderr(&out));
    let text = stdout(&out);
    let truths: Vec<&str> = DEMO_CELLS.iter().map(|(k, _)| *k).collect();
    assert_eq!(truths, ["46,XX", "47,XY,+21", "46,XY", "45,X", "47,XX,+18", "47,XXY"], "the demo's cells (README)");
    let frames: Vec<&str> = text.lines().filter(|l| l.starts_with("frame ")).collect();
    assert_eq!(frames.len(), DEMO_CELLS.len(), "{text}");
    for (i, (line, (truth, verdict))) in frames.iter().zip(&DEMO_CELLS).enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let n = format!("{}:", i + 1);
        assert_eq!(words[1..7], [n.as_str(), "true", truth, "detected", truth, "(match)"], "{line}");
        assert_eq!(words[7..9], ["LED", Led::for_verdict(*verdict).name()], "{line}");
        assert!(line.contains(&format!(" verdict {verdict}: ")), "{line}");
    }
    let summary: Vec<&str> = text.lines().filter(|l| l.contains("detected karyotypes match")).collect();
    assert_eq!(summary, ["6/6 detected karyotypes match the truth"], "{text}");

    // The console LEDs, replayed from their on/off lines: after each frame's line, ready and that
    // frame's verdict LED exactly; at the end, none.
    let mut lit: Vec<&str> = Vec::new();
    let mut frames_seen = 0;
    let expect_after = |frames_seen: usize, lit: &[&str]| {
        if frames_seen > 0 {
            let verdict = DEMO_CELLS[frames_seen - 1].1;
            let mut expected = vec![Led::Ready.name(), Led::for_verdict(verdict).name()];
            let mut lit = lit.to_vec();
            expected.sort();
            lit.sort();
            assert_eq!(lit, expected, "LEDs lit after frame {frames_seen}\n{text}");
        }
    };
    for line in text.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("LED ") {
            match rest.split_whitespace().collect::<Vec<_>>()[..] {
                [led, "on"] if !lit.contains(&led) => lit.push(led),
                [led, "off"] if lit.contains(&led) => lit.retain(|&l| l != led),
                _ => panic!("an LED line that changes nothing: {line:?}\n{text}"),
            }
        } else if line.starts_with("frame ") || line.contains("detected karyotypes match") {
            expect_after(frames_seen, &lit);
            frames_seen += 1;
        }
    }
    assert_eq!(frames_seen, DEMO_CELLS.len() + 1);
    assert!(lit.is_empty(), "LEDs left lit after the demo: {lit:?}");
}

#[test]
fn analyze_json_has_the_documented_fields() {
    let dir = scratch("analyze");
    let frame = dir.join("frame.png");
    let truth = karyoscreen(&["demo", "--write-frame", "2", "--out", frame.to_str().unwrap()]);
    assert!(truth.status.success(), "{}", stderr(&truth));
    let truth: serde_json::Value = serde_json::from_str(stdout(&truth).trim()).unwrap();
    assert_eq!(truth, serde_json::json!({"karyotype": "47,XY,+21", "verdict": "abnormal"}));

    let out = karyoscreen(&["analyze", frame.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let result: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The demo reads this frame right (the demo test), so analyze, the same pipeline, must too.
    assert_eq!(result["karyotype"], "47,XY,+21", "{result}");
    assert_eq!(result["count"], 47);
    assert_eq!(result["verdict"], "abnormal");
    assert_eq!(result["polarity"], "dark_on_light");
    for key in ["debris", "nuclei", "unresolved"] {
        assert_eq!(result[key], 0, "{key}: a demo frame holds nothing but chromosomes");
    }
    let reasons: Vec<&str> = result["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(!reasons.is_empty() && reasons.iter().all(|r| !r.is_empty()), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("21")), "the reasons name the trisomy: {reasons:?}");

    let model = karyoscreen::pipeline::infer::Model::embedded().unwrap();
    let (labels, structures) = (model.card.identity_labels(), model.card.structure_labels());
    let objects = result["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 47, "one object per chromosome counted");
    let mut per_label = std::collections::BTreeMap::new();
    for object in objects {
        let [x, y, w, h] = ["x", "y", "width", "height"]
            .map(|k| object["bbox"][k].as_u64().unwrap_or_else(|| panic!("bbox lacks {k}: {object}")));
        assert!(w > 0 && h > 0 && x + w <= 1024 && y + h <= 1024, "bbox outside the 1024² frame: {object}");
        let label = object["label"].as_str().unwrap();
        let class = object["class"].as_u64().unwrap() as usize;
        assert_eq!(labels.get(class).map(String::as_str), Some(label), "{object}");
        *per_label.entry(label).or_insert(0) += 1;
        for key in ["confidence", "structure_confidence"] {
            let p = object[key].as_f64().unwrap_or_else(|| panic!("object lacks {key}: {object}"));
            assert!((0.0..=1.0).contains(&p), "{key} {p}: {object}");
        }
        assert!(structures.iter().any(|s| s == object["structure"].as_str().unwrap()), "{object}");
    }
    // The objects' labels are the karyotype: two of each autosome but three 21s, one X, one Y.
    for label in labels {
        let expected = match label.as_str() {
            "21" => 3,
            "X" | "Y" => 1,
            _ => 2,
        };
        assert_eq!(
            per_label.get(label.as_str()).copied().unwrap_or(0),
            expected,
            "objects labelled {label}: {per_label:?}"
        );
    }
    for stage in ["segment_ms", "preprocess_ms", "infer_ms", "analyse_ms"] {
        assert_timing(&result["timings"][stage], stage);
    }
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

/// A timing: positive (a clock that read 0 timed nothing) and finite; returns it.
fn assert_timing(value: &serde_json::Value, what: &str) -> f64 {
    let ms = value.as_f64().unwrap_or_else(|| panic!("{what}: not a number: {value}"));
    assert!(ms > 0.0 && ms.is_finite(), "{what}: {ms} ms");
    ms
}

/// A stage's `{median_ms, p90_ms}`.
fn assert_stage(stats: &serde_json::Value, what: &str) {
    let median = assert_timing(&stats["median_ms"], &format!("{what} median"));
    let p90 = assert_timing(&stats["p90_ms"], &format!("{what} p90"));
    assert!(p90 >= median, "{what}: p90 {p90} < median {median}");
}

#[test]
fn bench_prints_every_stage() {
    let out = karyoscreen(&["bench", "--rounds", "1", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    // The six demo frames, each read right (the demo test): 278 chromosomes in all.
    assert_eq!(report["frames"], DEMO_CELLS.len(), "{report}");
    assert_eq!(report["rounds"], 1);
    let objects = report["objects_per_frame"].as_f64().unwrap();
    assert!((objects - 278.0 / 6.0).abs() < 1e-9, "objects per frame {objects}");
    for stage in ["decode", "segment", "preprocess", "infer_per_cell", "analyse", "total"] {
        assert_stage(&report[stage], stage);
    }
    assert_timing(&report["startup_ms"], "startup");
    assert_timing(&report["infer_per_crop_ms"], "inference per crop");
    assert!(report["replan_ms"].is_null(), "the default plan needs no replan: {report}");
    assert!(report["total"]["median_ms"].as_f64().unwrap() > report["infer_per_cell"]["median_ms"].as_f64().unwrap());
    assert!(report["peak_rss_mb"].as_f64().unwrap() > 1.0);
    // 1 thread, then the default count, min(2, cores), when that is more.
    let cores = report["available_cores"].as_u64().unwrap();
    assert!(cores >= 1);
    let expected: Vec<u64> = if cores >= 2 { vec![1, 2] } else { vec![1] };
    let by_threads = report["by_threads"].as_array().unwrap();
    let threads: Vec<u64> = by_threads.iter().map(|t| t["threads"].as_u64().unwrap()).collect();
    assert_eq!(threads, expected, "{report}");
    assert_eq!(report["threads"], *expected.last().unwrap());
    for entry in by_threads {
        for stage in ["segment", "preprocess", "infer_per_cell", "whole_cell"] {
            assert_stage(&entry[stage], &format!("{} threads: {stage}", entry["threads"]));
        }
        assert_timing(&entry["infer_per_crop_ms"], "inference per crop");
    }
    assert_eq!(report["total"], by_threads.last().unwrap()["whole_cell"], "total: the configured count's whole cell");
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
        "bench",
        "--rounds",
        "2",
        "--json",
        "--plan",
        "as-is",
        "--threads",
        "2",
        "--save-inputs",
        inputs.to_str().unwrap(),
        frame.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["plan"], "as-is");
    assert_eq!(report["frames"], 1, "one frame given");
    assert_eq!(report["rounds"], 2);
    assert_eq!(report["objects_per_frame"], 46.0, "demo frame 1 is 46,XX");
    assert_timing(&report["replan_ms"], "replan to as-is");
    let threads: Vec<u64> =
        report["by_threads"].as_array().unwrap().iter().map(|t| t["threads"].as_u64().unwrap()).collect();
    assert_eq!(threads, [1, 2]);
    assert_eq!(report["threads"], 2);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(inputs.join("cells.json")).unwrap()).unwrap();
    assert_eq!(meta["crops_per_cell"], serde_json::json!([46]), "one cell, one crop per chromosome");
    assert_eq!(meta["input_size"], 64);
    assert_eq!(
        meta["model_sha256"].as_str().unwrap(),
        sha256_hex(karyoscreen::pipeline::infer::Model::embedded_onnx())
    );
    let pixels = std::fs::read(inputs.join("image.f32")).unwrap();
    assert_eq!(pixels.len(), 46 * 64 * 64 * 4);
    assert_eq!(std::fs::metadata(inputs.join("size.f32")).unwrap().len(), 46 * 2 * 4);
    let values = pixels.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    assert!(values.clone().all(|v| (0.0..=1.0).contains(&v)), "crop pixels outside [0, 1]");
    assert!(values.clone().any(|v| v > 0.5), "crops without ink");
    let out = karyoscreen(&["bench", "--plan", "int4"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("int4"), "{}", stderr(&out));
}

#[test]
fn record_keeps_one_parseable_line_per_cell() {
    let dir = scratch("record");
    let record = dir.join("results.jsonl");
    let out = karyoscreen(&["demo", "--record", record.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&record).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), DEMO_CELLS.len());
    let model = karyoscreen::pipeline::infer::Model::embedded().unwrap();
    for (i, (line, (truth, verdict))) in lines.iter().zip(&DEMO_CELLS).enumerate() {
        assert_eq!(line["kind"], "cell");
        assert_eq!(line["seq"], i + 1, "{line}");
        assert_eq!(line["model_sha256"].as_str().unwrap(), model.sha256);
        // The frame the demo analysed: demo frame i + 1, rendered with seed i.
        let frame = render_cell(truth, &model.card.class_stats, i as u64).unwrap();
        assert_eq!(line["frame_sha256"].as_str().unwrap(), frame_sha256(&frame), "frame {}", i + 1);
        assert_eq!(line["karyotype"], *truth);
        assert_eq!(line["verdict"], verdict.to_string());
        assert_eq!(line["objects"].as_array().unwrap().len() as u64, line["count"].as_u64().unwrap(), "{line}");
    }
}
