//! `karyoscreen run` as a service: picks the frame source and LED backend from the board
//! profile, stops cleanly on SIGTERM/SIGINT, and tells systemd it is ready and alive.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sd_notify::NotifyState;

use crate::device::board::Board;
use crate::device::capture::{self, DemoSource, DirectorySource, FileSource, FrameSource};
use crate::device::indicate::{console, gpio};
use crate::device::run::{run, RunEvents, RunOptions, RunSummary};
use crate::integrity::record::Recorder;
use crate::pipeline::decide::Verdict;
use crate::pipeline::Pipeline;

/// Where frames come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The profile's V4L2 camera.
    Camera,
    /// The built-in demo cells.
    Demo,
    /// A folder to watch, or one image file.
    Path(PathBuf),
}

impl std::str::FromStr for Source {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Source, Self::Err> {
        Ok(match s {
            "camera" => Source::Camera,
            "demo" => Source::Demo,
            path => Source::Path(PathBuf::from(path)),
        })
    }
}

/// Prints each shown verdict as one `verdict …` line and keeps systemd's watchdog fed. A
/// failed write to stdout (a closed pipe) does not stop the screening: the record has it all.
struct ServiceEvents;

impl RunEvents for ServiceEvents {
    fn ready(&mut self) {
        let _ = sd_notify::notify(false, &[NotifyState::Ready]);
        let _ = writeln!(std::io::stdout(), "ready");
    }

    fn alive(&mut self) {
        let _ = sd_notify::notify(false, &[NotifyState::Watchdog]);
    }

    fn shown(&mut self, verdict: Verdict, karyotype: &str, reasons: &[String]) {
        let _ = writeln!(std::io::stdout(), "verdict {verdict} {karyotype} ({})", reasons.join("; "));
    }

    /// The acknowledgement: printed only once the record's line is synced.
    fn recorded(&mut self, seq: u64, origin: &str) {
        // Escaped: a file name with a newline must not forge a second acknowledgement line.
        let _ = writeln!(std::io::stdout(), "recorded {seq} {}", origin.escape_debug());
    }

    fn skipped(&mut self, origin: &str, why: &str) {
        log::info!("{origin}: skipped, {why}");
    }

    fn unreadable(&mut self, error: &anyhow::Error) {
        let _ = writeln!(std::io::stderr(), "karyoscreen: {error:#}; frame skipped");
    }

    fn source_failed(&mut self, error: &anyhow::Error, retry_in: Duration) {
        let _ = writeln!(
            std::io::stderr(),
            "karyoscreen: frame source failed: {error:#}; retrying in {}s",
            retry_in.as_secs()
        );
    }
}

pub fn serve(
    pipeline: &Pipeline,
    board: &Board,
    source: &Source,
    console_leds: bool,
    options: &RunOptions,
    recorder: Option<&mut Recorder>,
) -> Result<RunSummary> {
    let stop = Arc::new(AtomicBool::new(false));
    // Each of these ends the loop between two crops, LEDs off (a terminal's hang-up and quit too).
    for signal in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGQUIT,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing signal handlers")?;
    }
    let mut frames: Box<dyn FrameSource + '_> = match source {
        Source::Camera => Box::new(capture::camera::Camera::open(&board.camera)?),
        Source::Demo => Box::new(DemoSource::cycling(&pipeline.model.card.class_stats)),
        Source::Path(path) if path.is_dir() => Box::new(DirectorySource::new(path, None)?),
        Source::Path(path) => {
            // One file that cannot be read is a mistake to report, not a run that did nothing.
            capture::load_frame(path)?;
            Box::new(FileSource::new(vec![path.clone()]))
        }
    };
    let mut events = ServiceEvents;
    let summary = if console_leds {
        run(frames.as_mut(), pipeline, &mut console::panel(), recorder, options, &stop, &mut events)?
    } else {
        let mut panel = gpio::panel(board)?;
        run(frames.as_mut(), pipeline, &mut panel, recorder, options, &stop, &mut events)?
    };
    let _ = sd_notify::notify(false, &[NotifyState::Stopping]);
    Ok(summary)
}
