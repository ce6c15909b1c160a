//! The run loop's logic with the real model and demo frames, LEDs on mock pins: a verdict is
//! shown only once it held, a failing source lights the fault LED and is reopened, blurred
//! frames are skipped, and everything is off at the end.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;

use embedded_hal::digital::{ErrorType, OutputPin};
use karyoscreen::device::capture::{CaptureError, Frame, FrameSource};
use karyoscreen::device::indicate::{Led, Panel};
use karyoscreen::device::run::{run, RunEvents, RunOptions};
use karyoscreen::pipeline::decide::Verdict;
use karyoscreen::pipeline::infer::Model;
use karyoscreen::pipeline::Pipeline;
use karyoscreen::tools::demo::{render_cell, DEMO_CELLS};

struct MockPin(Rc<RefCell<Vec<bool>>>);

impl ErrorType for MockPin {
    type Error = Infallible;
}

impl OutputPin for MockPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.borrow_mut().push(false);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.borrow_mut().push(true);
        Ok(())
    }
}

/// Frames (or failures) in a fixed order; counts reopen calls.
struct Script {
    steps: VecDeque<Option<image::GrayImage>>,
    reopened: usize,
}

impl FrameSource for Script {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        match self.steps.pop_front() {
            None => Ok(None),
            Some(None) => Err(CaptureError::Source(anyhow::anyhow!("camera unplugged"))),
            Some(Some(image)) => Ok(Some(Frame { image, origin: "script".into() })),
        }
    }

    fn reopen(&mut self) -> anyhow::Result<()> {
        self.reopened += 1;
        Ok(())
    }
}

#[derive(Default)]
struct Seen {
    shown: Vec<(Verdict, String)>,
    skipped: usize,
    failures: usize,
}

impl RunEvents for Seen {
    fn shown(&mut self, verdict: Verdict, karyotype: &str, _: &[String]) {
        self.shown.push((verdict, karyotype.to_string()));
    }
    fn skipped(&mut self, _: &str, _: &str) {
        self.skipped += 1;
    }
    fn source_failed(&mut self, _: &anyhow::Error, _: std::time::Duration) {
        self.failures += 1;
    }
}

#[test]
fn verdicts_hold_before_showing_and_faults_recover() {
    let pipeline = Pipeline::new(Model::embedded().unwrap());
    let stats = &pipeline.model.card.class_stats;
    let normal = render_cell(DEMO_CELLS[0].0, stats, 0).unwrap();
    let trisomy = render_cell(DEMO_CELLS[1].0, stats, 1).unwrap();
    let blurred = image::imageops::blur(&normal, 4.0);
    let mut source = Script {
        steps: VecDeque::from([
            None,
            Some(normal.clone()),
            Some(blurred),
            Some(normal),
            Some(trisomy.clone()),
            Some(trisomy),
        ]),
        reopened: 0,
    };
    let levels: Vec<Rc<RefCell<Vec<bool>>>> = (0..6).map(|_| Rc::default()).collect();
    let mut panel = Panel::new(std::array::from_fn(|i| MockPin(levels[i].clone())), false).unwrap();
    let mut seen = Seen::default();
    let options = RunOptions { hold: 2, ..RunOptions::default() };
    let summary = run(&mut source, &pipeline, &mut panel, None, &options, &AtomicBool::new(false), &mut seen).unwrap();

    assert_eq!(source.reopened, 1);
    assert_eq!((seen.failures, seen.skipped), (1, 1));
    assert_eq!(
        seen.shown,
        [(Verdict::Normal, "46,XX".to_string()), (Verdict::Abnormal, "47,XY,+21".to_string())],
        "each verdict is shown once, after two agreeing frames (the blurred one skipped)"
    );
    assert_eq!((summary.frames, summary.analysed, summary.shown), (5, 4, 2));
    let history = |led: Led| levels[Led::ALL.iter().position(|&l| l == led).unwrap()].borrow().clone();
    assert!(history(Led::Fault).contains(&true), "fault LED lit while the camera was lost");
    assert!(history(Led::Abnormal).contains(&true));
    for led in Led::ALL {
        assert_eq!(history(led).last(), Some(&false), "{} must end off", led.name());
    }
}

/// Hands out one frame and raises the stop flag with it, as a SIGTERM arriving mid-frame does.
struct StopsDuringTheFrame<'a> {
    frame: Option<image::GrayImage>,
    stop: &'a AtomicBool,
}

impl FrameSource for StopsDuringTheFrame<'_> {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(self.frame.take().map(|image| Frame { image, origin: "script".into() }))
    }
}

#[test]
fn a_stop_during_a_frame_ends_the_loop_before_the_cell_is_analysed() {
    let pipeline = Pipeline::new(Model::embedded().unwrap());
    let frame = render_cell(DEMO_CELLS[0].0, &pipeline.model.card.class_stats, 0).unwrap();
    let stop = AtomicBool::new(false);
    let mut source = StopsDuringTheFrame { frame: Some(frame), stop: &stop };
    let levels: Vec<Rc<RefCell<Vec<bool>>>> = (0..6).map(|_| Rc::default()).collect();
    let mut panel = Panel::new(std::array::from_fn(|i| MockPin(levels[i].clone())), false).unwrap();
    let summary =
        run(&mut source, &pipeline, &mut panel, None, &RunOptions::default(), &stop, &mut Seen::default()).unwrap();
    assert_eq!((summary.frames, summary.analysed, summary.shown), (1, 0, 0));
    for (led, history) in Led::ALL.iter().zip(&levels) {
        assert_eq!(history.borrow().last(), Some(&false), "{} must end off", led.name());
    }
}

/// Hands out its frames, then fails the way a bug does: by panicking.
struct PanicsWhenEmpty(VecDeque<image::GrayImage>);

impl FrameSource for PanicsWhenEmpty {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let image = self.0.pop_front().expect("the script ran out");
        Ok(Some(Frame { image, origin: "script".into() }))
    }
}

#[test]
fn a_verdict_shown_does_not_stay_lit_when_the_loop_dies() {
    let pipeline = Pipeline::new(Model::embedded().unwrap());
    let frame = render_cell(DEMO_CELLS[0].0, &pipeline.model.card.class_stats, 0).unwrap();
    let mut source = PanicsWhenEmpty(VecDeque::from([frame]));
    let levels: Vec<Rc<RefCell<Vec<bool>>>> = (0..6).map(|_| Rc::default()).collect();
    let mut panel = Panel::new(std::array::from_fn(|i| MockPin(levels[i].clone())), false).unwrap();
    let options = RunOptions { hold: 1, ..RunOptions::default() };
    let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&mut source, &pipeline, &mut panel, None, &options, &AtomicBool::new(false), &mut Seen::default())
    }));
    assert!(died.is_err(), "the source's panic ends the loop");
    let normal = &levels[Led::ALL.iter().position(|&l| l == Led::Normal).unwrap()];
    assert!(normal.borrow().contains(&true), "the verdict was shown before the loop died");
    for (led, history) in Led::ALL.iter().zip(&levels) {
        assert_eq!(history.borrow().last(), Some(&false), "{} must end off", led.name());
    }
}
