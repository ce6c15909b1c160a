use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use karyoscreen::capture::{load_frame, DemoSource, Frame, FrameSource};
use karyoscreen::demo::DEMO_CELLS;
use karyoscreen::indicate::{console, Led};
use karyoscreen::model::Model;
use karyoscreen::pipeline::{CellResult, Pipeline};
use karyoscreen::record::Recorder;

/// Screens chromosome spreads: finds the chromosomes in a metaphase frame, classifies them,
/// builds the karyotype and lights the matching indicator. A screening aid: a person signs off.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// ONNX model to use instead of the built-in one (its card `<stem>.card.json` beside it).
    #[arg(long, global = true, value_name = "PATH")]
    model: Option<PathBuf>,
    /// Append every analysed cell as one JSON line to this file (fsynced).
    #[arg(long, global = true, value_name = "FILE")]
    record: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the built-in demo cells through the whole pipeline, with console LEDs.
    Demo {
        /// Only write demo frame N (1-based) as PNG to --out and print its truth as JSON.
        #[arg(long, value_name = "N", requires = "out")]
        write_frame: Option<usize>,
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Analyse one frame (PNG, JPEG, TIFF, BMP) and print the cell's karyotype and verdict.
    Analyze {
        frame: PathBuf,
        /// Print the full result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate the model through this runtime on a labelled set (DIR/labels.csv + images).
    Eval {
        dir: PathBuf,
        /// Only rows of this split (train, val, test).
        #[arg(long)]
        split: Option<String>,
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // Like other Unix filters: a closed pipe (`karyoscreen demo | head`) ends us quietly.
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("karyoscreen: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let model = match &cli.model {
        Some(path) => Model::from_path(path)?,
        None => Model::embedded()?,
    };
    let mut recorder = cli.record.as_deref().map(Recorder::open).transpose()?;
    match cli.command {
        Command::Demo { write_frame: Some(n), out: Some(out) } => write_demo_frame(&model, n, &out),
        Command::Demo { .. } => demo(Pipeline::new(model), recorder.as_mut()),
        Command::Analyze { frame, json } => analyze(Pipeline::new(model), &frame, json, recorder.as_mut()),
        Command::Eval { dir, split, json } => eval(&model, &dir, split.as_deref(), json),
    }
}

/// Analyses one frame and records it before anything is shown.
fn analyse_and_record(pipeline: &Pipeline, frame: &Frame, recorder: Option<&mut Recorder>) -> Result<CellResult> {
    let result = pipeline.analyse(&frame.image)?;
    if let Some(recorder) = recorder {
        recorder.cell(&frame.origin, &frame.image, &pipeline.model, &pipeline.thresholds, &result)?;
    }
    Ok(result)
}

fn demo(pipeline: Pipeline, mut recorder: Option<&mut Recorder>) -> Result<ExitCode> {
    println!(
        "karyoscreen demo: {} built-in frames rendered from the class statistics of {} ({})",
        DEMO_CELLS.len(),
        pipeline.model.card.name,
        pipeline.model.origin
    );
    let mut panel = console::panel();
    let mut source = DemoSource::new(&pipeline.model.card.class_stats);
    let (mut matched, mut total) = (0, 0);
    while let Some(frame) = source.next_frame()? {
        let (truth, _) = DEMO_CELLS[total];
        total += 1;
        let result = analyse_and_record(&pipeline, &frame, recorder.as_deref_mut())?;
        let hit = result.karyotype == truth;
        matched += hit as usize;
        println!(
            "frame {total}: true {truth:<11} detected {:<14} {}  LED {:<13} verdict {}: {}",
            result.karyotype,
            if hit { "(match)   " } else { "(mismatch)" },
            Led::for_verdict(result.verdict).name(),
            result.verdict,
            result.reasons.join("; ")
        );
        panel.show_verdict(result.verdict).ok();
    }
    println!("{matched}/{total} detected karyotypes match the truth");
    println!("screening aid only: every call needs the case logic and a person's sign-off");
    panel.all_off().ok();
    Ok(ExitCode::SUCCESS)
}

fn write_demo_frame(model: &Model, n: usize, out: &std::path::Path) -> Result<ExitCode> {
    let (karyotype, verdict) = *DEMO_CELLS
        .get(n.wrapping_sub(1))
        .with_context(|| format!("demo frame {n} does not exist (1..={})", DEMO_CELLS.len()))?;
    let image = karyoscreen::demo::render_cell(karyotype, &model.card.class_stats, (n - 1) as u64)
        .map_err(|e| anyhow::anyhow!("demo frame {n}: {e}"))?;
    image.save(out).with_context(|| format!("{}: cannot write frame", out.display()))?;
    println!("{}", serde_json::json!({ "karyotype": karyotype, "verdict": verdict }));
    Ok(ExitCode::SUCCESS)
}

fn analyze(pipeline: Pipeline, path: &std::path::Path, json: bool, recorder: Option<&mut Recorder>) -> Result<ExitCode> {
    let frame = load_frame(path)?;
    let result = analyse_and_record(&pipeline, &frame, recorder)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!("{}: {} objects, karyotype {}", frame.origin, result.count, result.karyotype);
        println!("verdict {}: {}", result.verdict, result.reasons.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}

fn eval(model: &Model, dir: &std::path::Path, split: Option<&str>, json: bool) -> Result<ExitCode> {
    let report = karyoscreen::evaluate::evaluate(model, dir, split)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} ({}), {} crops in {} cells, model {}",
            report.data,
            report.split.as_deref().unwrap_or("all splits"),
            report.cell.n,
            report.cells,
            report.model
        );
        for (level, f) in [("per crop", &report.crop), ("after cell step", &report.cell)] {
            println!(
                "{level:<16} accuracy {:.4}  macro precision {:.4}  recall {:.4}  F1 {:.4}",
                f.accuracy, f.macro_precision, f.macro_recall, f.macro_f1
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
