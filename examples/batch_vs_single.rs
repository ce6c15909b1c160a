//! Prints tract's time for one cell's crops run as one batch and as single crops, so the
//! execution plan is chosen on measurements: `cargo run --release --example batch_vs_single`.

use std::time::Instant;

use karyoscreen::demo::{render_cell, DEMO_CELLS};
use karyoscreen::model::Model;
use karyoscreen::preprocess::{preprocess_crop, size_features};
use karyoscreen::segment::{segment, SegmentParams};

fn main() -> anyhow::Result<()> {
    let model = Model::embedded()?;
    let frame = render_cell(DEMO_CELLS[0].0, &model.card.class_stats, 0).map_err(anyhow::Error::msg)?;
    let seg = segment(&frame, &SegmentParams::default());
    let prepared: Vec<_> = seg
        .objects
        .iter()
        .filter_map(|o| preprocess_crop(&o.crop, Some(seg.polarity), &model.card.preprocessing).ok())
        .collect();
    let sizes = size_features(&prepared);
    let pixels: Vec<f32> = prepared.iter().flat_map(|p| p.pixels.iter().copied()).collect();
    let n = sizes.len();
    for round in 0..5 {
        let clock = Instant::now();
        model.logits(&pixels, &sizes)?;
        let batch = clock.elapsed().as_secs_f64() * 1e3;
        let clock = Instant::now();
        model.classify(&pixels, &sizes)?;
        let single = clock.elapsed().as_secs_f64() * 1e3;
        println!("round {round}: {n} crops, one batch {batch:.1} ms, one at a time {single:.1} ms");
    }
    Ok(())
}
