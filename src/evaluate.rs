//! `karyoscreen eval`: the device's own path (same preprocessing, same batch inference, same
//! cell step) over a labelled set laid out like `<set>/labels.csv` + images, with the figures
//! a model card reports.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::analyse::{argmax, assign};
use crate::model::Model;
use crate::preprocess::{preprocess_crop, size_features};

#[derive(Debug, Deserialize)]
struct Row {
    path: String,
    label_idx: usize,
    cell_id: String,
    #[serde(default)]
    split: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassFigures {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub n: usize,
    pub accuracy: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub per_class: BTreeMap<String, ClassFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub data: String,
    pub split: Option<String>,
    pub model: String,
    pub model_sha256: String,
    pub cells: usize,
    /// Crops the preprocessing rejected (counted as wrong).
    pub rejected: usize,
    /// Which level the top-level figures are: the device reports after the cell step.
    pub level: &'static str,
    #[serde(flatten)]
    pub cell: Figures,
    pub crop: Figures,
}

pub fn evaluate(model: &Model, dir: &Path, split: Option<&str>) -> Result<Report> {
    let labels_path = dir.join("labels.csv");
    let mut reader = csv::Reader::from_path(&labels_path)
        .with_context(|| format!("{}: cannot read labels (expected <set>/labels.csv)", labels_path.display()))?;
    let mut cells: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for (line, row) in reader.deserialize::<Row>().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", labels_path.display(), line + 2))?;
        if split.is_none_or(|s| s == row.split) {
            cells.entry(row.cell_id.clone()).or_default().push(row);
        }
    }
    let classes = model.card.identity_labels().len();
    if cells.is_empty() {
        bail!("{}: no rows{}", labels_path.display(), split.map(|s| format!(" in split {s:?}")).unwrap_or_default());
    }
    let (mut truth, mut by_crop, mut by_cell) = (Vec::new(), Vec::new(), Vec::new());
    let mut rejected = 0;
    let params = &model.card.preprocessing;
    for rows in cells.values() {
        let mut prepared = Vec::new();
        let mut kept = Vec::new();
        for row in rows {
            if row.label_idx >= classes {
                bail!("{}: label_idx {} of {} is not a model class", labels_path.display(), row.label_idx, row.path);
            }
            let path = dir.join(&row.path);
            let image = image::open(&path)
                .with_context(|| format!("{}: cannot read image", path.display()))?
                .to_luma8();
            match preprocess_crop(&image, None, params) {
                Ok(p) => {
                    prepared.push(p);
                    kept.push(row.label_idx);
                }
                Err(_) => {
                    rejected += 1;
                    truth.push(row.label_idx);
                    by_crop.push(None);
                    by_cell.push(None);
                }
            }
        }
        let sizes = size_features(&prepared);
        let pixels: Vec<f32> = prepared.iter().flat_map(|p| p.pixels.iter().copied()).collect();
        let predictions = model.classify(&pixels, &sizes)?;
        let card = &model.card;
        let calls = assign(&predictions, card.identity_labels(), card.structure_labels(), &card.cell_assignment);
        for ((label, prediction), call) in kept.into_iter().zip(&predictions).zip(calls) {
            truth.push(label);
            by_crop.push(Some(argmax(&prediction.identity)));
            by_cell.push(Some(call.class));
        }
    }
    let names = model.card.identity_labels();
    Ok(Report {
        data: dir.display().to_string(),
        split: split.map(String::from),
        model: model.card.name.clone(),
        model_sha256: model.sha256.clone(),
        cells: cells.len(),
        rejected,
        level: "cell",
        cell: figures(&truth, &by_cell, names),
        crop: figures(&truth, &by_crop, names),
    })
}

/// Accuracy and macro figures over the classes present in the truth; `None` is a miss.
pub fn figures(truth: &[usize], predicted: &[Option<usize>], names: &[String]) -> Figures {
    let k = names.len();
    let (mut tp, mut predicted_as, mut support) = (vec![0usize; k], vec![0usize; k], vec![0usize; k]);
    for (&t, &p) in truth.iter().zip(predicted) {
        support[t] += 1;
        if let Some(p) = p {
            predicted_as[p] += 1;
            tp[t] += (p == t) as usize;
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut per_class = BTreeMap::new();
    let (mut sp, mut sr, mut sf, mut present) = (0.0, 0.0, 0.0, 0);
    for c in 0..k {
        let precision = ratio(tp[c], predicted_as[c]);
        let recall = ratio(tp[c], support[c]);
        let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        if support[c] > 0 {
            present += 1;
            sp += precision;
            sr += recall;
            sf += f1;
        }
        per_class.insert(names[c].clone(), ClassFigures { precision, recall, f1, support: support[c] });
    }
    let present_f = present.max(1) as f64;
    Figures {
        n: truth.len(),
        accuracy: ratio(tp.iter().sum(), truth.len()),
        macro_precision: sp / present_f,
        macro_recall: sr / present_f,
        macro_f1: sf / present_f,
        per_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_count_misses_and_macro_over_present_classes() {
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let f = figures(&[0, 0, 1, 1], &[Some(0), Some(1), Some(1), None], &names);
        assert_eq!(f.n, 4);
        assert_eq!(f.accuracy, 0.5);
        assert_eq!(f.per_class["a"].recall, 0.5);
        assert_eq!(f.per_class["b"].precision, 0.5);
        assert_eq!(f.per_class["c"].support, 0);
        assert!((f.macro_recall - 0.5).abs() < 1e-12, "c is absent from the truth and not averaged");
    }
}
