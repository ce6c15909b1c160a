//! `karyoscreen case`: every frame of a folder as the cells of one case, tallied as a lab does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use karyoscreen::device::capture::{is_image_file, load_frame};
use karyoscreen::integrity::record::{frame_sha256, CaseFrame};
use karyoscreen::tools::case::{tally, CellSummary};

use super::{analyse_and_record, ModelArgs, RecordArgs};

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  karyoscreen case case-042/ --count 20 --analyze 5 --record case-042.jsonl")]
pub struct CaseArgs {
    /// Folder of the case's frames (png, jpg, jpeg, tif, tiff, bmp), analysed in name order.
    dir: PathBuf,
    /// Print the full case report as JSON.
    #[arg(long)]
    json: bool,
    /// Cells to score for the count.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
    count: u64,
    /// Cells to analyse in full (banding) among the scored ones.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    analyze: u64,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    record: RecordArgs,
}

pub fn exec(args: CaseArgs) -> Result<ExitCode> {
    let pipeline = args.model.pipeline()?;
    let mut recorder = args.record.open()?;
    let dir = &args.dir;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read case folder", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image_file(p))
        .collect();
    paths.sort();
    if paths.is_empty() {
        bail!("{}: no frames (png, jpg, jpeg, tif, tiff, bmp) in case folder", dir.display());
    }
    let mut cells = Vec::new();
    let mut frames = Vec::new();
    for path in &paths {
        let frame = load_frame(path)?;
        let result = analyse_and_record(&pipeline, &frame, recorder.as_mut())?;
        cells.push(CellSummary::from_result(&frame.origin, &result));
        if recorder.is_some() {
            frames.push(CaseFrame { frame_sha256: frame_sha256(&frame.image), origin: frame.origin });
        }
    }
    let (count, analyze) = (args.count as usize, args.analyze as usize);
    let report = tally(&cells, count, analyze);
    // The case verdict is on stable storage before it is printed.
    if let Some(recorder) = recorder.as_mut() {
        recorder.case(&pipeline.model, &pipeline.thresholds, count, analyze, &frames, &report)?;
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for cell in &report.cells {
        outln!("{:<13} {:<16} {:<13} {}", cell.role, cell.cell.karyotype, cell.cell.verdict, cell.cell.origin)?;
    }
    outln!(
        "case {}: {} frames, {} scored, {} indeterminate, modal number {}",
        dir.display(),
        report.cells_total,
        report.cells_scored,
        report.cells_indeterminate,
        report.modal_count.map_or("-".into(), |m| m.to_string())
    )?;
    outln!("karyotype {}", if report.karyotype.is_empty() { "-" } else { &report.karyotype })?;
    outln!("verdict {}: {}", report.verdict, report.reasons.join("; "))?;
    Ok(ExitCode::SUCCESS)
}
