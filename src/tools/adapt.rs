//! `karyoscreen adapt`: one lab's own labelled crops refit the classifier's identity head, and a
//! new bundle holds the result. The network up to the head is the base model's, run by tract
//! exactly as the device runs it: the crops go through the device's preprocessing, the
//! embeddings (the head's input) come from the same plan, and only the head's weights change,
//! pulled towards the base head so that a few karyograms move it without undoing it.

use std::io::{Cursor, Read};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use prost::Message;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tract_onnx::pb;
use tract_onnx::prelude::*;

use crate::integrity::card::{sha256_hex, IDENTITY_OUTPUT};
use crate::pipeline::infer::{inference_model, Model, Plan};
use crate::pipeline::preprocess::size_features;
use crate::tools::evaluate::{prepare_crop, read_cells};

#[derive(Debug, Clone)]
pub struct Options {
    /// Only rows of this split of the set.
    pub split: Option<String>,
    /// Only the first N cells (karyograms), by cell id.
    pub cells: Option<usize>,
    /// Weight of the pull towards the base head: sum of squared differences, per crop.
    pub strength: f64,
    /// Full-batch Adam steps.
    pub steps: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options { split: None, cells: None, strength: 0.01, steps: 300 }
    }
}

/// What `adapt` learnt from, and how well the head fits it before and after.
#[derive(Debug, Clone, Serialize)]
pub struct Adaptation {
    pub base_model: String,
    pub base_sha256: String,
    pub set: String,
    /// sha256 over labels.csv and then every crop file it names that was used, in order.
    pub set_sha256: String,
    pub set_bytes: u64,
    pub split: Option<String>,
    pub cells: usize,
    pub crops: usize,
    /// Crops the preprocessing rejected (not used).
    pub rejected: usize,
    pub method: &'static str,
    pub embedding: String,
    pub strength: f64,
    pub steps: usize,
    /// Per-crop accuracy on the crops it learnt from.
    pub crop_accuracy_before: f64,
    pub crop_accuracy_after: f64,
}

pub struct Adapted {
    pub onnx: Vec<u8>,
    pub card_json: String,
    pub adaptation: Adaptation,
}

/// The identity head: a Gemm from the embedding to the logits, weights [classes, dim].
struct Head {
    embedding: String,
    weight: String,
    bias: String,
    classes: usize,
    dim: usize,
}

/// Refits `base`'s identity head on the labelled set in `dir`; `base_onnx` are its ONNX bytes
/// and `base_card` its card, whose name becomes `name` in the new card.
pub fn adapt(
    base: &Model,
    base_onnx: &[u8],
    base_card: &str,
    dir: &Path,
    name: &str,
    options: &Options,
) -> Result<Adapted> {
    let origin = &base.origin;
    let mut proto = tract_onnx::onnx()
        .proto_model_for_read(&mut Cursor::new(base_onnx))
        .with_context(|| format!("{origin}: not a readable ONNX model"))?;
    let graph = proto.graph.as_mut().with_context(|| format!("{origin}: the ONNX file has no graph"))?;
    let head = find_head(graph).with_context(|| format!("{origin}: adapt refits the identity head"))?;
    let (w0, b0) = (initializer(graph, &head.weight)?, initializer(graph, &head.bias)?);
    ensure!(
        w0.len() == head.classes * head.dim && b0.len() == head.classes,
        "{origin}: identity head weights are not {} x {}",
        head.classes,
        head.dim
    );

    let (labels_path, mut cells) = read_cells(dir, options.split.as_deref())?;
    if let Some(keep) = options.cells {
        ensure!(keep > 0, "--cells must be at least 1");
        cells = cells.into_iter().take(keep).collect();
    }
    let mut digest = Sha256::new();
    let mut set_bytes = hash_file(&labels_path, &mut digest)?;
    let plan = inference_model(base_onnx, Plan::default())
        .and_then(|m| m.with_outputs_by_name([head.embedding.as_str()]))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .with_context(|| format!("{origin}: tract cannot run the network up to {:?}", head.embedding))?;
    let params = &base.card.preprocessing;
    let side = params.input_size;
    let (mut embeddings, mut truth, mut rejected) = (Vec::new(), Vec::new(), 0);
    for rows in cells.values() {
        let (mut prepared, mut kept) = (Vec::new(), Vec::new());
        for row in rows {
            set_bytes += hash_file(&dir.join(&row.path), &mut digest)?;
            match prepare_crop(dir, &labels_path, row, head.classes, params)? {
                Some(p) => {
                    prepared.push(p);
                    kept.push(row.label_idx);
                }
                None => rejected += 1,
            }
        }
        if prepared.is_empty() {
            continue;
        }
        let sizes = size_features(&prepared);
        let pixels: Vec<f32> = prepared.iter().flat_map(|p| p.pixels.iter().copied()).collect();
        let n = sizes.len();
        let image = tract_ndarray::Array4::from_shape_vec((n, 1, side, side), pixels)?.into_tensor();
        let size =
            tract_ndarray::Array2::from_shape_vec((n, 2), sizes.iter().flatten().copied().collect())?.into_tensor();
        let out = plan.run(tvec!(image.into(), size.into()))?;
        let values = out[0].try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        ensure!(
            values.len() == n * head.dim,
            "{origin}: the embedding has {} values per crop, not {}",
            values.len() / n,
            head.dim
        );
        embeddings.extend(values);
        truth.extend(kept);
    }
    ensure!(!truth.is_empty(), "{}: no crop to learn from{}", labels_path.display(), in_split(options));

    let before = accuracy(&embeddings, &truth, &w0, &b0, head.dim);
    let (w, b) = refit(&embeddings, &truth, &w0, &b0, head.dim, options.strength, options.steps);
    let after = accuracy(&embeddings, &truth, &w, &b, head.dim);
    set_initializer(graph, &head.weight, &w)?;
    set_initializer(graph, &head.bias, &b)?;
    let onnx = proto.encode_to_vec();

    let adaptation = Adaptation {
        base_model: base.card.name.clone(),
        base_sha256: base.sha256.clone(),
        set: dir.display().to_string(),
        set_sha256: hex::encode(digest.finalize()),
        set_bytes,
        split: options.split.clone(),
        cells: cells.len(),
        crops: truth.len(),
        rejected,
        method: "identity head refit (softmax regression, full-batch Adam) on the base network's embeddings as tract computes them, squared pull towards the base head",
        embedding: head.embedding.clone(),
        strength: options.strength,
        steps: options.steps,
        crop_accuracy_before: before,
        crop_accuracy_after: after,
    };
    let card_json = adapted_card(base_card, name, &onnx, &adaptation)?;
    Ok(Adapted { onnx, card_json, adaptation })
}

fn in_split(options: &Options) -> String {
    options.split.as_ref().map(|s| format!(" in split {s:?}")).unwrap_or_default()
}

fn hash_file(path: &Path, digest: &mut Sha256) -> Result<u64> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("{}: cannot read", path.display()))?;
    digest.update(&bytes);
    Ok(bytes.len() as u64)
}

/// The node that writes the `identity` output must be a plain Gemm (x · Wᵀ + b) on an embedding.
fn find_head(graph: &pb::GraphProto) -> Result<Head> {
    let node = graph
        .node
        .iter()
        .find(|n| n.output.iter().any(|o| o == IDENTITY_OUTPUT))
        .with_context(|| format!("no node writes the {IDENTITY_OUTPUT:?} output"))?;
    let attribute = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let plain = attribute("transA").is_none_or(|a| a.i == 0)
        && attribute("transB").is_some_and(|a| a.i == 1)
        && ["alpha", "beta"].iter().all(|k| attribute(k).is_none_or(|a| a.f == 1.0));
    if node.op_type != "Gemm" || node.input.len() != 3 || !plain {
        bail!(
            "the {IDENTITY_OUTPUT:?} output is not written by a Gemm with transB = 1 and a bias (found {})",
            node.op_type
        );
    }
    let dims = graph
        .initializer
        .iter()
        .find(|t| t.name == node.input[1])
        .map(|t| t.dims.clone())
        .with_context(|| format!("the head's weight {:?} is not a constant", node.input[1]))?;
    let [classes, dim] = dims[..] else { bail!("the head's weight has shape {dims:?}, not [classes, dim]") };
    Ok(Head {
        embedding: node.input[0].clone(),
        weight: node.input[1].clone(),
        bias: node.input[2].clone(),
        classes: usize::try_from(classes)?,
        dim: usize::try_from(dim)?,
    })
}

const ONNX_FLOAT: i32 = 1;

fn initializer(graph: &pb::GraphProto, name: &str) -> Result<Vec<f32>> {
    let t = graph.initializer.iter().find(|t| t.name == name).with_context(|| format!("no initializer {name:?}"))?;
    ensure!(t.data_type == ONNX_FLOAT, "initializer {name:?} is not float32");
    if t.raw_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    ensure!(t.raw_data.len() % 4 == 0, "initializer {name:?} has {} bytes", t.raw_data.len());
    Ok(t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn set_initializer(graph: &mut pb::GraphProto, name: &str, values: &[f32]) -> Result<()> {
    let t =
        graph.initializer.iter_mut().find(|t| t.name == name).with_context(|| format!("no initializer {name:?}"))?;
    t.float_data.clear();
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(())
}

fn logits(e: &[f32], w: &[f32], b: &[f32], dim: usize) -> Vec<f64> {
    b.iter()
        .enumerate()
        .map(|(c, &bias)| {
            f64::from(bias) + w[c * dim..(c + 1) * dim].iter().zip(e).map(|(&w, &x)| f64::from(w * x)).sum::<f64>()
        })
        .collect()
}

fn accuracy(embeddings: &[f32], truth: &[usize], w: &[f32], b: &[f32], dim: usize) -> f64 {
    let hits = embeddings
        .chunks_exact(dim)
        .zip(truth)
        .filter(|(e, &y)| {
            let z = logits(e, w, b, dim);
            (0..z.len()).max_by(|&i, &j| z[i].total_cmp(&z[j])) == Some(y)
        })
        .count();
    hits as f64 / truth.len() as f64
}

/// Softmax regression from (w0, b0): minimises the mean cross-entropy over the crops plus
/// `strength` × the squared distance to (w0, b0), by full-batch Adam (deterministic).
pub fn refit(
    embeddings: &[f32],
    truth: &[usize],
    w0: &[f32],
    b0: &[f32],
    dim: usize,
    strength: f64,
    steps: usize,
) -> (Vec<f32>, Vec<f32>) {
    const RATE: f64 = 0.01;
    let (b1, b2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
    let classes = b0.len();
    let mut params: Vec<f64> = w0.iter().chain(b0).map(|&v| f64::from(v)).collect();
    let base = params.clone();
    let (mut m, mut v) = (vec![0.0; params.len()], vec![0.0; params.len()]);
    let n = truth.len() as f64;
    for step in 1..=steps {
        let mut grad: Vec<f64> = params.iter().zip(&base).map(|(p, q)| 2.0 * strength * (p - q)).collect();
        for (e, &y) in embeddings.chunks_exact(dim).zip(truth) {
            let z: Vec<f64> = (0..classes)
                .map(|c| {
                    params[classes * dim + c]
                        + params[c * dim..(c + 1) * dim].iter().zip(e).map(|(w, &x)| w * f64::from(x)).sum::<f64>()
                })
                .collect();
            let top = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = z.iter().map(|v| (v - top).exp()).sum();
            for c in 0..classes {
                let g = ((z[c] - top).exp() / total - f64::from(u8::from(c == y))) / n;
                for (gw, &x) in grad[c * dim..(c + 1) * dim].iter_mut().zip(e) {
                    *gw += g * f64::from(x);
                }
                grad[classes * dim + c] += g;
            }
        }
        let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
        for i in 0..params.len() {
            m[i] = b1 * m[i] + (1.0 - b1) * grad[i];
            v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i];
            params[i] -= RATE * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
        }
    }
    let params: Vec<f32> = params.iter().map(|&p| p as f32).collect();
    (params[..classes * dim].to_vec(), params[classes * dim..].to_vec())
}

/// The base card with the new name, file and sha256, its figures kept as `base_metrics` (they
/// describe the base model) and an `adaptation` block.
fn adapted_card(base_card: &str, name: &str, onnx: &[u8], adaptation: &Adaptation) -> Result<String> {
    let mut card: serde_json::Value = serde_json::from_str(base_card).context("base model card is not JSON")?;
    let object = card.as_object_mut().context("base model card is not a JSON object")?;
    object.insert("name".into(), name.into());
    object.insert("onnx_file".into(), format!("{name}.onnx").into());
    object.insert("onnx_sha256".into(), sha256_hex(onnx).into());
    if let Some(metrics) = object.remove("metrics") {
        object.insert("base_metrics".into(), metrics);
    }
    object.insert("adaptation".into(), serde_json::to_value(adaptation)?);
    Ok(serde_json::to_string_pretty(&card)? + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refit_learns_separable_classes_and_strength_holds_it_to_the_base() {
        // two classes on a 2-d embedding, the base head calling everything class 0
        let embeddings = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9];
        let truth = [0, 0, 1, 1];
        let (w0, b0) = ([1.0, 0.0, 0.0, 0.0], [1.0, 0.0]);
        assert_eq!(accuracy(&embeddings, &truth, &w0, &b0, 2), 0.5);
        let (w, b) = refit(&embeddings, &truth, &w0, &b0, 2, 0.0, 300);
        assert_eq!(accuracy(&embeddings, &truth, &w, &b, 2), 1.0);
        let (held, _) = refit(&embeddings, &truth, &w0, &b0, 2, 1e3, 300);
        let moved = |w: &[f32]| w.iter().zip(&w0).map(|(a, b)| (a - b).abs()).sum::<f32>();
        assert!(moved(&held) < 0.05 * moved(&w), "a strong pull keeps the head near the base");
    }

    #[test]
    fn the_card_keeps_the_base_and_records_the_set() {
        let base = r#"{"name":"karyoscreen","onnx_file":"karyoscreen.onnx","onnx_sha256":"x","metrics":{"a":1}}"#;
        let adaptation = Adaptation {
            base_model: "karyoscreen".into(),
            base_sha256: "b".into(),
            set: "lab".into(),
            set_sha256: "s".into(),
            set_bytes: 10,
            split: None,
            cells: 1,
            crops: 46,
            rejected: 0,
            method: "m",
            embedding: "e".into(),
            strength: 0.01,
            steps: 1,
            crop_accuracy_before: 0.5,
            crop_accuracy_after: 0.9,
        };
        let card: serde_json::Value =
            serde_json::from_str(&adapted_card(base, "lab", b"onnx", &adaptation).unwrap()).unwrap();
        assert_eq!(card["name"], "lab");
        assert_eq!(card["onnx_file"], "lab.onnx");
        assert_eq!(card["onnx_sha256"], sha256_hex(b"onnx"));
        assert_eq!(card["base_metrics"]["a"], 1);
        assert!(card.get("metrics").is_none());
        assert_eq!(card["adaptation"]["crops"], 46);
        assert_eq!(card["adaptation"]["set_sha256"], "s");
    }
}
