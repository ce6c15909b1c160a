//! Prints tract's time for one cell's crops run as one batch (plan with a symbolic batch), one at
//! a time on one thread and on two threads (two halves of the cell; plan built for batch 1, as
//! the device runs), for each execution plan, so the plan is chosen on measurements:
//! `cargo run --release --example batch_vs_single`.

use std::time::Instant;

use karyoscreen::pipeline::infer::{Model, Plan};
use karyoscreen::pipeline::preprocess::{preprocess_crop, size_features};
use karyoscreen::pipeline::segment::{segment, SegmentParams};
use karyoscreen::tools::demo::{render_cell, DEMO_CELLS};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let (mut models, mut batched) = (Vec::new(), Vec::new());
    for plan in Plan::ALL {
        let mut model = Model::embedded()?;
        model.replan(Model::embedded_onnx(), plan)?;
        models.push(model);
        let mut model = Model::embedded()?;
        model.replan_with_batch(Model::embedded_onnx(), plan, false)?;
        batched.push(model);
    }
    let frame = render_cell(DEMO_CELLS[0].0, &models[0].card.class_stats, 0).map_err(anyhow::Error::msg)?;
    let seg = segment(&frame, &SegmentParams::default());
    let prepared: Vec<_> = seg
        .objects
        .iter()
        .filter_map(|o| preprocess_crop(&o.crop, Some(seg.polarity), &models[0].card.preprocessing).ok())
        .collect();
    let sizes = size_features(&prepared);
    let pixels: Vec<f32> = prepared.iter().flat_map(|p| p.pixels.iter().copied()).collect();
    let n = sizes.len();
    let mut times = vec![[Vec::new(), Vec::new(), Vec::new()]; models.len()];
    for _round in 0..7 {
        // Interleaved, so a busy neighbour slows every variant alike.
        for ((model, batched), times) in models.iter_mut().zip(&batched).zip(&mut times) {
            let clock = Instant::now();
            batched.logits(&pixels, &sizes)?;
            times[0].push(clock.elapsed().as_secs_f64() * 1e3);
            for (k, threads) in [(1, 1), (2, 2)] {
                model.set_threads(threads);
                let clock = Instant::now();
                model.classify(&pixels, &sizes)?;
                times[k].push(clock.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    for (model, times) in models.iter().zip(times) {
        let [batch, one, two] = times.map(median);
        println!(
            "plan {:<11}: {n} crops, one batch {batch:.1} ms, one at a time {one:.1} ms ({:.2} ms/crop), two threads {two:.1} ms",
            model.plan().name(),
            one / n as f64
        );
    }
    Ok(())
}
