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
use karyoscreen::bundle;
use karyoscreen::record::{RecordOptions, Recorder};
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
    /// Append every analysed cell and case verdict as one JSON line to this file (fsynced).
    #[arg(long, global = true, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Rotate the record (FILE → FILE.1 → …) before a line would take it past this size.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = karyoscreen::record::DEFAULT_MAX_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    record_max_bytes: u64,
    /// Record files kept, FILE included; the oldest is dropped.
    #[arg(long, global = true, value_name = "N", default_value_t = karyoscreen::record::DEFAULT_KEEP as u64,
          value_parser = clap::value_parser!(u64).range(2..=1000))]
    record_keep: u64,
    /// Also accept models signed by this ed25519 public key (a `.pub` file from `model keygen`);
    /// repeatable. The release key is always trusted.
    #[arg(long = "trusted-key", global = true, value_name = "FILE")]
    trusted_keys: Vec<PathBuf>,
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
        /// Frames from: `camera` (the profile's), `demo` (the built-in cells, round and round), a folder to watch, or one image file.
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
        /// Execution plan: `dequantized` (int8 weights made float at load; the default) or
        /// `as-is` (the QDQ graph as the file has it).
        #[arg(long, value_name = "PLAN", default_value_t = karyoscreen::model::Plan::default())]
        plan: karyoscreen::model::Plan,
        /// Inference threads measured besides 1 (default: min(2, available cores)).
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Also write the model inputs of the frames (image.f32, size.f32, cells.json) here.
        #[arg(long, value_name = "DIR")]
        save_inputs: Option<PathBuf>,
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
    /// Model bundles (ONNX + card + signature): keys, signing, verifying, atomic install, rollback.
    Model {
        #[command(subcommand)]
        action: ModelCommand,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Make a signing key: the secret seed to KEY (mode 0600), the public key to KEY.pub.
    Keygen {
        #[arg(long, value_name = "KEY")]
        out: PathBuf,
    },
    /// Sign MODEL.onnx with its card: writes MODEL.sig beside them.
    Sign {
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        model: PathBuf,
    },
    /// Check a bundle's sha256 and signature (and that it loads); non-zero exit when refused.
    Verify { model: PathBuf },
    /// Verify MODEL.onnx, copy its bundle to DIR/<version>/ and switch DIR/current to it
    /// atomically, keeping the old one as DIR/previous.
    Install {
        model: PathBuf,
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Swap DIR/current and DIR/previous atomically.
    Rollback {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Frames come one after another with the same large working buffers (labelling alone takes
/// 16 bytes a pixel). glibc's adaptive thresholds hand such blocks back to the kernel after
/// each frame and fault them in again, which cost about half of segmentation's time here;
/// fixed thresholds keep them in the heap for the next frame (peak memory: one frame's).
#[cfg(target_env = "gnu")]
fn keep_frame_buffers() {
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// musl's allocator has no such knobs.
#[cfg(not(target_env = "gnu"))]
fn keep_frame_buffers() {}

fn main() -> ExitCode {
    // Like other Unix filters: a closed pipe (`karyoscreen demo | head`) ends us quietly.
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_frame_buffers();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            // One line, whatever a library's message holds (some decoders' errors span lines).
            let message = format!("{err:#}");
            eprintln!("karyoscreen: {}", message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" "));
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
    // Every model load below (--model, the built-in one) accepts these keys besides the release key.
    bundle::trust_key_files(&cli.trusted_keys)?;
    if let Command::Model { action } = &cli.command {
        return model_command(action);
    }
    if let Command::Bench { frames, rounds, json, plan, threads, save_inputs } = &cli.command {
        let options = karyoscreen::bench::BenchOptions {
            rounds: *rounds,
            plan: *plan,
            threads: threads.unwrap_or_else(karyoscreen::model::default_threads),
            save_inputs: save_inputs.clone(),
        };
        return bench(cli.model.as_deref(), frames, &options, *json);
    }
    let model = load_model(cli.model.as_deref())?;
    let record_options = RecordOptions { max_bytes: cli.record_max_bytes, keep: cli.record_keep as usize };
    let mut recorder = cli.record.as_deref().map(|path| Recorder::open_with(path, record_options)).transpose()?;
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
        Command::Bench { .. } | Command::Model { .. } => unreachable!("handled before the model is loaded"),
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

/// Analyses one frame and records it before anything is shown: what callers print after this
/// returns (e.g. demo's `frame N:` line) comes after the record is on stable storage.
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
    let mut frames = Vec::new();
    for path in &paths {
        let frame = load_frame(path)?;
        let result = analyse_and_record(&pipeline, &frame, recorder.as_deref_mut())?;
        cells.push(CellSummary::from_result(&frame.origin, &result));
        if recorder.is_some() {
            let frame_sha256 = karyoscreen::record::frame_sha256(&frame.image);
            frames.push(karyoscreen::record::CaseFrame { origin: frame.origin, frame_sha256 });
        }
    }
    let report = tally(&cells, count, analyse);
    // The case verdict is on stable storage before it is printed.
    if let Some(recorder) = recorder {
        recorder.case(&pipeline.model, &pipeline.thresholds, count, analyse, &frames, &report)?;
    }
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
        if let Some(s) = &report.structure {
            println!(
                "structure ({}): AUROC {:.4} over {} abnormal / {} normal crops; at threshold {:.4}: \
                 {:.4} of normal flagged, recall {:.4}, arm accuracy {:.4}",
                s.note, s.auroc, s.n_abnormal, s.n_normal, s.threshold, s.normal_flagged_rate, s.recall_any, s.arm_accuracy
            );
            for (kind, recall) in &s.recall_per_type {
                println!("  recall {kind:<22} {recall:.4}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(
    model: Option<&std::path::Path>,
    paths: &[PathBuf],
    options: &karyoscreen::bench::BenchOptions,
    json: bool,
) -> Result<ExitCode> {
    let frames = |loaded: &Model| -> Result<Vec<Vec<u8>>> {
        if paths.is_empty() {
            return (0..DEMO_CELLS.len())
                .map(|i| {
                    let frame = karyoscreen::demo::render_cell(DEMO_CELLS[i].0, &loaded.card.class_stats, i as u64)
                        .map_err(anyhow::Error::msg)?;
                    let mut png = std::io::Cursor::new(Vec::new());
                    frame.write_to(&mut png, image::ImageFormat::Png)?;
                    Ok(png.into_inner())
                })
                .collect();
        }
        paths
            .iter()
            .map(|p| {
                let bytes = std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
                // Refuse what `analyze` refuses (bombs, non-images), naming the file.
                karyoscreen::capture::frame_from_bytes(&bytes, &p.display().to_string())?;
                Ok(bytes)
            })
            .collect()
    };
    let onnx = match model {
        Some(path) => std::fs::read(path).with_context(|| format!("{}: cannot read model", path.display()))?,
        None => Model::embedded_onnx().to_vec(),
    };
    let report = karyoscreen::bench::bench(|| load_model(model), &onnx, frames, options)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} frames x {} rounds, {:.1} objects per frame, plan {}, {} cores available (timings are upper bounds on a shared machine)",
        report.frames, report.rounds, report.objects_per_frame, report.plan, report.available_cores
    );
    println!(
        "model start-up {:.0} ms{}, peak RSS {}",
        report.startup_ms,
        report.replan_ms.map(|m| format!(" (then {m:.0} ms to build plan {})", report.plan)).unwrap_or_default(),
        report.peak_rss_mb.map(|m| format!("{m:.1} MB")).unwrap_or_else(|| "unknown".into())
    );
    let line = |stage: &str, s: &karyoscreen::bench::StageStats| {
        println!("{stage:<24} median {:>7.1} ms   p90 {:>7.1} ms", s.median_ms, s.p90_ms)
    };
    line("decode (PNG)", &report.decode);
    line("analysis", &report.analyse);
    for t in &report.by_threads {
        let n = t.threads;
        line(&format!("segmentation, {n} thr"), &t.segment);
        line(&format!("preprocessing, {n} thr"), &t.preprocess);
        line(&format!("inference/cell, {n} thr"), &t.infer_per_cell);
        println!("{:<24} median {:>7.2} ms", format!("inference/crop, {n} thr"), t.infer_per_crop_ms);
        line(&format!("whole cell, {n} thr"), &t.whole_cell);
    }
    Ok(ExitCode::SUCCESS)
}

/// `karyoscreen model …`: keys, signing, verification, install and rollback of model bundles.
fn model_command(action: &ModelCommand) -> Result<ExitCode> {
    let trust = bundle::Trust::process();
    match action {
        ModelCommand::Keygen { out } => {
            let key = bundle::keygen(out)?;
            println!("{}", bundle::public_key_hex(&key));
            println!(
                "key id {}: secret key {} (mode 0600, keep it private), public key {}",
                bundle::key_id(&key),
                out.display(),
                bundle::pub_path_for(out).display()
            );
        }
        ModelCommand::Sign { key, model } => {
            let (sig, v) = bundle::sign(model, key)?;
            println!(
                "signed {}: sha256 {}, card sha256 {}, key id {} -> {}",
                model.display(),
                v.onnx_sha256,
                v.card_sha256,
                v.key_id,
                sig.display()
            );
        }
        ModelCommand::Verify { model } => {
            let v = bundle::Bundle::read(model)?.verify(&trust)?;
            Model::from_path(model)?;
            println!(
                "ok {}: sha256 {}, card sha256 {}, signed by key {} ({})",
                model.display(),
                v.onnx_sha256,
                v.card_sha256,
                v.key_id,
                v.key_source
            );
        }
        ModelCommand::Install { model, dir } => {
            let done = bundle::install(model, dir, &trust)?;
            if done.unchanged {
                println!("{} is already the current model in {} ({})", done.version, dir.display(), done.model_path.display());
            } else {
                println!(
                    "installed {} (sha256 {}, key id {}) in {}: current -> {}, previous -> {}; run with --model {}",
                    model.display(),
                    done.verified.onnx_sha256,
                    done.verified.key_id,
                    dir.display(),
                    done.version,
                    done.previous.as_deref().unwrap_or("(none)"),
                    done.model_path.display()
                );
            }
        }
        ModelCommand::Rollback { dir } => {
            let (current, previous) = bundle::rollback(dir, &trust)?;
            println!("rolled back {}: current -> {current}, previous -> {previous}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
