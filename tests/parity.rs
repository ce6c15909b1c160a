//! tract must run the shipped int8 model as onnxruntime does: older tract releases silently
//! mis-ran per-channel int8 models, and this is the guard. train/karyotrain/fixtures.py wrote
//! the inputs and onnxruntime's outputs for them. Both execution plans are checked: the shipped
//! `dequantized` plan (int8 weights made float at load, activations not rounded to the int8 grid)
//! and the graph as-is; one quantization step of the last activation bounds both. Both must
//! give the same identity class and the same structural flag.

use std::path::Path;

use karyoscreen::pipeline::analyse::argmax;
use karyoscreen::pipeline::infer::{Model, Plan};
use serde::Deserialize;

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "N")]
    n: usize,
    model_sha256: String,
    /// One quantization step of the last int8 activation, expressed in logits.
    logit_tolerance: f32,
    /// Length of the homolog vectors; 0 when the model has no homolog output.
    #[serde(default)]
    homolog_dim: usize,
}

/// The homolog vectors are unit vectors; the pairing term weighs 1 − cosine between crops, so
/// the two runtimes' vectors for one input must point the same way to well within that.
const HOMOLOG_MIN_COSINE: f32 = 0.999;

fn fixture(name: &str) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

#[test]
fn tract_matches_onnxruntime_on_the_shipped_int8_model() {
    let model = Model::embedded().unwrap();
    assert_eq!(model.plan(), Plan::Dequantized, "the shipped plan");
    check(model);
}

#[test]
fn tract_matches_onnxruntime_on_the_int8_graph_as_is() {
    let mut model = Model::embedded().unwrap();
    model.replan(Model::embedded_onnx(), Plan::AsIs).unwrap();
    check(model);
}

fn check(model: Model) {
    let meta: Meta = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(model.sha256, meta.model_sha256, "parity fixtures were made for another model: regenerate them");

    let images = fixture("image.f32");
    let sizes: Vec<[f32; 2]> = fixture("size.f32").chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    assert_eq!(sizes.len(), meta.n);
    let (identity, structure) = model.logits(&images, &sizes).unwrap();

    for (head, ours, theirs, classes) in [
        ("identity", &identity, fixture("identity.f32"), model.card.identity_labels().len()),
        ("structure", &structure, fixture("structure.f32"), model.card.structure_labels().len()),
    ] {
        assert_eq!(ours.len(), theirs.len(), "{head}: output size");
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= meta.logit_tolerance, "{head}: max logit difference {worst} > {}", meta.logit_tolerance);
        for (i, (a, b)) in ours.chunks(classes).zip(theirs.chunks(classes)).enumerate() {
            if head == "identity" {
                assert_eq!(argmax(a), argmax(b), "{head}: input {i} argmax differs");
            } else {
                // The device uses this head through its threshold on 1 - P(normal), not its argmax
                // (which may flip on a near-tie within the tolerance).
                let flagged = |logits: &[f32]| 1.0 - softmax(logits)[0] > model.card.structure_threshold();
                assert_eq!(flagged(a), flagged(b), "{head}: input {i} flagged by one runtime only");
            }
        }
    }

    let homolog = model.homolog(&images, &sizes).unwrap();
    assert_eq!(homolog.as_ref().map_or(0, |h| h.len() / meta.n), meta.homolog_dim, "homolog output");
    if let Some(ours) = homolog {
        let theirs = fixture("homolog.f32");
        assert_eq!(ours.len(), theirs.len(), "homolog: output size");
        for (i, (a, b)) in ours.chunks(meta.homolog_dim).zip(theirs.chunks(meta.homolog_dim)).enumerate() {
            let cosine: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            assert!(cosine >= HOMOLOG_MIN_COSINE, "homolog: input {i} cosine {cosine} between the runtimes");
        }
    }
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - top).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}
