//! `karyoscreen bench`: per-stage latency over repeated analyses of frames (decode, segmentation,
//! preprocessing, inference per cell and per crop, analysis, the whole cell) on one thread and
//! on the configured inference threads, model start-up time and peak memory, printed as numbers
//! (speed is measured, never asserted in tests); with the learned segmenter, its steps on real
//! frame sizes too. `--save-inputs DIR` writes the exact model inputs
//! of the frames so `train/karyotrain/ort_compare.py` can time onnxruntime on the same tensors.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use image::GrayImage;
use serde::Serialize;

use crate::pipeline::infer::{Model, Plan};
use crate::pipeline::segment::learned::{frame_to_input, SegTimings, Segmenter};
use crate::pipeline::{FrameInputs, Pipeline, Segmenting, Timings};

#[derive(Debug, Clone, Copy, Serialize)]
pub struct StageStats {
    pub median_ms: f64,
    pub p90_ms: f64,
}

/// The stages that depend on the number of inference threads, measured at one count.
#[derive(Debug, Serialize)]
pub struct ThreadStats {
    pub threads: usize,
    /// Segmentation and preprocessing run their per-pixel and per-crop work on these threads.
    pub segment: StageStats,
    pub preprocess: StageStats,
    pub infer_per_cell: StageStats,
    /// Median over cells of a cell's inference time divided by its crops.
    pub infer_per_crop_ms: f64,
    /// Segmentation + preprocessing + inference + analysis of one frame (decode excluded).
    pub whole_cell: StageStats,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub frames: usize,
    pub rounds: usize,
    pub objects_per_frame: f64,
    pub plan: Plan,
    /// Cores this process may use; timings on a shared machine are upper bounds.
    pub available_cores: usize,
    /// Loading the model as the device does: parse, check, rewrite, optimise (default plan).
    pub startup_ms: f64,
    /// Building the plan asked for with `--plan`, when it is not the default one.
    pub replan_ms: Option<f64>,
    /// Decoding the frames as `analyze` does (demo frames are encoded to PNG in memory first).
    pub decode: StageStats,
    /// Segmentation and preprocessing on one thread (per thread count: `by_threads`).
    pub segment: StageStats,
    pub preprocess: StageStats,
    pub analyse: StageStats,
    /// The configured inference threads and, at that count, inference per cell and per crop
    /// and the whole cell (the last entry of `by_threads`, repeated).
    pub threads: usize,
    pub infer_per_cell: StageStats,
    pub infer_per_crop_ms: f64,
    pub total: StageStats,
    /// One entry per thread count measured (1, then the configured count), interleaved.
    pub by_threads: Vec<ThreadStats>,
    /// `classic`, or the learned segmenter's card name and origin.
    pub segmenter: String,
    /// With the learned segmenter: its time on the real frame sizes ([`SEGMENTER_SIZES`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub learned_segmentation: Vec<SegmenterSizeStats>,
    pub peak_rss_mb: Option<f64>,
}

/// Frame sizes of real microscope cameras the learned segmenter is timed on.
pub const SEGMENTER_SIZES: [(u32, u32); 4] = [(640, 480), (768, 576), (1024, 768), (2048, 1536)];

/// The learned segmenter on one frame size (the first bench frame resized to it), one thread.
#[derive(Debug, Serialize)]
pub struct SegmenterSizeStats {
    pub width: u32,
    pub height: u32,
    /// The network's input: the frame block-averaged to at most `max_side`, padded.
    pub input_width: usize,
    pub input_height: usize,
    /// The first frame of this size, building tract's plan for it included.
    pub first_ms: f64,
    pub preprocess: StageStats,
    pub network: StageStats,
    pub instances: StageStats,
    /// The whole segmentation stage: preprocessing, network, instances and crops.
    pub total: StageStats,
    pub objects: usize,
}

pub struct BenchOptions {
    pub rounds: usize,
    pub plan: Plan,
    /// Inference threads besides 1 (1 is always measured).
    pub threads: usize,
    pub save_inputs: Option<PathBuf>,
    /// How frames are segmented; with a network, its stage is also timed on real frame sizes.
    pub segmenting: Segmenting,
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

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Loads the model (timed), rebuilds it for `options.plan` from `onnx` if that is not the
/// default, then analyses every PNG frame `rounds` times on 1 and `options.threads` threads.
/// `frames` gives the encoded frames once the model is loaded (demo frames are rendered from
/// its card), so only one model is ever held.
pub fn bench(
    load: impl FnOnce() -> Result<Model>,
    onnx: &[u8],
    frames: impl FnOnce(&Model) -> Result<Vec<Vec<u8>>>,
    options: &BenchOptions,
) -> Result<BenchReport> {
    let clock = Instant::now();
    let mut model = load()?;
    let startup_ms = ms(clock);
    let frames_png = frames(&model)?;
    anyhow::ensure!(!frames_png.is_empty(), "bench needs at least one frame");
    let replan_ms = if options.plan != model.plan() {
        let clock = Instant::now();
        model.replan(onnx, options.plan)?;
        Some(ms(clock))
    } else {
        None
    };
    let mut pipeline = Pipeline::new(model).with_segmenting(options.segmenting.clone());
    let thread_counts: Vec<usize> = if options.threads > 1 { vec![1, options.threads] } else { vec![1] };

    let decode_frame =
        |png: &[u8]| -> Result<GrayImage> { Ok(crate::device::capture::frame_from_bytes(png, "bench frame")?.image) };
    if let Some(dir) = &options.save_inputs {
        save_inputs(&pipeline, &frames_png, dir)?;
    }
    pipeline.analyse(&decode_frame(&frames_png[0])?)?; // warm-up

    let mut decode = Vec::new();
    let mut shared: Vec<Timings> = Vec::new();
    let mut per_threads: Vec<Vec<(Timings, usize)>> = vec![Vec::new(); thread_counts.len()];
    let mut objects = 0usize;
    for _ in 0..options.rounds.max(1) {
        for png in &frames_png {
            let clock = Instant::now();
            let frame = decode_frame(png)?;
            decode.push(ms(clock));
            for (k, &threads) in thread_counts.iter().enumerate() {
                pipeline.model.set_threads(threads);
                let result = pipeline.analyse(&frame)?;
                if k == 0 {
                    objects += result.objects.len();
                    shared.push(result.timings.clone());
                }
                per_threads[k].push((result.timings, result.objects.len()));
            }
        }
    }
    let pick = |f: fn(&Timings) -> f64| stats(shared.iter().map(f).collect());
    let by_threads: Vec<ThreadStats> = thread_counts
        .iter()
        .zip(&per_threads)
        .map(|(&threads, runs)| ThreadStats {
            threads,
            segment: stats(runs.iter().map(|(t, _)| t.segment_ms).collect()),
            preprocess: stats(runs.iter().map(|(t, _)| t.preprocess_ms).collect()),
            infer_per_cell: stats(runs.iter().map(|(t, _)| t.infer_ms).collect()),
            infer_per_crop_ms: stats(runs.iter().map(|(t, n)| t.infer_ms / (*n).max(1) as f64).collect()).median_ms,
            whole_cell: stats(
                runs.iter().map(|(t, _)| t.segment_ms + t.preprocess_ms + t.infer_ms + t.analyse_ms).collect(),
            ),
        })
        .collect();
    let configured = by_threads.last().expect("at least one thread count");
    let learned_segmentation = match options.segmenting.network() {
        Some(segmenter) => segmenter_sizes(segmenter, &decode_frame(&frames_png[0])?, options.rounds.max(1))?,
        None => Vec::new(),
    };
    let segmenter = options.segmenting.describe();
    Ok(BenchReport {
        threads: configured.threads,
        infer_per_cell: configured.infer_per_cell,
        infer_per_crop_ms: configured.infer_per_crop_ms,
        total: configured.whole_cell,
        frames: frames_png.len(),
        rounds: options.rounds.max(1),
        objects_per_frame: objects as f64 / shared.len() as f64,
        plan: options.plan,
        available_cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        startup_ms,
        replan_ms,
        decode: stats(decode),
        segment: pick(|t| t.segment_ms),
        preprocess: pick(|t| t.preprocess_ms),
        analyse: pick(|t| t.analyse_ms),
        by_threads,
        segmenter,
        learned_segmentation,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// The learned segmenter on `frame` resized to each of [`SEGMENTER_SIZES`], `rounds` times each
/// after a first run that builds the plan for the size.
fn segmenter_sizes(segmenter: &Segmenter, frame: &GrayImage, rounds: usize) -> Result<Vec<SegmenterSizeStats>> {
    SEGMENTER_SIZES
        .iter()
        .map(|&(width, height)| {
            let sized = image::imageops::resize(frame, width, height, image::imageops::FilterType::Triangle);
            let input = frame_to_input(&sized, &segmenter.card.preprocessing);
            let clock = Instant::now();
            let (first, _) = segmenter.segment_timed(&sized)?;
            let first_ms = ms(clock);
            let mut runs: Vec<(SegTimings, f64)> = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                let clock = Instant::now();
                let (_, timings) = segmenter.segment_timed(&sized)?;
                runs.push((timings, ms(clock)));
            }
            let pick = |f: fn(&SegTimings) -> f64| stats(runs.iter().map(|(t, _)| f(t)).collect());
            Ok(SegmenterSizeStats {
                width,
                height,
                input_width: input.padded.0,
                input_height: input.padded.1,
                first_ms,
                preprocess: pick(|t| t.preprocess_ms),
                network: pick(|t| t.network_ms),
                instances: pick(|t| t.instances_ms),
                total: stats(runs.iter().map(|(_, total)| *total).collect()),
                objects: first.objects.len(),
            })
        })
        .collect()
}

/// Writes the model inputs of `frames`, in frame order: `image.f32` (crops × 1 × S × S),
/// `size.f32` (crops × 2), raw little-endian float32, and `cells.json` (crops per frame, S).
fn save_inputs(pipeline: &Pipeline, frames_png: &[Vec<u8>], dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let (mut image, mut size, mut crops) = (Vec::new(), Vec::new(), Vec::new());
    for png in frames_png {
        let frame = crate::device::capture::frame_from_bytes(png, "bench frame")?.image;
        let FrameInputs { pixels, sizes, .. } = pipeline.prepare(&frame, &mut Timings::default())?;
        image.extend(pixels.iter().flat_map(|v| v.to_le_bytes()));
        size.extend(sizes.as_flattened().iter().flat_map(|v| v.to_le_bytes()));
        crops.push(sizes.len());
    }
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("{}: cannot write", path.display()))
    };
    write("image.f32", &image)?;
    write("size.f32", &size)?;
    let meta = serde_json::json!({
        "crops_per_cell": crops,
        "input_size": pipeline.model.input_size(),
        "format": "raw little-endian float32, row-major; image: crops x 1 x S x S, size: crops x 2",
        "model_sha256": pipeline.model.sha256,
    });
    write("cells.json", serde_json::to_string_pretty(&meta)?.as_bytes())
}
