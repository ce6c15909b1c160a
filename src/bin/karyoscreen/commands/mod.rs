//! One file per subcommand, each with its arguments and `exec`; the options several share are
//! here.

/// `println!` that returns a write error (a full disk, a closed pipe) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| anyhow::anyhow!("cannot write to standard output: {e}"))
    }};
}

pub mod adapt;
pub mod analyze;
pub mod bench;
pub mod case;
pub mod demo;
pub mod eval;
pub mod eval_frames;
pub mod import_karyograms;
pub mod model;
pub mod run;
pub mod serve;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use karyoscreen::device::capture::Frame;
use karyoscreen::integrity::bundle::Trust;
use karyoscreen::integrity::frame_store::FrameStore;
use karyoscreen::integrity::record::{RecordOptions, Recorder, DEFAULT_KEEP, DEFAULT_MAX_BYTES};
use karyoscreen::pipeline::infer::Model;
use karyoscreen::pipeline::segment::learned::Segmenter;
use karyoscreen::pipeline::{CellResult, Pipeline, Segmenting};

/// Which model runs, and whose signatures are accepted.
#[derive(Args, Debug)]
pub struct ModelArgs {
    /// Signed model bundle to use instead of the built-in one: the ONNX file, with
    /// `<stem>.card.json` and `<stem>.sig` beside it.
    #[arg(long, value_name = "MODEL.onnx")]
    pub model: Option<PathBuf>,
    /// How chromosomes are found in a frame: `classic` (thresholds, components, neck splits),
    /// `learned` (the signed segmentation network; docs/segmentation.md) or `auto` (classic
    /// where it finds a plausible count of whole, separate objects, else learned). Default: auto.
    #[arg(long, value_enum, value_name = "KIND")]
    pub segmenter: Option<SegmenterKind>,
    /// Signed segmenter bundle to use instead of the built-in one: the ONNX file, with
    /// `<stem>.card.json` and `<stem>.sig` beside it.
    #[arg(long, value_name = "SEGMENTER.onnx")]
    pub segmenter_model: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

#[derive(Args, Debug)]
pub struct TrustArgs {
    /// Also accept bundles signed by this ed25519 public key (a `.pub` file from
    /// `model keygen`); repeatable. The release key is always accepted.
    #[arg(long = "trusted-key", value_name = "KEY.pub")]
    pub trusted_keys: Vec<PathBuf>,
}

impl TrustArgs {
    pub fn trust(&self) -> Result<Trust> {
        Trust::with_key_files(&self.trusted_keys)
    }
}

/// Which segmenter finds the chromosomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SegmenterKind {
    Auto,
    Classic,
    Learned,
}

impl ModelArgs {
    /// The given model, or the built-in one. Keys given are checked either way: a key file
    /// that is not a public key is a mistake to report, not something to ignore.
    pub fn load(&self) -> Result<Model> {
        let trust = self.trust.trust()?;
        match &self.model {
            Some(path) => Model::from_path(path, &trust),
            None => Model::embedded(),
        }
    }

    /// The segmenting asked for: `auto` (the default) and `learned` use the given segmenter
    /// bundle or the built-in one.
    pub fn segmenting(&self) -> Result<Segmenting> {
        self.segmenting_adjusted(|_| {})
    }

    /// [`ModelArgs::segmenting`], with the segmenter network changed by `adjust` once loaded.
    pub fn segmenting_adjusted(&self, adjust: impl Fn(&mut Segmenter)) -> Result<Segmenting> {
        let trust = self.trust.trust()?;
        let network = || -> Result<Arc<Segmenter>> {
            let mut segmenter = match &self.segmenter_model {
                Some(path) => Segmenter::from_path(path, &trust)?,
                None => Segmenter::embedded()?,
            };
            adjust(&mut segmenter);
            Ok(Arc::new(segmenter))
        };
        Ok(match (self.segmenter, &self.segmenter_model) {
            (Some(SegmenterKind::Classic), Some(_)) => {
                anyhow::bail!("--segmenter-model is a learned segmenter: drop it or --segmenter classic")
            }
            (Some(SegmenterKind::Classic), None) => Segmenting::Classic,
            (Some(SegmenterKind::Learned), _) => Segmenting::Learned(network()?),
            (Some(SegmenterKind::Auto) | None, _) => Segmenting::Auto(network()?),
        })
    }

    /// The pipeline for these options: the model, and the segmenting asked for.
    pub fn pipeline(&self) -> Result<Pipeline> {
        Ok(Pipeline::new(self.load()?).with_segmenting(self.segmenting()?))
    }
}

/// The audit record.
#[derive(Args, Debug)]
pub struct RecordArgs {
    /// Append every analysed cell (and case verdict) as one JSON line to FILE, synced to disk
    /// before the result is shown.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Rotate the record (FILE → FILE.1 → …) before a line would take it past this size.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_BYTES, requires = "record",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub record_max_bytes: u64,
    /// Record files kept, FILE included; the oldest is dropped.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_KEEP as u64, requires = "record",
          value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub record_keep: u64,
    /// Keep each recorded cell's frame in DIR (as `<frame sha256>.png`) for the review station.
    #[arg(long, value_name = "DIR", requires = "record")]
    pub record_frames: Option<PathBuf>,
    /// Remove the oldest kept frames past this many MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512, requires = "record_frames",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub record_frames_max_mib: u64,
}

impl RecordArgs {
    pub fn open(&self) -> Result<Option<Recorder>> {
        let options = RecordOptions { max_bytes: self.record_max_bytes, keep: self.record_keep as usize };
        let Some(path) = self.record.as_deref() else { return Ok(None) };
        let mut recorder = Recorder::open_with(path, options)?;
        if let Some(dir) = &self.record_frames {
            recorder.keep_frames(FrameStore::open(dir, self.record_frames_max_mib << 20)?);
        }
        Ok(Some(recorder))
    }
}

/// Analyses one frame and records it before anything is shown: what callers print after this
/// returns comes after the record is on stable storage.
pub fn analyse_and_record(pipeline: &Pipeline, frame: &Frame, recorder: Option<&mut Recorder>) -> Result<CellResult> {
    let result = pipeline.analyse(&frame.image)?;
    if let Some(recorder) = recorder {
        recorder.cell(&frame.origin, &frame.image, &pipeline.model, &pipeline.thresholds, &result)?;
    }
    Ok(result)
}
