//! `karyoscreen eval`: the device's own path (same preprocessing, same batch inference, same
//! cell step) over a labelled set laid out like `<set>/labels.csv` + images, with the figures
//! a model card reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::pipeline::analyse::{argmax, assign};
use crate::pipeline::infer::Model;
use crate::pipeline::preprocess::{preprocess_crop, size_features, Prepared, PreprocessParams};

#[derive(Debug, Deserialize)]
pub(crate) struct Row {
    pub(crate) path: String,
    pub(crate) label_idx: usize,
    cell_id: String,
    #[serde(default)]
    split: String,
    /// Sets with structural labels (SYNTHETIC, from train/karyotrain/structural.py write_set):
    /// `normal` or the structure head's class, its subtype and the first breakpoint's arm.
    #[serde(default)]
    structure: String,
    #[serde(default)]
    structure_subtype: String,
    #[serde(default)]
    arm: String,
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
    /// Only for sets with a `structure` column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structure: Option<StructureFigures>,
}

/// The structure head on a set with structural labels: abnormal vs normal by 1 − P(normal).
#[derive(Debug, Clone, Serialize)]
pub struct StructureFigures {
    pub note: &'static str,
    pub n_normal: usize,
    pub n_abnormal: usize,
    pub auroc: f64,
    /// The card's threshold on 1 − P(normal).
    pub threshold: f32,
    pub normal_flagged_rate: f64,
    pub recall_any: f64,
    /// Recall at the threshold per structure class and per subtype.
    pub recall_per_type: BTreeMap<String, f64>,
    /// Abnormal crops whose arm output names the labelled arm.
    pub arm_accuracy: f64,
}

/// One crop's structural truth and what the device said.
struct StructureOutcome {
    truth: String,
    subtype: String,
    arm: String,
    score: f32,
    arm_said: Option<&'static str>,
}

/// A labelled set's rows (of one split, or all), grouped by cell in cell-id order, and the
/// labels file they came from.
pub(crate) fn read_cells(dir: &Path, split: Option<&str>) -> Result<(PathBuf, BTreeMap<String, Vec<Row>>)> {
    let labels_path = dir.join("labels.csv");
    let labels = crate::integrity::input::read_text(&labels_path, "labels (expected <set>/labels.csv)")?;
    let mut reader = csv::Reader::from_reader(labels.as_bytes());
    let mut cells: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for (line, row) in reader.deserialize::<Row>().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", labels_path.display(), line + 2))?;
        if split.is_none_or(|s| s == row.split) {
            cells.entry(row.cell_id.clone()).or_default().push(row);
        }
    }
    if cells.is_empty() {
        bail!("{}: no rows{}", labels_path.display(), split.map(|s| format!(" in split {s:?}")).unwrap_or_default());
    }
    Ok((labels_path, cells))
}

/// One row's crop through the device's loader and preprocessing; None when preprocessing
/// rejects it. A label the model has no class for is an error.
pub(crate) fn prepare_crop(
    dir: &Path,
    labels_path: &Path,
    row: &Row,
    classes: usize,
    params: &PreprocessParams,
) -> Result<Option<Prepared>> {
    if row.label_idx >= classes {
        bail!("{}: label_idx {} of {} is not a model class", labels_path.display(), row.label_idx, row.path);
    }
    let path = dir.join(&row.path);
    // Crops go through the frame loader: the same file checks and decode limits.
    let image = crate::device::capture::load_frame(&path)
        .with_context(|| format!("{}: cannot read image", path.display()))?
        .image;
    Ok(preprocess_crop(&image, None, params).ok())
}

pub fn evaluate(model: &Model, dir: &Path, split: Option<&str>) -> Result<Report> {
    let (labels_path, cells) = read_cells(dir, split)?;
    let classes = model.card.identity_labels().len();
    let (mut truth, mut by_crop, mut by_cell) = (Vec::new(), Vec::new(), Vec::new());
    let mut rejected = 0;
    let mut structure = Vec::new();
    let params = &model.card.preprocessing;
    for rows in cells.values() {
        let mut prepared = Vec::new();
        let mut kept: Vec<&Row> = Vec::new();
        for row in rows {
            match prepare_crop(dir, &labels_path, row, classes, params)? {
                Some(p) => {
                    prepared.push(p);
                    kept.push(row);
                }
                None => {
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
        let calls = assign(
            &predictions,
            card.identity_labels(),
            card.structure_labels(),
            &card.cell_assignment,
            card.structure_threshold(),
        );
        for ((row, prediction), call) in kept.into_iter().zip(&predictions).zip(calls) {
            if !row.structure.is_empty() {
                structure.push(StructureOutcome {
                    truth: row.structure.clone(),
                    subtype: row.structure_subtype.clone(),
                    arm: row.arm.clone(),
                    score: 1.0 - prediction.structure.first().copied().unwrap_or(1.0),
                    arm_said: prediction.likelier_arm(),
                });
            }
            truth.push(row.label_idx);
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
        structure: (!structure.is_empty()).then(|| structure_figures(&structure, model.card.structure_threshold())),
    })
}

fn structure_figures(outcomes: &[StructureOutcome], threshold: f32) -> StructureFigures {
    let (abnormal, normal): (Vec<&StructureOutcome>, Vec<&StructureOutcome>) =
        outcomes.iter().partition(|o| o.truth != "normal");
    let flagged_share =
        |set: &[&StructureOutcome]| set.iter().filter(|o| o.score > threshold).count() as f64 / set.len().max(1) as f64;
    let mut recall_per_type = BTreeMap::new();
    for key in abnormal.iter().flat_map(|o| [o.truth.as_str(), o.subtype.as_str()]).filter(|k| !k.is_empty()) {
        if !recall_per_type.contains_key(key) {
            let of_type: Vec<&StructureOutcome> =
                abnormal.iter().copied().filter(|o| o.truth == key || o.subtype == key).collect();
            recall_per_type.insert(key.to_string(), flagged_share(&of_type));
        }
    }
    let arm_hits = abnormal.iter().filter(|o| o.arm_said == Some(o.arm.as_str())).count();
    StructureFigures {
        note: "SYNTHETIC structural abnormalities unless the set says otherwise",
        n_normal: normal.len(),
        n_abnormal: abnormal.len(),
        auroc: auroc(
            &normal.iter().map(|o| o.score).collect::<Vec<_>>(),
            &abnormal.iter().map(|o| o.score).collect::<Vec<_>>(),
        ),
        threshold,
        normal_flagged_rate: flagged_share(&normal),
        recall_any: flagged_share(&abnormal),
        recall_per_type,
        arm_accuracy: arm_hits as f64 / abnormal.len().max(1) as f64,
    }
}

/// P(a random positive scores above a random negative), ties counting half (Mann–Whitney).
pub fn auroc(negatives: &[f32], positives: &[f32]) -> f64 {
    if negatives.is_empty() || positives.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<(f32, bool)> =
        negatives.iter().map(|&s| (s, false)).chain(positives.iter().map(|&s| (s, true))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // average ranks (1-based) over runs of equal scores
    let mut positive_rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let j = (i..all.len()).find(|&j| all[j].0 != all[i].0).unwrap_or(all.len());
        let rank = (i + 1 + j) as f64 / 2.0;
        positive_rank_sum += rank * all[i..j].iter().filter(|(_, p)| *p).count() as f64;
        i = j;
    }
    let (n_pos, n_neg) = (positives.len() as f64, negatives.len() as f64);
    (positive_rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
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
    fn auroc_counts_pairs_and_halves_ties() {
        assert_eq!(auroc(&[0.1, 0.2], &[0.3, 0.4]), 1.0);
        assert_eq!(auroc(&[0.3, 0.4], &[0.1, 0.2]), 0.0);
        assert_eq!(auroc(&[0.5], &[0.5]), 0.5);
        assert!((auroc(&[0.1, 0.5], &[0.5, 0.9]) - 0.875).abs() < 1e-12);
        assert!(auroc(&[], &[0.5]).is_nan());
    }

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
