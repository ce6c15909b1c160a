//! The learned segmenter against what train/karyotrain/fixtures.py wrote (tests/fixtures/segmenter):
//! the device's frame preprocessing must give karyotrain.segprep's input tensor bit for bit, and
//! tract's maps for it must be PyTorch's within a tolerance. The fixture network is tiny and
//! untrained: it checks the runtime, not segmentation. It loads through the real trust path
//! (card, sha256, a signature under a trusted key), and neither loader takes the other's bundle.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::GrayImage;
use karyoscreen::integrity::bundle::{keygen, pub_path_for, sign, Trust};
use karyoscreen::integrity::seg_card::SegCard;
use karyoscreen::pipeline::infer::Model;
use karyoscreen::pipeline::segment::learned::{frame_to_input, Segmenter};
use karyoscreen::pipeline::{Pipeline, SegmentedBy, Segmenting};
use karyoscreen::tools::demo::{render_cell, render_cell_touching};
use serde::Deserialize;

mod common;

#[derive(Deserialize)]
struct Meta {
    frame_size: [usize; 2],
    scaled_size: [usize; 2],
    k: usize,
    shapes: Shapes,
    map_tolerance: f32,
}

#[derive(Deserialize)]
struct Shapes {
    input: [usize; 4],
    maps: [usize; 4],
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/segmenter").join(name)
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn meta() -> Meta {
    serde_json::from_slice(&std::fs::read(fixture("meta.json")).unwrap()).unwrap()
}

fn frame() -> GrayImage {
    image::open(fixture("frame.png")).unwrap().into_luma8()
}

fn card() -> SegCard {
    SegCard::parse(&std::fs::read_to_string(fixture("tiny_segmenter.card.json")).unwrap(), "fixture").unwrap()
}

/// The fixture bundle copied to a scratch folder and signed with a fresh key; the trust with it.
fn signed_bundle(name: &str) -> (PathBuf, Trust) {
    let dir = common::scratch("segmenter", name);
    for file in ["tiny_segmenter.onnx", "tiny_segmenter.card.json"] {
        std::fs::copy(fixture(file), dir.join(file)).unwrap();
    }
    let key = dir.join("test.key");
    keygen(&key).unwrap();
    let onnx = dir.join("tiny_segmenter.onnx");
    sign(&onnx, &key).unwrap();
    (onnx, Trust::with_key_files(&[pub_path_for(&key)]).unwrap())
}

#[test]
fn preprocessing_gives_segprep_tensor_bit_for_bit() {
    let meta = meta();
    let frame = frame();
    assert_eq!([frame.width() as usize, frame.height() as usize], meta.frame_size);
    let input = frame_to_input(&frame, &card().preprocessing);
    assert_eq!((input.k, [input.scaled.0, input.scaled.1]), (meta.k, meta.scaled_size));
    assert_eq!([1, 1, input.padded.1, input.padded.0], meta.shapes.input);
    let expected = read_f32("input.f32");
    assert_eq!(input.pixels.len(), expected.len());
    let differ = input.pixels.iter().zip(&expected).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(differ, 0, "{differ} input values differ from karyotrain.segprep's");
}

#[test]
fn tract_maps_match_pytorch_and_the_frame_segments() {
    let meta = meta();
    let (onnx, trust) = signed_bundle("maps");
    let refused = Segmenter::from_path(&onnx, &Trust::release()).err().expect("loaded without its key trusted");
    assert!(format!("{refused:#}").contains("not trusted"), "{refused:#}");
    let segmenter = Segmenter::from_path(&onnx, &trust).unwrap();
    let frame = frame();
    let input = frame_to_input(&frame, &segmenter.card.preprocessing);
    let maps = segmenter.run(&input).unwrap();
    let expected = read_f32("maps.f32");
    assert_eq!(expected.len(), meta.shapes.maps.iter().product::<usize>());
    assert_eq!(maps.len(), expected.len());
    let worst = maps.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= meta.map_tolerance, "largest map difference {worst} > {}", meta.map_tolerance);
    // a second frame size plans again; the first size's plan is reused
    let segmentation = segmenter.segment(&frame).unwrap();
    let small = image::imageops::crop_imm(&frame, 0, 0, 300, 200).to_image();
    segmenter.segment(&small).unwrap();
    assert_eq!(segmenter.segment(&frame).unwrap().objects.len(), segmentation.objects.len());
    for o in &segmentation.objects {
        assert!(o.bbox.x + o.bbox.width <= frame.width() && o.bbox.y + o.bbox.height <= frame.height());
        assert_eq!(o.mask.iter().filter(|&&m| m).count(), o.area);
    }
}

#[test]
fn neither_loader_takes_the_other_bundle() {
    let (onnx, trust) = signed_bundle("kinds");
    let err = format!("{:#}", Model::from_path(&onnx, &trust).err().expect("a segmenter loaded as the classifier"));
    assert!(err.contains("segmenter bundle") && err.contains("--segmenter-model") && !err.contains('\n'), "{err}");
    let classifier = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/karyoscreen.onnx");
    let err = Segmenter::from_path(&classifier, &Trust::release()).err().expect("the classifier loaded as a segmenter");
    let err = format!("{err:#}");
    assert!(err.contains("classifier bundle") && err.contains("--model") && !err.contains('\n'), "{err}");
}

#[test]
fn the_cli_takes_a_segmenter_bundle_and_bench_times_it_on_real_frame_sizes() {
    let (onnx, _) = signed_bundle("cli");
    let (onnx, key) = (onnx.to_str().unwrap(), onnx.with_file_name("test.key.pub"));
    let key = key.to_str().unwrap();
    let frame = fixture("frame.png");
    let frame = frame.to_str().unwrap();
    let out = common::karyoscreen(&["analyze", frame, "--json", "--segmenter-model", onnx, "--trusted-key", key]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["nuclei"], 0);

    let out = common::karyoscreen(&["analyze", frame, "--segmenter", "classic", "--segmenter-model", onnx]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--segmenter-model") && err.lines().count() == 1, "{err}");

    let out = common::karyoscreen(&[
        "bench",
        frame,
        "--rounds",
        "1",
        "--json",
        "--segmenter",
        "learned",
        "--segmenter-model",
        onnx,
        "--trusted-key",
        key,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["segmenter"].as_str().unwrap().starts_with("learned: tiny_segmenter"), "{report}");
    let sizes = report["learned_segmentation"].as_array().unwrap();
    let sizes: Vec<(u64, u64)> =
        sizes.iter().map(|s| (s["width"].as_u64().unwrap(), s["height"].as_u64().unwrap())).collect();
    assert_eq!(sizes, [(640, 480), (768, 576), (1024, 768), (2048, 1536)]);
    for s in report["learned_segmentation"].as_array().unwrap() {
        for stage in ["preprocess", "network", "instances", "total"] {
            let ms = s[stage]["median_ms"].as_f64().unwrap();
            assert!(ms.is_finite() && ms >= 0.0, "{stage}: {s}");
        }
        assert!(s["total"]["median_ms"].as_f64().unwrap() > 0.0, "{s}");
    }

    let out = common::karyoscreen(&["bench", frame, "--rounds", "1", "--json", "--segmenter", "classic"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["segmenter"], "classic");
    assert!(report.get("learned_segmentation").is_none(), "{report}");
}

/// The shipped segmenter verifies under the release key, and `auto` keeps the classic
/// segmentation of chromosomes lying apart but hands touching ones to the network.
#[test]
fn the_built_in_segmenter_is_release_signed_and_auto_hands_touching_chromosomes_to_it() {
    let segmenter = Arc::new(Segmenter::embedded().unwrap());
    assert_eq!(segmenter.card.kind, "segmenter");
    let pipeline = Pipeline::new(Model::embedded().unwrap()).with_segmenting(Segmenting::Auto(segmenter.clone()));
    let stats = &pipeline.model.card.class_stats;

    let apart = render_cell("47,XY,+21", stats, 3).unwrap();
    let result = pipeline.analyse(&apart).unwrap();
    assert_eq!((result.segmenter, result.count), (SegmentedBy::Classic, 47), "{}", result.karyotype);

    let touching = render_cell_touching("46,XX", stats, 3, 12, 40).unwrap();
    let result = pipeline.analyse(&touching).unwrap();
    assert_eq!(result.segmenter, SegmentedBy::Learned, "{} objects", result.count);
    let network = Pipeline::new(Model::embedded().unwrap()).with_segmenting(Segmenting::Learned(segmenter));
    assert_eq!(network.analyse(&touching).unwrap().count, result.count);
}
