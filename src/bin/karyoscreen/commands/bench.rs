//! `karyoscreen bench`: per-stage latency, start-up time and peak memory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use karyoscreen::device::capture::frame_from_bytes;
use karyoscreen::integrity::input::{read_regular, MAX_FRAME_FILE, MAX_MODEL_FILE};
use karyoscreen::pipeline::infer::{default_threads, Model, Plan};
use karyoscreen::tools::bench::{bench, BenchOptions, StageStats};
use karyoscreen::tools::demo::{render_cell, DEMO_CELLS};

use super::ModelArgs;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  karyoscreen bench\n  karyoscreen bench spread1.png spread2.png --rounds 10 --threads 1 --json"
)]
pub struct BenchArgs {
    /// Frames to analyse (default: the built-in demo frames).
    frames: Vec<PathBuf>,
    /// Times each frame is analysed.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    rounds: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Execution plan: `dequantized` makes the int8 weights float at load; `as-is` runs the
    /// QDQ graph as the file has it.
    #[arg(long, value_enum, default_value_t = Plan::default())]
    plan: Plan,
    /// Inference threads measured besides 1 (default: min(2, available cores)).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: Option<u64>,
    /// Also write the model inputs of the frames (image.f32, size.f32, cells.json) here.
    #[arg(long, value_name = "DIR")]
    save_inputs: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn exec(args: BenchArgs) -> Result<ExitCode> {
    let options = BenchOptions {
        rounds: args.rounds as usize,
        plan: args.plan,
        threads: args.threads.map_or_else(default_threads, |n| n as usize),
        save_inputs: args.save_inputs.clone(),
        segmenting: args.model.segmenting()?,
    };
    let paths = &args.frames;
    let frames = |loaded: &Model| -> Result<Vec<Vec<u8>>> {
        if paths.is_empty() {
            return (0..DEMO_CELLS.len())
                .map(|i| {
                    let frame =
                        render_cell(DEMO_CELLS[i].0, &loaded.card.class_stats, i as u64).map_err(anyhow::Error::msg)?;
                    let mut png = std::io::Cursor::new(Vec::new());
                    frame.write_to(&mut png, image::ImageFormat::Png)?;
                    Ok(png.into_inner())
                })
                .collect();
        }
        paths
            .iter()
            .map(|p| {
                let bytes = read_regular(p, MAX_FRAME_FILE, "frame")?;
                // Refuse what `analyze` refuses (bombs, non-images), naming the file.
                frame_from_bytes(&bytes, &p.display().to_string())?;
                Ok(bytes)
            })
            .collect()
    };
    let onnx = match &args.model.model {
        Some(path) => read_regular(path, MAX_MODEL_FILE, "model")?,
        None => Model::embedded_onnx().to_vec(),
    };
    let report = bench(|| args.model.load(), &onnx, frames, &options)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{} frames x {} rounds, {:.1} objects per frame, plan {}, {} cores available (timings are upper bounds on a shared machine)",
        report.frames, report.rounds, report.objects_per_frame, report.plan, report.available_cores
    )?;
    outln!(
        "model start-up {:.0} ms{}, peak RSS {}",
        report.startup_ms,
        report.replan_ms.map(|m| format!(" (then {m:.0} ms to build plan {})", report.plan)).unwrap_or_default(),
        report.peak_rss_mb.map(|m| format!("{m:.1} MB")).unwrap_or_else(|| "unknown".into())
    )?;
    let line =
        |stage: &str, s: &StageStats| outln!("{stage:<24} median {:>7.1} ms   p90 {:>7.1} ms", s.median_ms, s.p90_ms);
    outln!("segmenter {}", report.segmenter)?;
    line("decode (PNG)", &report.decode)?;
    line("analysis", &report.analyse)?;
    for t in &report.by_threads {
        let n = t.threads;
        line(&format!("segmentation, {n} thr"), &t.segment)?;
        line(&format!("preprocessing, {n} thr"), &t.preprocess)?;
        line(&format!("inference/cell, {n} thr"), &t.infer_per_cell)?;
        outln!("{:<24} median {:>7.2} ms", format!("inference/crop, {n} thr"), t.infer_per_crop_ms)?;
        line(&format!("whole cell, {n} thr"), &t.whole_cell)?;
    }
    for s in &report.learned_segmentation {
        outln!(
            "learned segmentation {:>4}x{:<4} (input {}x{}): median {:>7.1} ms   p90 {:>7.1} ms   (preprocess {:.1}, network {:.1}, instances {:.1} ms; first frame {:.0} ms with planning; {} objects)",
            s.width, s.height, s.input_width, s.input_height, s.total.median_ms, s.total.p90_ms,
            s.preprocess.median_ms, s.network.median_ms, s.instances.median_ms, s.first_ms, s.objects
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
