//! `karyoscreen analyze`: one frame, its karyotype and verdict.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use karyoscreen::device::capture::load_frame;
use karyoscreen::tools::report::write_report;

use super::{analyse_and_record, ModelArgs, RecordArgs};

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  karyoscreen analyze spread.png\n  karyoscreen analyze spread.jpg --json --report out/"
)]
pub struct AnalyzeArgs {
    /// The frame: PNG, JPEG, TIFF or BMP.
    frame: PathBuf,
    /// Print the full result as JSON.
    #[arg(long)]
    json: bool,
    /// Also write DIR/<frame-stem>.annotated.png and DIR/<frame-stem>.karyogram.png.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    record: RecordArgs,
}

pub fn exec(args: AnalyzeArgs) -> Result<ExitCode> {
    let pipeline = args.model.pipeline()?;
    let mut recorder = args.record.open()?;
    let frame = load_frame(&args.frame)?;
    let result = analyse_and_record(&pipeline, &frame, recorder.as_mut())?;
    let pictures = match &args.report {
        Some(dir) => {
            let stem = args.frame.file_stem().map_or("frame".into(), |s| s.to_string_lossy().into_owned());
            Some(write_report(&frame.image, &result, &pipeline.thresholds, dir, &stem)?)
        }
        None => None,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&result)?)?;
    } else {
        let karyotype = if result.karyotype_determined {
            format!("karyotype {}", result.karyotype)
        } else {
            result.karyotype.clone()
        };
        outln!("{}: {} objects, {karyotype}", frame.origin, result.count)?;
        outln!("verdict {}: {}", result.verdict, result.reasons.join("; "))?;
        if let Some(p) = &pictures {
            outln!("report: {} and {}", p.annotated.display(), p.karyogram.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
