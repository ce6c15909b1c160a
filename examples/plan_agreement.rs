//! How exact the `dequantized` execution plan is against the int8 graph run as-is, so the
//! default plan is chosen on measurements:
//! `cargo run --release --example plan_agreement -- [LABELLED_SET_DIR [SPLIT]]`
//! (default ../shared/data/pki3_gband, split test). Prints, for both plans, the largest logit
//! difference from onnxruntime's int8 outputs in tests/fixtures/parity, and over every crop of
//! the labelled split: top-1 agreement between the plans, their largest logit difference, and
//! each plan's crop and cell accuracy (the `karyoscreen eval` figures).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use karyoscreen::pipeline::analyse::argmax;
use karyoscreen::pipeline::infer::{Model, Plan};
use karyoscreen::pipeline::preprocess::{preprocess_crop, size_features};

fn fixture(name: &str) -> Result<Vec<f32>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name);
    let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().map(String::as_str).unwrap_or("../shared/data/pki3_gband"));
    let split = args.get(1).cloned().unwrap_or_else(|| "test".into());
    let mut models = Vec::new();
    for plan in Plan::ALL {
        let mut model = Model::embedded()?;
        model.replan(Model::embedded_onnx(), plan)?;
        models.push((plan, model));
    }

    let images = fixture("image.f32")?;
    let sizes: Vec<[f32; 2]> = fixture("size.f32")?.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
    for (plan, model) in &models {
        let (identity, structure) = model.logits(&images, &sizes)?;
        println!(
            "parity fixtures ({} inputs), plan {plan:<11}: max |logit - onnxruntime int8| identity {:.4}, structure {:.4}",
            sizes.len(),
            max_diff(&identity, &fixture("identity.f32")?),
            max_diff(&structure, &fixture("structure.f32")?)
        );
    }

    #[derive(serde::Deserialize)]
    struct Row {
        path: String,
        label_idx: usize,
        cell_id: String,
        split: String,
    }
    let mut cells: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for row in csv::Reader::from_path(dir.join("labels.csv"))?.deserialize::<Row>() {
        let row = row?;
        if row.split == split {
            cells.entry(row.cell_id.clone()).or_default().push(row);
        }
    }
    let params = &models[0].1.card.preprocessing;
    let classes = models[0].1.card.identity_labels().len();
    let (mut crops, mut agree, mut worst) = (0usize, 0usize, 0f32);
    let mut correct = [0usize; 2];
    for rows in cells.values() {
        let mut prepared = Vec::new();
        let mut labels = Vec::new();
        for row in rows {
            let image = image::open(dir.join(&row.path))?.to_luma8();
            if let Ok(p) = preprocess_crop(&image, None, params) {
                prepared.push(p);
                labels.push(row.label_idx);
            }
        }
        let sizes = size_features(&prepared);
        let pixels: Vec<f32> = prepared.iter().flat_map(|p| p.pixels.iter().copied()).collect();
        let (a, a_structure) = models[0].1.logits(&pixels, &sizes)?;
        let (b, b_structure) = models[1].1.logits(&pixels, &sizes)?;
        worst = worst.max(max_diff(&a, &b)).max(max_diff(&a_structure, &b_structure));
        for ((x, y), label) in a.chunks(classes).zip(b.chunks(classes)).zip(&labels) {
            crops += 1;
            agree += (argmax(x) == argmax(y)) as usize;
            correct[0] += (argmax(x) == *label) as usize;
            correct[1] += (argmax(y) == *label) as usize;
        }
    }
    println!(
        "{} split {split}: {crops} crops in {} cells: top-1 agreement as-is vs dequantized {agree}/{crops} ({:.2} %), max logit difference {worst:.4}",
        dir.display(),
        cells.len(),
        100.0 * agree as f64 / crops.max(1) as f64
    );
    for (k, (plan, model)) in models.iter().enumerate() {
        let report = karyoscreen::tools::evaluate::evaluate(model, &dir, Some(&split))?;
        println!(
            "plan {plan:<11}: crop top-1 {:.4} (of preprocessed crops {:.4}), eval: per crop {:.4}, after cell step {:.4}",
            report.crop.accuracy,
            correct[k] as f64 / crops.max(1) as f64,
            report.crop.accuracy,
            report.cell.accuracy
        );
    }
    Ok(())
}
