//! The model bundle: an ONNX file plus its card (JSON), checked against each other on load,
//! then run with tract. The shipped bundle is compiled into the binary so the device works
//! with nothing but itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tract_onnx::prelude::*;

use crate::preprocess::PreprocessParams;

const EMBEDDED_ONNX: &[u8] = include_bytes!("../models/karyoscreen.onnx");
const EMBEDDED_CARD: &str = include_str!("../models/karyoscreen.card.json");

pub const IDENTITY_OUTPUT: &str = "identity";
pub const STRUCTURE_OUTPUT: &str = "structure";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// Dimensions; the batch is a string such as "N".
    pub shape: Vec<serde_json::Value>,
    pub dtype: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    pub labels: Vec<String>,
}

/// How each class of a cell is shared out: `capacity` regular slots per autosome, one X and
/// one X-or-Y slot, plus one extra slot per class at a cost, so a real trisomy can still
/// show; an empty regular slot costs too, so a loss needs as much evidence as a gain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellAssignment {
    pub capacity: std::collections::BTreeMap<String, usize>,
    pub extra_slot_cost: f64,
    /// Cost of a regular slot left empty; the same as `extra_slot_cost` when absent.
    #[serde(default)]
    pub missing_slot_cost: Option<f64>,
}

/// What a class looks like (G-band), measured on training crops; the demo renders from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassStats {
    pub label: String,
    pub rel_length: f64,
    pub aspect: f64,
    pub ink_profile: Vec<f64>,
    pub width_profile: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Card {
    pub name: String,
    pub card_version: u32,
    pub onnx_file: String,
    pub onnx_sha256: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<OutputSpec>,
    pub preprocessing: PreprocessParams,
    pub cell_assignment: CellAssignment,
    #[serde(default)]
    pub class_stats: Vec<ClassStats>,
    #[serde(default)]
    pub metrics: serde_json::Value,
}

impl Card {
    pub fn output(&self, name: &str) -> Result<&OutputSpec> {
        self.outputs
            .iter()
            .find(|o| o.name == name)
            .with_context(|| format!("card lists no output named {name:?}"))
    }

    pub fn identity_labels(&self) -> &[String] {
        &self.output(IDENTITY_OUTPUT).map(|o| o.labels.as_slice()).unwrap_or(&[])
    }

    pub fn structure_labels(&self) -> &[String] {
        &self.output(STRUCTURE_OUTPUT).map(|o| o.labels.as_slice()).unwrap_or(&[])
    }
}

/// Per-object class probabilities, in card label order.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub identity: Vec<f32>,
    pub structure: Vec<f32>,
}

pub struct Model {
    pub card: Card,
    pub sha256: String,
    /// Where it came from, for error messages and the record.
    pub origin: String,
    plan: Arc<TypedRunnableModel>,
    identity_index: usize,
    structure_index: usize,
}

pub type TypedRunnableModel = tract_onnx::prelude::RunnableModel<TypedFact, Box<dyn TypedOp>>;

impl Model {
    pub fn embedded() -> Result<Model> {
        Model::from_bytes(EMBEDDED_ONNX, EMBEDDED_CARD, "built-in model")
    }

    /// `path` is the ONNX file; its card is `<stem>.card.json` beside it.
    pub fn from_path(path: &Path) -> Result<Model> {
        let onnx = std::fs::read(path)
            .with_context(|| format!("{}: cannot read model", path.display()))?;
        let card_path = card_path_for(path);
        let card = std::fs::read_to_string(&card_path).with_context(|| {
            format!("{}: cannot read the model card that must sit beside {}", card_path.display(), path.display())
        })?;
        Model::from_bytes(&onnx, &card, &path.display().to_string())
    }

    pub fn from_bytes(onnx: &[u8], card_json: &str, origin: &str) -> Result<Model> {
        let card: Card = serde_json::from_str(card_json)
            .with_context(|| format!("{origin}: model card is not valid"))?;
        let sha256 = hex(&Sha256::digest(onnx));
        ensure!(
            sha256 == card.onnx_sha256,
            "{origin}: ONNX sha256 {sha256} does not match its card ({}); the model or card was changed",
            card.onnx_sha256
        );
        card.preprocessing.check_supported().map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        let side = card.preprocessing.input_size;
        let plan = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(onnx))
            .with_context(|| format!("{origin}: not a loadable ONNX model"))?;
        check_io_against_card(&plan, &card, side).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        let typed = plan.into_optimized().with_context(|| format!("{origin}: tract cannot optimise it"))?;
        let output_names = outlet_names(&typed, typed.output_outlets()?);
        let index_of = |name: &str| -> Result<usize> {
            output_names
                .iter()
                .position(|n| n == name)
                .with_context(|| format!("{origin}: model has no output {name:?} (it has {output_names:?})"))
        };
        let identity_index = index_of(IDENTITY_OUTPUT)?;
        let structure_index = index_of(STRUCTURE_OUTPUT)?;
        let plan = typed.into_runnable()?;
        Ok(Model {
            card,
            sha256,
            origin: origin.to_string(),
            plan,
            identity_index,
            structure_index,
        })
    }

    pub fn input_size(&self) -> usize {
        self.card.preprocessing.input_size
    }

    /// Classifies a cell's objects: `images` holds one `input_size²` tensor per entry of
    /// `sizes`, the objects' cell-relative size features. Run one crop at a time: tract is
    /// faster at batch 1 than on a whole cell as one batch (examples/batch_vs_single.rs).
    pub fn classify(&self, images: &[f32], sizes: &[[f32; 2]]) -> Result<Vec<Prediction>> {
        let side = self.input_size() * self.input_size();
        ensure!(images.len() == sizes.len() * side, "{} crops need {} pixels", sizes.len(), sizes.len() * side);
        let (identity_labels, structure_labels) =
            (self.card.identity_labels().len(), self.card.structure_labels().len());
        let mut predictions = Vec::with_capacity(sizes.len());
        for (image, size) in images.chunks(side).zip(sizes) {
            let outputs = self.run(image, std::slice::from_ref(size))?;
            let identity = softmax_rows(&outputs[self.identity_index], identity_labels)?;
            let structure = softmax_rows(&outputs[self.structure_index], structure_labels)?;
            predictions.extend(
                identity.into_iter().zip(structure).map(|(identity, structure)| Prediction { identity, structure }),
            );
        }
        Ok(predictions)
    }

    /// Raw logits of both heads, for parity checks against onnxruntime.
    pub fn logits(&self, images: &[f32], sizes: &[[f32; 2]]) -> Result<(Vec<f32>, Vec<f32>)> {
        let outputs = self.run(images, sizes)?;
        let read = |i: usize| -> Result<Vec<f32>> {
            Ok(outputs[i].try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
        };
        Ok((read(self.identity_index)?, read(self.structure_index)?))
    }

    fn run(&self, images: &[f32], sizes: &[[f32; 2]]) -> Result<TVec<TValue>> {
        let n = sizes.len();
        let side = self.input_size();
        ensure!(images.len() == n * side * side, "batch of {n} needs {} pixels", n * side * side);
        let image = Tensor::from_shape(&[n, 1, side, side], images)?;
        let size = Tensor::from_shape(&[n, 2], sizes.as_flattened())?;
        self.plan.run(tvec!(image.into(), size.into()))
    }
}

pub fn card_path_for(onnx: &Path) -> PathBuf {
    let stem = onnx.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    onnx.with_file_name(format!("{stem}.card.json"))
}

/// The ONNX graph's inputs and outputs must be the ones the card promises.
fn check_io_against_card(model: &InferenceModel, card: &Card, side: usize) -> Result<()> {
    let input_names = outlet_names(model, model.input_outlets()?);
    let card_inputs: Vec<&str> = card.inputs.iter().map(|i| i.name.as_str()).collect();
    ensure!(
        input_names == ["image", "size"] && card_inputs == ["image", "size"],
        "model inputs {input_names:?} and card inputs {card_inputs:?} must both be [\"image\", \"size\"]"
    );
    let image_shape = &card.inputs[0].shape;
    let fixed: Vec<Option<u64>> = image_shape.iter().map(|d| d.as_u64()).collect();
    ensure!(
        fixed.len() == 4 && fixed[1..] == [Some(1), Some(side as u64), Some(side as u64)],
        "card input shape {image_shape:?} does not match preprocessing input_size {side}"
    );
    for input in &card.inputs {
        ensure!(input.dtype == "float32", "input {} has dtype {}, expected float32", input.name, input.dtype);
    }
    let output_names = outlet_names(model, model.output_outlets()?);
    for spec in &card.outputs {
        ensure!(
            output_names.contains(&spec.name),
            "card output {:?} is not an output of the model ({output_names:?})",
            spec.name
        );
    }
    ensure!(card.identity_labels().len() >= 2, "card has no identity labels");
    if card.structure_labels().is_empty() {
        bail!("card has no structure labels");
    }
    Ok(())
}

/// ONNX tensor names of a graph's inputs or outputs (tract keeps them as outlet labels).
fn outlet_names<F, O>(model: &Graph<F, O>, outlets: &[OutletId]) -> Vec<String>
where
    F: Fact + Clone + 'static,
    O: std::fmt::Debug + std::fmt::Display + AsRef<dyn Op> + AsMut<dyn Op> + Clone + 'static,
{
    outlets
        .iter()
        .map(|&o| model.outlet_label(o).unwrap_or(&model.node(o.node).name).to_string())
        .collect()
}

fn softmax_rows(tensor: &TValue, classes: usize) -> Result<Vec<Vec<f32>>> {
    let view = tensor.try_as_plain_ram()?;
    let logits = view.as_slice::<f32>()?;
    ensure!(
        tensor.shape().last() == Some(&classes),
        "model output has shape {:?} but the card lists {classes} labels",
        tensor.shape()
    );
    Ok(logits
        .chunks(classes)
        .map(|row| {
            let max = row.iter().copied().fold(f32::MIN, f32::max);
            let exp: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            exp.iter().map(|v| v / sum).collect()
        })
        .collect())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
