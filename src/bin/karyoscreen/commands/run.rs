//! `karyoscreen run`: the device's loop, frames from the board's camera, verdicts on its LEDs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::builder::PossibleValuesParser;
use clap::Args;

use karyoscreen::device::board::{Board, BUILT_IN_NAMES};
use karyoscreen::device::run::RunOptions;
use karyoscreen::device::service::{serve, Source};

use super::{ModelArgs, RecordArgs};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("profile").required(true).args(["board", "config"])))]
#[command(
    after_help = "Examples:\n  karyoscreen run --board raspberry-pi-5 --record /var/lib/karyoscreen/record.jsonl\n  \
                        karyoscreen run --board generic --source demo --console-leds --max-frames 12"
)]
pub struct RunArgs {
    /// A built-in board profile.
    #[arg(long, value_name = "NAME", value_parser = PossibleValuesParser::new(BUILT_IN_NAMES))]
    board: Option<String>,
    /// A board profile file (TOML, as in boards/).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Frames from: `camera` (the profile's), `demo` (the built-in cells, round and round), a
    /// folder to watch, or one image file.
    #[arg(long, value_name = "SOURCE", default_value = "camera")]
    source: Source,
    /// Print LED changes on the console instead of driving the board's GPIO lines.
    #[arg(long)]
    console_leds: bool,
    /// Analysed frames of a field that must agree before a verdict is shown.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=100))]
    hold: u64,
    /// Stop after this many frames.
    #[arg(long, value_name = "N")]
    max_frames: Option<usize>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    record: RecordArgs,
}

pub fn exec(args: RunArgs) -> Result<ExitCode> {
    let board = match (&args.board, &args.config) {
        (_, Some(path)) => Board::load(path)?,
        (Some(name), None) => Board::built_in(name)?,
        (None, None) => unreachable!("clap requires --board or --config"),
    };
    let pipeline = args.model.pipeline()?;
    let mut recorder = args.record.open()?;
    let options = RunOptions { hold: args.hold as usize, max_frames: args.max_frames, ..RunOptions::default() };
    let summary = serve(&pipeline, &board, &args.source, args.console_leds, &options, recorder.as_mut())?;
    outln!(
        "stopped: {} frames, {} analysed, {} skipped by the quality gate, {} unreadable, {} verdicts shown",
        summary.frames,
        summary.analysed,
        summary.skipped,
        summary.unreadable,
        summary.shown
    )?;
    Ok(ExitCode::SUCCESS)
}
