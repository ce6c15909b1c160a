//! Where tract spends a crop's inference: each node of the optimised plan timed alone, at
//! batch 1, one thread, as `karyoscreen` builds it (`--plan dequantized`, the default, or `as-is`):
//! `cargo run --release --example profile_nodes -- [MODEL.onnx] [dequantized|as-is]`
//! (default: the shipped model). Inputs are a fixed pseudo-random pattern; 100 warm-up runs,
//! then 2,000 timed; prints the total and the 30 slowest nodes in µs per run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use karyoscreen::pipeline::infer::{inference_model, Plan};
use tract_onnx::prelude::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args.first().map_or("models/karyoscreen.onnx", String::as_str);
    let plan: Plan = args.get(1).map_or(Ok(Plan::Dequantized), |p| p.parse()).map_err(anyhow::Error::msg)?;
    let bytes = std::fs::read(path).with_context(|| format!("{path}: cannot read"))?;
    let mut model = inference_model(&bytes, plan)?;
    model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), [1, 1, 64, 64]))?;
    model.set_input_fact(1, InferenceFact::dt_shape(f32::datum_type(), [1, 2]))?;
    let runnable = model.into_optimized()?.into_runnable()?;
    let pixels: Vec<f32> = (0..64 * 64).map(|k| ((k * 7919) % 1000) as f32 / 1000.0).collect();
    let inputs: TVec<TValue> = tvec!(
        Tensor::from_shape(&[1, 1, 64, 64], &pixels)?.into(),
        Tensor::from_shape(&[1, 2], &[1.0f32, 1.0])?.into()
    );
    let mut state = runnable.spawn()?;
    let mut times = vec![Duration::ZERO; runnable.model().nodes().len()];
    let (warm_up, runs) = (100, 2000);
    for run in 0..warm_up + runs {
        state.run_plan_with_eval(inputs.clone(), |context, op_state, node, input| {
            let start = Instant::now();
            let output = tract_onnx::tract_core::plan::eval(context, op_state, node, input);
            if run >= warm_up {
                times[node.id] += start.elapsed();
            }
            output
        })?;
    }
    let micros = |t: Duration| t.as_secs_f64() * 1e6 / runs as f64;
    println!("{path}, plan {plan}: {:.1} µs per run (sum of the nodes)", micros(times.iter().sum()));
    let mut slowest: Vec<(usize, Duration)> = times.into_iter().enumerate().collect();
    slowest.sort_by_key(|&(_, t)| std::cmp::Reverse(t));
    for (id, time) in slowest.into_iter().take(30) {
        let node = &runnable.model().nodes()[id];
        println!("{:8.1} µs  {:<14} {}", micros(time), node.op().name(), node.name);
    }
    Ok(())
}
