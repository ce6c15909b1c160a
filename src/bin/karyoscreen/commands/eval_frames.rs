//! `karyoscreen eval-frames`: whole frames through the device's pipeline against their truth.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use karyoscreen::pipeline::Pipeline;
use karyoscreen::tools::frames_eval::{evaluate_frames, Selection};

use super::eval::Split;
use super::ModelArgs;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  karyoscreen eval-frames ../shared/data/frames_bioimlab_q --split test --min-count 40\n  \
                  karyoscreen eval-frames train/runs/frames/pki3_gband --json"
)]
pub struct EvalFramesArgs {
    /// A frames set: DIR/frames.csv (image, ann, group_id, split, count, karyotype, band) and
    /// the frames and ann/<stem>.json files it names.
    dir: PathBuf,
    /// Only frames of this split.
    #[arg(long, value_enum)]
    split: Option<Split>,
    /// Only frames whose true count is at least N (whole spreads, not partial fields).
    #[arg(long, value_name = "N")]
    min_count: Option<usize>,
    /// Print the figures and one row per frame as JSON.
    #[arg(long)]
    json: bool,
    /// Cut the learned segmenter's instances on fluorescent (light-on-dark) frames at this core
    /// logit instead of its card's `core_logit.light_on_dark`: to choose that value on val
    /// frames, or see how far each frame's best value lies from it (`karyotrain.threshold_sweep`).
    #[arg(long, value_name = "LOGIT", allow_negative_numbers = true)]
    core_logit: Option<f32>,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn exec(args: EvalFramesArgs) -> Result<ExitCode> {
    let segmenting = args.model.segmenting_adjusted(|segmenter| {
        if let Some(logit) = args.core_logit {
            segmenter.card.instances.core_logit.light_on_dark = logit;
        }
    })?;
    let pipeline = Pipeline::new(args.model.load()?).with_segmenting(segmenting);
    let selection = Selection { split: args.split.map(|s| format!("{s:?}").to_lowercase()), min_count: args.min_count };
    let mut report = evaluate_frames(&pipeline, &args.dir, &selection)?;
    report.core_logit = args.core_logit;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{} ({}{}), model {}",
        report.data,
        report.split.as_deref().unwrap_or("all splits"),
        report.min_count.map(|n| format!(", true count >= {n}")).unwrap_or_default(),
        report.model
    )?;
    outln!("segmenter               {}", report.segmenter)?;
    if let Some(logit) = report.core_logit {
        outln!("core logit (fluorescent) {logit} (not the card's)")?;
    }
    outln!("frames evaluated        {}", report.frames)?;
    outln!("count exact             {:.1} %", report.count_exact_pct)?;
    outln!("count within +-2        {:.1} %", report.count_within_2_pct)?;
    outln!("mean |count - truth|    {:.2}", report.mean_abs_count_error)?;
    match &report.karyotype {
        Some(k) => outln!(
            "karyotype exact         {:.1} % ({} of {} frames with a true karyotype; not determined counts as wrong)",
            k.exact_pct,
            k.exact,
            k.frames
        )?,
        None => outln!("karyotype exact         n/a (no karyotype in the truth)")?,
    }
    if report.instances.is_empty() {
        outln!("instances at IoU 0.5    n/a (no polygons/label maps)")?;
    }
    for i in &report.instances {
        outln!(
            "instances at IoU {:.1}    precision {:.3}  recall {:.3}  F1 {:.3}  (tp {} fp {} fn {}, {} frames; truth: {})",
            i.iou,
            i.precision,
            i.recall,
            i.f1,
            i.tp,
            i.fp,
            i.fn_,
            i.frames,
            i.note
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
