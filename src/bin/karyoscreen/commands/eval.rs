//! `karyoscreen eval`: the model through this runtime on a labelled set.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};

use karyoscreen::tools::evaluate::evaluate;

use super::ModelArgs;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Split {
    Train,
    Val,
    Test,
}

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  karyoscreen eval ../shared/data/pki3_gband --split test")]
pub struct EvalArgs {
    /// A labelled set: DIR/labels.csv and the crops it names.
    dir: PathBuf,
    /// Only rows of this split.
    #[arg(long, value_enum)]
    split: Option<Split>,
    /// Print the full report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

pub fn exec(args: EvalArgs) -> Result<ExitCode> {
    let model = args.model.load()?;
    let split = args.split.map(|s| format!("{s:?}").to_lowercase());
    let report = evaluate(&model, &args.dir, split.as_deref())?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{} ({}), {} crops in {} cells, model {}",
        report.data,
        report.split.as_deref().unwrap_or("all splits"),
        report.cell.n,
        report.cells,
        report.model
    )?;
    for (level, f) in [("per crop", &report.crop), ("after cell step", &report.cell)] {
        outln!(
            "{level:<16} accuracy {:.4}  macro precision {:.4}  recall {:.4}  F1 {:.4}",
            f.accuracy,
            f.macro_precision,
            f.macro_recall,
            f.macro_f1
        )?;
    }
    if let Some(s) = &report.structure {
        outln!(
            "structure ({}): AUROC {:.4} over {} abnormal / {} normal crops; at threshold {:.4}: \
             {:.4} of normal flagged, recall {:.4}, arm accuracy {:.4}",
            s.note,
            s.auroc,
            s.n_abnormal,
            s.n_normal,
            s.threshold,
            s.normal_flagged_rate,
            s.recall_any,
            s.arm_accuracy
        )?;
        for (kind, recall) in &s.recall_per_type {
            outln!("  recall {kind:<22} {recall:.4}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
