//! The model card: what a model file promises (inputs, outputs and their labels, the
//! preprocessing it was trained with, how a cell's classes are shared out) and the
//! per-object predictions read against it. Plain data, so everything that only reads a card
//! (analysis, the demo renderer, parsers under fuzzing) builds without the inference engine.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::pipeline::preprocess::PreprocessParams;

pub const IDENTITY_OUTPUT: &str = "identity";
pub const STRUCTURE_OUTPUT: &str = "structure";
pub const ARM_OUTPUT: &str = "arm";
pub const POSITION_OUTPUT: &str = "position";
pub const HOMOLOG_OUTPUT: &str = "homolog";
/// Abnormal score (1 − P(normal)) above which a card with no `structure_threshold` flags.
pub const DEFAULT_STRUCTURE_THRESHOLD: f32 = 0.5;

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
    /// Nats per unit of (1 − cosine) between the homolog vectors of a class's two objects: the
    /// pairing term after the slots (`analyse::pair_swaps`). Absent: no pairing term.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homolog_weight: Option<f64>,
}

/// What a class looks like (G-band), measured on training crops; the demo renders from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassStats {
    pub label: String,
    pub rel_length: f64,
    pub aspect: f64,
    pub ink_profile: Vec<f64>,
    pub width_profile: Vec<f64>,
    /// Centromere as a fraction of the length from p-ter (GRCh38 ideogram), for drawing
    /// structural changes; absent from older cards.
    #[serde(default)]
    pub centromere: Option<f64>,
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
    /// An object is flagged structurally abnormal when 1 − P(normal) exceeds this (chosen in
    /// training on the real normal val crops, see the card's `synthetic` block).
    #[serde(default)]
    pub structure_threshold: Option<f32>,
}

impl Card {
    /// Values a card may hold. A card is signed, but a signature says who made it, not that it
    /// is sane: these bound what the analysis and the demo renderer will compute from it.
    pub fn check_ranges(&self) -> Result<(), String> {
        let finite_in = |what: &str, v: f64, low: f64, high: f64| -> Result<(), String> {
            if v.is_finite() && (low..=high).contains(&v) {
                Ok(())
            } else {
                Err(format!("{what} {v} is outside {low}..={high}"))
            }
        };
        if self.preprocessing.input_size > 512 {
            return Err(format!("input_size {} is above 512", self.preprocessing.input_size));
        }
        for output in &self.outputs {
            if output.labels.is_empty() || output.labels.len() > 256 {
                return Err(format!("output {:?} has {} labels (1..=256)", output.name, output.labels.len()));
            }
        }
        let cells = &self.cell_assignment;
        if cells.capacity.len() > 64 || cells.capacity.values().any(|&c| c > 8) {
            return Err("cell_assignment.capacity: at most 64 classes of at most 8 slots".into());
        }
        finite_in("cell_assignment.extra_slot_cost", cells.extra_slot_cost, 0.0, 1000.0)?;
        if let Some(cost) = cells.missing_slot_cost {
            finite_in("cell_assignment.missing_slot_cost", cost, 0.0, 1000.0)?;
        }
        if let Some(weight) = cells.homolog_weight {
            finite_in("cell_assignment.homolog_weight", weight, 0.0, 1000.0)?;
        }
        if let Some(threshold) = self.structure_threshold {
            finite_in("structure_threshold", threshold as f64, 0.0, 1.0)?;
        }
        if self.class_stats.len() > 64 {
            return Err(format!("{} class_stats (at most 64)", self.class_stats.len()));
        }
        for class in &self.class_stats {
            let what = |field: &str| format!("class_stats {:?} {field}", class.label);
            finite_in(&what("rel_length"), class.rel_length, 0.0, 10.0)?;
            finite_in(&what("aspect"), class.aspect, 0.0, 100.0)?;
            for (field, profile) in [("ink_profile", &class.ink_profile), ("width_profile", &class.width_profile)] {
                if profile.is_empty() || profile.len() > 1024 {
                    return Err(format!("{} has {} values (1..=1024)", what(field), profile.len()));
                }
                for &v in profile.iter() {
                    finite_in(&what(field), v, 0.0, 10.0)?;
                }
            }
            if let Some(centromere) = class.centromere {
                finite_in(&what("centromere"), centromere, 0.0, 1.0)?;
            }
        }
        Ok(())
    }

    pub fn output(&self, name: &str) -> Result<&OutputSpec> {
        self.outputs.iter().find(|o| o.name == name).with_context(|| format!("card lists no output named {name:?}"))
    }

    pub fn identity_labels(&self) -> &[String] {
        self.output(IDENTITY_OUTPUT).map(|o| o.labels.as_slice()).unwrap_or(&[])
    }

    pub fn structure_labels(&self) -> &[String] {
        self.output(STRUCTURE_OUTPUT).map(|o| o.labels.as_slice()).unwrap_or(&[])
    }

    pub fn structure_threshold(&self) -> f32 {
        self.structure_threshold.unwrap_or(DEFAULT_STRUCTURE_THRESHOLD)
    }
}

/// Per-object class probabilities, in card label order.
#[derive(Debug, Clone, Default)]
pub struct Prediction {
    pub identity: Vec<f32>,
    pub structure: Vec<f32>,
    /// P(p arm), P(q arm) of a structural change's first breakpoint; empty when the model has
    /// no arm output. Meaningful only when the object is flagged.
    pub arm: Vec<f32>,
    /// That breakpoint as a fraction of the length from p-ter, when the model has the output.
    pub position: Option<f32>,
    /// Unit vector placing the object near its homolog; empty when the model has no such output.
    pub homolog: Vec<f32>,
}

impl Prediction {
    /// The likelier arm (`p` or `q`), when the model has the arm output.
    pub fn likelier_arm(&self) -> Option<&'static str> {
        (self.arm.len() == 2).then(|| if self.arm[0] >= self.arm[1] { "p" } else { "q" })
    }
}

pub fn card_path_for(onnx: &Path) -> PathBuf {
    let stem = onnx.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    onnx.with_file_name(format!("{stem}.card.json"))
}

/// The sha256 of `bytes` in lowercase hex: how cards, signatures and the record name contents.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
