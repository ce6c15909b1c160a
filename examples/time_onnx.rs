//! tract's time per run of candidate ONNX graphs at batch 1, so architectures are chosen on
//! tract measurements before any training:
//! `cargo run --release --example time_onnx -- A.onnx B.onnx ...`
//! Float graphs with every input's batch dimension symbolic (N); inputs are filled with a
//! fixed pseudo-random pattern. The files are timed in turns, 7 rounds of 300 runs, so a busy
//! neighbour slows each alike; prints the median round per file.

use std::time::Instant;

use anyhow::{Context, Result};
use karyoscreen::pipeline::infer::TypedRunnableModel;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

fn plan(path: &str) -> Result<(Arc<TypedRunnableModel>, TVec<TValue>)> {
    let mut model = tract_onnx::onnx().model_for_path(path).with_context(|| format!("{path}: not loadable"))?;
    for input in 0..model.inputs.len() {
        let fact = model.input_fact(input)?.clone();
        let shape: Vec<usize> =
            fact.shape.dims().map(|d| d.concretize().and_then(|d| d.as_i64()).map_or(1, |d| d as usize)).collect();
        model.set_input_fact(input, InferenceFact::dt_shape(f32::datum_type(), &shape))?;
    }
    let model = model.into_optimized()?.into_runnable()?;
    let inputs = (0..model.model().inputs.len())
        .map(|i| {
            let shape: Vec<usize> = model.model().input_fact(i)?.shape.as_concrete().context("shape")?.to_vec();
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|k| ((k * 7919) % 1000) as f32 / 1000.0).collect();
            Ok(Tensor::from_shape(&shape, &values)?.into())
        })
        .collect::<Result<TVec<TValue>>>()?;
    Ok((model, inputs))
}

fn main() -> Result<()> {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!paths.is_empty(), "usage: time_onnx A.onnx [B.onnx ...]");
    let plans = paths.iter().map(|p| plan(p)).collect::<Result<Vec<_>>>()?;
    let mut rounds = vec![Vec::new(); plans.len()];
    for _ in 0..7 {
        for ((model, inputs), rounds) in plans.iter().zip(&mut rounds) {
            let mut state = model.spawn()?;
            let clock = Instant::now();
            for _ in 0..300 {
                state.run(inputs.clone())?;
            }
            rounds.push(clock.elapsed().as_secs_f64() * 1e6 / 300.0);
        }
    }
    for (path, mut rounds) in paths.iter().zip(rounds) {
        rounds.sort_by(f64::total_cmp);
        println!("{:>9.1} µs per run (median of 7 rounds; fastest {:.1})  {path}", rounds[3], rounds[0]);
    }
    Ok(())
}
