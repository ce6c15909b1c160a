use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use karyoscreen::capture::{load_frame, DemoSource, Frame, FrameSource};
use karyoscreen::demo::DEMO_CELLS;
use karyoscreen::indicate::{console, Led};
use karyoscreen::model::Model;
use karyoscreen::pipeline::{CellResult, Pipeline};
use karyoscreen::board::Board;
use karyoscreen::record::Recorder;
use karyoscreen::run::RunOptions;
use karyoscreen::service::serve;

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
        /// Also write DIR/<frame-stem>.annotated.png and DIR/<frame-stem>.karyogram.png.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
    },
    /// Analyse every frame in DIR (sorted) as the cells of one case and tally them as a lab does:
    /// modal number, clones (ISCN clone notation), mosaicism, case verdict with reasons.
    Case {
        dir: PathBuf,
        /// Print the full case report as JSON.
        #[arg(long)]
        json: bool,
        /// Cells to score for the count.
        #[arg(long, value_name = "N", default_value_t = 20)]
        count: usize,
        /// Cells to analyse in full among the scored ones.
        #[arg(long, value_name = "N", default_value_t = 5)]
        analyse: usize,
    },
    /// The device's run loop: frames from the board's camera (or --source), verdicts on its LEDs.
    #[command(group(clap::ArgGroup::new("profile").required(true).args(["board", "config"])))]
    Run {
        /// A built-in board profile: raspberry-pi-4, raspberry-pi-5, jetson-nano, jetson-orin-nano, generic.
        #[arg(long, value_name = "NAME")]
        board: Option<String>,
        /// A board profile file (TOML, as in boards/).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Frames from: `camera` (the profile's), `demo`, a folder to watch, or one image file.
        #[arg(long, default_value = "camera")]
        source: karyoscreen::service::Source,
        /// Print LED changes on the console instead of driving the board's GPIO lines.
        #[arg(long)]
        console_leds: bool,
        /// Analysed frames of a field that must agree before a verdict is shown.
        #[arg(long, default_value_t = 2)]
        hold: usize,
        /// Stop after this many frames.
        #[arg(long, value_name = "N")]
        max_frames: Option<usize>,
    },
    /// Per-stage latency, start-up time and peak memory over repeated analyses.
    Bench {
        /// Frames to analyse (default: the built-in demo frames).
        frames: Vec<PathBuf>,
        /// Times each frame is analysed.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Print the report as JSON.
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

fn load_model(path: Option<&std::path::Path>) -> Result<Model> {
    match path {
        Some(path) => Model::from_path(path),
        None => Model::embedded(),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Bench { frames, rounds, json } = &cli.command {
        return bench(cli.model.as_deref(), frames, *rounds, *json);
    }
    let model = load_model(cli.model.as_deref())?;
    let mut recorder = cli.record.as_deref().map(Recorder::open).transpose()?;
    match cli.command {
        Command::Demo { write_frame: Some(n), out: Some(out) } => write_demo_frame(&model, n, &out),
        Command::Demo { .. } => demo(Pipeline::new(model), recorder.as_mut()),
        Command::Analyze { frame, json, report } => {
            analyze(Pipeline::new(model), &frame, json, report.as_deref(), recorder.as_mut())
        }
        Command::Case { dir, json, count, analyse } => {
            case(Pipeline::new(model), &dir, json, count, analyse, recorder.as_mut())
        }
        Command::Eval { dir, split, json } => eval(&model, &dir, split.as_deref(), json),
        Command::Bench { .. } => unreachable!("handled before the model is loaded"),
        Command::Run { board, config, source, console_leds, hold, max_frames } => {
            let board = match (board, config) {
                (_, Some(path)) => Board::load(&path)?,
                (Some(name), None) => Board::built_in(&name)?,
                (None, None) => unreachable!("clap requires --board or --config"),
            };
            let options = RunOptions { hold: hold.max(1), max_frames, ..RunOptions::default() };
            let pipeline = Pipeline::new(model);
            let summary = serve(&pipeline, &board, &source, console_leds, &options, recorder.as_mut())?;
            println!(
                "stopped: {} frames, {} analysed, {} skipped by the quality gate, {} verdicts shown",
                summary.frames, summary.analysed, summary.skipped, summary.shown
            );
            Ok(ExitCode::SUCCESS)
        }
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

fn analyze(
    pipeline: Pipeline,
    path: &std::path::Path,
    json: bool,
    report: Option<&std::path::Path>,
    recorder: Option<&mut Recorder>,
) -> Result<ExitCode> {
    let frame = load_frame(path)?;
    let result = analyse_and_record(&pipeline, &frame, recorder)?;
    let pictures = match report {
        Some(dir) => {
            let stem = path.file_stem().map_or("frame".into(), |s| s.to_string_lossy().into_owned());
            Some(karyoscreen::report::write_report(&frame.image, &result, &pipeline.thresholds, dir, &stem)?)
        }
        None => None,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!("{}: {} objects, karyotype {}", frame.origin, result.count, result.karyotype);
        println!("verdict {}: {}", result.verdict, result.reasons.join("; "));
        if let Some(p) = &pictures {
            println!("report: {} and {}", p.annotated.display(), p.karyogram.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn case(
    pipeline: Pipeline,
    dir: &std::path::Path,
    json: bool,
    count: usize,
    analyse: usize,
    mut recorder: Option<&mut Recorder>,
) -> Result<ExitCode> {
    use karyoscreen::case::{tally, CellSummary};
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read case folder", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && karyoscreen::capture::is_image_file(p))
        .collect();
    paths.sort();
    if paths.is_empty() {
        anyhow::bail!("{}: no frames (png, jpg, jpeg, tif, tiff, bmp) in case folder", dir.display());
    }
    let mut cells = Vec::new();
    for path in &paths {
        let frame = load_frame(path)?;
        let result = analyse_and_record(&pipeline, &frame, recorder.as_deref_mut())?;
        cells.push(CellSummary::from_result(&frame.origin, &result));
    }
    let report = tally(&cells, count, analyse);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for cell in &report.cells {
            println!("{:<13} {:<16} {:<13} {}", cell.role, cell.cell.karyotype, cell.cell.verdict, cell.cell.origin);
        }
        println!(
            "case {}: {} frames, {} scored, {} indeterminate, modal number {}",
            dir.display(),
            report.cells_total,
            report.cells_scored,
            report.cells_indeterminate,
            report.modal_count.map_or("-".into(), |m| m.to_string())
        );
        println!("karyotype {}", if report.karyotype.is_empty() { "-" } else { &report.karyotype });
        println!("verdict {}: {}", report.verdict, report.reasons.join("; "));
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

fn bench(model: Option<&std::path::Path>, paths: &[PathBuf], rounds: usize, json: bool) -> Result<ExitCode> {
    let frames: Vec<image::GrayImage> = if paths.is_empty() {
        let stats = load_model(model)?.card.class_stats;
        (0..DEMO_CELLS.len())
            .map(|i| karyoscreen::demo::render_cell(DEMO_CELLS[i].0, &stats, i as u64).map_err(anyhow::Error::msg))
            .collect::<Result<_>>()?
    } else {
        paths.iter().map(|p| load_frame(p).map(|f| f.image)).collect::<Result<_>>()?
    };
    let report = karyoscreen::bench::bench(|| load_model(model), &frames, rounds)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} frames x {} rounds, {:.1} objects per frame, model start-up {:.0} ms, peak RSS {}",
        report.frames,
        report.rounds,
        report.objects_per_frame,
        report.startup_ms,
        report.peak_rss_mb.map(|m| format!("{m:.1} MB")).unwrap_or_else(|| "unknown".into())
    );
    for (stage, s) in [
        ("segmentation", &report.segment),
        ("preprocessing", &report.preprocess),
        ("inference/cell", &report.infer_per_cell),
        ("analysis", &report.analyse),
        ("whole frame", &report.total),
    ] {
        println!("{stage:<15} median {:>7.1} ms   p90 {:>7.1} ms", s.median_ms, s.p90_ms);
    }
    println!("inference/crop  mean   {:>7.2} ms", report.infer_per_crop_ms);
    Ok(ExitCode::SUCCESS)
}
