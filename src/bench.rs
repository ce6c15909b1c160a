//! `karyoscreen bench`: per-stage latency over repeated analyses of frames, model start-up
//! time and peak memory, printed as numbers (speed is measured, never asserted in tests).

use std::time::Instant;

use anyhow::Result;
use image::GrayImage;
use serde::Serialize;

use crate::model::Model;
use crate::pipeline::{Pipeline, Timings};

#[derive(Debug, Serialize)]
pub struct StageStats {
    pub median_ms: f64,
    pub p90_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub frames: usize,
    pub rounds: usize,
    pub objects_per_frame: f64,
    pub startup_ms: f64,
    pub segment: StageStats,
    pub preprocess: StageStats,
    pub infer_per_cell: StageStats,
    pub infer_per_crop_ms: f64,
    pub analyse: StageStats,
    pub total: StageStats,
    pub peak_rss_mb: Option<f64>,
}

fn stats(mut values: Vec<f64>) -> StageStats {
    values.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    StageStats { median_ms: at(0.5), p90_ms: at(0.9) }
}

/// Peak resident set size of this process (Linux `VmHWM`).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Loads the model (timed), then analyses every frame `rounds` times.
pub fn bench(load: impl FnOnce() -> Result<Model>, frames: &[GrayImage], rounds: usize) -> Result<BenchReport> {
    let clock = Instant::now();
    let pipeline = Pipeline::new(load()?);
    let startup_ms = clock.elapsed().as_secs_f64() * 1e3;
    pipeline.analyse(&frames[0])?; // warm-up
    let mut timings: Vec<Timings> = Vec::new();
    let mut objects = 0usize;
    for _ in 0..rounds.max(1) {
        for frame in frames {
            let result = pipeline.analyse(frame)?;
            objects += result.count;
            timings.push(result.timings);
        }
    }
    let pick = |f: fn(&Timings) -> f64| stats(timings.iter().map(f).collect());
    let infer_total: f64 = timings.iter().map(|t| t.infer_ms).sum();
    Ok(BenchReport {
        frames: frames.len(),
        rounds: rounds.max(1),
        objects_per_frame: objects as f64 / timings.len() as f64,
        startup_ms,
        segment: pick(|t| t.segment_ms),
        preprocess: pick(|t| t.preprocess_ms),
        infer_per_cell: pick(|t| t.infer_ms),
        infer_per_crop_ms: infer_total / objects.max(1) as f64,
        analyse: pick(|t| t.analyse_ms),
        total: pick(|t| t.segment_ms + t.preprocess_ms + t.infer_ms + t.analyse_ms),
        peak_rss_mb: peak_rss_mb(),
    })
}
