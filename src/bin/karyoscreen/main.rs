//! The `karyoscreen` command line: one file per subcommand under `commands/`.

#[macro_use]
mod commands;

use std::io::Write as _;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

use commands::{adapt, analyze, bench, case, demo, eval, eval_frames, import_karyograms, model, run, serve};

/// Screens chromosome spreads: finds the chromosomes in a metaphase frame, classifies them,
/// builds the karyotype and lights the matching indicator. A screening aid: a person signs off.
#[derive(Parser)]
#[command(
    version,
    about,
    after_help = "Start with `karyoscreen demo`; `karyoscreen <command> --help` shows each command's options."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the built-in demo cells through the whole pipeline, with console LEDs.
    Demo(demo::DemoArgs),
    /// Analyse one frame (PNG, JPEG, TIFF, BMP) and print the cell's karyotype and verdict.
    Analyze(analyze::AnalyzeArgs),
    /// Analyse every frame in a folder as the cells of one case and tally them as a lab does:
    /// modal number, clones, mosaicism, case verdict with reasons.
    Case(case::CaseArgs),
    /// The device's run loop: frames from the board's camera (or --source), verdicts on its LEDs.
    Run(run::RunArgs),
    /// Per-stage latency, start-up time and peak memory over repeated analyses.
    Bench(bench::BenchArgs),
    /// Evaluate the model through this runtime on a labelled set (DIR/labels.csv + images).
    Eval(eval::EvalArgs),
    /// Whole frames against their truth (DIR/frames.csv + ann/): count, karyotype and instance
    /// precision / recall at IoU 0.5.
    EvalFrames(eval_frames::EvalFramesArgs),
    /// A lab's karyogram images to a labelled crop set (DIR/labels.csv + crops) that `eval`
    /// reads: classes from a box file or from the layout; what cannot be read surely is refused.
    ImportKaryograms(import_karyograms::ImportKaryogramsArgs),
    /// Refit the model's identity head to a lab's labelled crops (DIR/labels.csv, e.g. from
    /// import-karyograms) and write it as a new bundle signed with your key.
    Adapt(adapt::AdaptArgs),
    /// The review station: a web page where a person reads the record and signs off cells and cases.
    Serve(serve::ServeArgs),
    /// Accounts of the review station.
    #[command(subcommand)]
    User(serve::UserCommand),
    /// Model bundles (ONNX + card + signature): keys, signing, verifying, install, rollback.
    #[command(subcommand)]
    Model(model::ModelCommand),
}

/// Frames come one after another with the same large working buffers (labelling alone takes
/// 16 bytes a pixel). glibc's adaptive thresholds hand such blocks back to the kernel after
/// each frame and fault them in again, which cost about half of segmentation's time; fixed
/// thresholds keep them in the heap for the next frame (peak memory: one frame's).
#[cfg(target_env = "gnu")]
fn keep_frame_buffers() {
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts (right
    // after the command line is parsed).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// The review station: every block of 128 KiB or more (argon2's 19 MiB, a picture's buffers) is
/// mapped on its own and unmapped when freed, so that it idles at a few MB between requests. A
/// fixed threshold stops glibc from raising it to the size of the first large block freed,
/// after which such blocks would stay in the heap.
#[cfg(target_env = "gnu")]
fn return_large_buffers() {
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

#[cfg(not(target_env = "gnu"))]
fn return_large_buffers() {}

/// musl's allocator has no such knobs: the static musl build (every board's binary) allocates
/// through mimalloc instead, which keeps freed pages for the next frame (figures in
/// docs/performance.md).
#[cfg(not(target_env = "gnu"))]
fn keep_frame_buffers() {}

#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One line on stderr, whatever a library's message holds (some decoders' errors span lines).
fn report(message: &str) {
    let line: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    // Nothing is left to tell anyone if even stderr cannot be written; never panic over it.
    let _ = writeln!(std::io::stderr(), "karyoscreen: {}", line.join(" "));
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            // clap's message is "error: …" (with possible values, if any), then a usage block
            // and a hint: keep the message.
            let text = e.render().to_string();
            let message = text.split("\n\n").next().unwrap_or_default().trim_start_matches("error: ");
            report(&format!("{message} (see --help)"));
            return ExitCode::from(2);
        }
    };
    // The review station analyses no frames: its few MB idle matter more than frame buffers.
    if matches!(cli.command, Command::Serve(_)) {
        return_large_buffers();
    } else if !matches!(cli.command, Command::User(_)) {
        keep_frame_buffers();
    }
    if !matches!(cli.command, Command::Run(_) | Command::Serve(_)) {
        // Like other Unix filters: a closed pipe (`karyoscreen demo | head`) ends us quietly.
        // `run` keeps SIGPIPE ignored, so that it can turn its LEDs off on the way out, and
        // `serve`, so that a browser that goes away mid-reply does not end the station.
        // SAFETY: restoring the default disposition of a signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Demo(args) => demo::exec(args),
        Command::Analyze(args) => analyze::exec(args),
        Command::Case(args) => case::exec(args),
        Command::Run(args) => run::exec(args),
        Command::Bench(args) => bench::exec(args),
        Command::Eval(args) => eval::exec(args),
        Command::EvalFrames(args) => eval_frames::exec(args),
        Command::ImportKaryograms(args) => import_karyograms::exec(args),
        Command::Adapt(args) => adapt::exec(args),
        Command::Serve(args) => serve::exec(args),
        Command::User(action) => serve::user(action),
        Command::Model(action) => model::exec(action),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            report(&format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}
