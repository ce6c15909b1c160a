//! The device's run loop: frames in, verdicts on the LEDs, every cell recorded.
//!
//! A frame must pass the quality gate (focus, exposure) to be analysed; a verdict is shown
//! only once the same result has held over `hold` consecutive analysed frames of the field;
//! a source that fails is reopened with backoff while the fault LED blinks; a stop request
//! (SIGTERM) ends the loop between two crops, at most one crop's inference later, and turns every
//! LED off before returning.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Result;
use embedded_hal::digital::OutputPin;
use image::GrayImage;

use crate::device::capture::{CaptureError, FrameSource};
use crate::device::indicate::{Led, Panel};
use crate::integrity::record::Recorder;
use crate::pipeline::decide::Verdict;
use crate::pipeline::infer::Stopped;
use crate::pipeline::Pipeline;

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Consecutive analysed frames that must agree before a verdict is shown.
    pub hold: usize,
    /// Below this sharpness (variance of the Laplacian) a frame is skipped as blurred.
    pub min_focus: f64,
    /// Mean gray level outside this range: under- or over-exposed, skipped.
    pub exposure: (f64, f64),
    /// Longest wait between attempts to reopen a failed source.
    pub max_backoff: Duration,
    /// Stop after this many frames (tests, soak runs); `None` runs until stopped.
    pub max_frames: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            hold: 2,
            min_focus: 20.0,
            exposure: (15.0, 245.0),
            max_backoff: Duration::from_secs(30),
            max_frames: None,
        }
    }
}

/// What the loop tells its host (stdout lines, systemd notifications).
pub trait RunEvents {
    fn ready(&mut self) {}
    fn alive(&mut self) {}
    fn shown(&mut self, _verdict: Verdict, _karyotype: &str, _reasons: &[String]) {}
    /// Skipped by the quality gate.
    fn skipped(&mut self, _origin: &str, _why: &str) {}
    /// A frame the source could not decode; the loop goes on with the next.
    fn unreadable(&mut self, _error: &anyhow::Error) {}
    /// A cell's record is on stable storage (called only after its fdatasync returned).
    fn recorded(&mut self, _seq: u64, _origin: &str) {}
    fn source_failed(&mut self, _error: &anyhow::Error, _retry_in: Duration) {}
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub frames: usize,
    pub analysed: usize,
    pub skipped: usize,
    pub shown: usize,
    /// Frames the source could not decode (skipped without backoff).
    pub unreadable: usize,
    pub source_failures: usize,
}

/// Focus (variance of the 4-neighbour Laplacian) and mean gray level of a frame.
pub fn frame_quality(frame: &GrayImage) -> (f64, f64) {
    let (w, h) = frame.dimensions();
    let px = |x: u32, y: u32| frame.get_pixel(x, y)[0] as f64;
    let mean = frame.as_raw().iter().map(|&v| v as f64).sum::<f64>() / (w as f64 * h as f64).max(1.0);
    if w < 3 || h < 3 {
        return (0.0, mean);
    }
    let (mut sum, mut sum2, mut n) = (0.0, 0.0, 0.0);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let lap = px(x - 1, y) + px(x + 1, y) + px(x, y - 1) + px(x, y + 1) - 4.0 * px(x, y);
            sum += lap;
            sum2 += lap * lap;
            n += 1.0;
        }
    }
    (sum2 / n - (sum / n) * (sum / n), mean)
}

pub fn run<S, P>(
    source: &mut S,
    pipeline: &Pipeline,
    panel: &mut Panel<P>,
    mut recorder: Option<&mut Recorder>,
    options: &RunOptions,
    stop: &AtomicBool,
    events: &mut dyn RunEvents,
) -> Result<RunSummary>
where
    S: FrameSource + ?Sized,
    P: OutputPin,
    P::Error: std::fmt::Debug,
{
    let mut panel = LedsOffOnDrop(panel);
    let panel = &mut *panel;
    let led = |panel: &mut Panel<P>, led: Led, on: bool| -> Result<()> {
        panel.set(led, on).map_err(|e| anyhow::anyhow!("LED {}: {e:?}", led.name()))
    };
    led(panel, Led::Ready, true)?;
    events.ready();
    let mut summary = RunSummary::default();
    let mut recent: Vec<(Verdict, String)> = Vec::new();
    let mut shown: Option<(Verdict, String)> = None;
    let mut backoff = Duration::from_secs(1);

    while !stop.load(Ordering::SeqCst) && options.max_frames.is_none_or(|m| summary.frames < m) {
        events.alive();
        let frame = match source.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) if source.finished() => break,
            Ok(None) => continue,
            Err(CaptureError::Frame(error)) => {
                // The source still works: no backoff, so one bad file does not delay the next.
                summary.unreadable += 1;
                events.unreadable(&error);
                continue;
            }
            Err(CaptureError::Source(error)) => {
                summary.source_failures += 1;
                led(panel, Led::Fault, true)?;
                events.source_failed(&error, backoff);
                blink_while_waiting(panel, Led::Fault, backoff, stop)?;
                backoff = (backoff * 2).min(options.max_backoff);
                if let Err(error) = source.reopen() {
                    log::warn!("reopening the frame source failed: {error:#}");
                }
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        led(panel, Led::Fault, false)?;
        summary.frames += 1;

        let (focus, exposure) = frame_quality(&frame.image);
        let problem = if focus < options.min_focus {
            Some(format!("blurred (focus {focus:.1} < {:.1})", options.min_focus))
        } else if !(options.exposure.0..=options.exposure.1).contains(&exposure) {
            Some(format!("exposure {exposure:.0} outside {:.0}..{:.0}", options.exposure.0, options.exposure.1))
        } else {
            None
        };
        if let Some(why) = problem {
            summary.skipped += 1;
            events.skipped(&frame.origin, &why);
            continue;
        }

        led(panel, Led::Busy, true)?;
        let result = match pipeline.analyse_until(&frame.image, stop) {
            Ok(result) => result,
            Err(error) if error.is::<Stopped>() => {
                log::info!("{}: stopped before its analysis was done; not recorded", frame.origin);
                break;
            }
            Err(error) => return Err(error),
        };
        if let Some(recorder) = recorder.as_deref_mut() {
            let seq = recorder.cell(&frame.origin, &frame.image, &pipeline.model, &pipeline.thresholds, &result)?;
            events.recorded(seq, &frame.origin);
        }
        led(panel, Led::Busy, false)?;
        summary.analysed += 1;

        recent.push((result.verdict, result.karyotype.clone()));
        if recent.len() > options.hold {
            recent.remove(0);
        }
        let held = recent.len() == options.hold && recent.iter().all(|r| *r == recent[0]);
        if held && shown.as_ref() != Some(&recent[0]) {
            panel.show_verdict(result.verdict).map_err(|e| anyhow::anyhow!("LEDs: {e:?}"))?;
            events.shown(result.verdict, &result.karyotype, &result.reasons);
            summary.shown += 1;
            shown = Some(recent[0].clone());
        }
    }
    panel.all_off().map_err(|e| anyhow::anyhow!("turning LEDs off: {e:?}"))?;
    Ok(summary)
}

/// Turns every LED off when dropped, so that no way out of the loop (stop, error, unwinding
/// panic) leaves a verdict lit on a board that is no longer screening.
struct LedsOffOnDrop<'a, P: OutputPin>(&'a mut Panel<P>);

impl<P: OutputPin> std::ops::Deref for LedsOffOnDrop<'_, P> {
    type Target = Panel<P>;
    fn deref(&self) -> &Panel<P> {
        self.0
    }
}

impl<P: OutputPin> std::ops::DerefMut for LedsOffOnDrop<'_, P> {
    fn deref_mut(&mut self) -> &mut Panel<P> {
        self.0
    }
}

impl<P: OutputPin> Drop for LedsOffOnDrop<'_, P> {
    fn drop(&mut self) {
        if self.0.all_off().is_err() {
            log::error!("could not turn the LEDs off");
        }
    }
}

/// Waits (unless stopped) with `led` blinking at 2 Hz, and leaves it lit.
fn blink_while_waiting<P>(panel: &mut Panel<P>, led: Led, total: Duration, stop: &AtomicBool) -> Result<()>
where
    P: OutputPin,
    P::Error: std::fmt::Debug,
{
    let step = Duration::from_millis(250);
    let mut waited = Duration::ZERO;
    let mut on = true;
    while waited < total && !stop.load(Ordering::SeqCst) {
        panel.set(led, on).map_err(|e| anyhow::anyhow!("LED {}: {e:?}", led.name()))?;
        std::thread::sleep(step.min(total - waited));
        waited += step;
        on = !on;
    }
    panel.set(led, true).map_err(|e| anyhow::anyhow!("LED {}: {e:?}", led.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_frames_have_no_focus_and_sharp_edges_do() {
        let flat = GrayImage::from_pixel(32, 32, image::Luma([128]));
        assert_eq!(frame_quality(&flat), (0.0, 128.0));
        let stripes = GrayImage::from_fn(32, 32, |x, _| image::Luma([if x % 4 < 2 { 40 } else { 220 }]));
        assert!(frame_quality(&stripes).0 > 1000.0);
    }
}
