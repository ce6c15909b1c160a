//! The cell page's pictures: the annotated frame and the karyogram, drawn by the code that draws
//! `analyze --report`, from the recorded cell with the objects as the latest review left them. The frame is
//! the one kept beside the record (`--record-frames`) or, failing that, the file the cell was
//! read from; either is used only if its pixels still have the recorded sha256.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::correct::{self, ReviewedObject, NOT_A_CHROMOSOME};
use crate::device::capture::load_frame;
use crate::integrity::frame_store::kept_frame;
use crate::integrity::record::frame_sha256;
use crate::pipeline::decide::Thresholds;
use crate::pipeline::{CellResult, ObjectResult};
use crate::tools::report::{annotated, karyogram};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picture {
    Annotated,
    Karyogram,
}

/// Where the recorded `cell`'s frame can be read, if anywhere.
pub fn frame_file(cell: &Value, kept: Option<&Path>) -> Option<PathBuf> {
    let sha256 = cell["frame_sha256"].as_str()?;
    kept.and_then(|dir| kept_frame(dir, sha256))
        .or_else(|| cell["origin"].as_str().map(PathBuf::from).filter(|p| p.is_file()))
}

/// The cell as the reviewer has it now: its objects, and the karyotype, verdict and reasons the
/// device's analysis reads from them (as recorded when nothing was corrected).
fn as_reviewed(cell: &Value, objects: &[ReviewedObject]) -> Result<CellResult> {
    let mut result: CellResult = serde_json::from_value(cell.clone()).context("the recorded cell cannot be read")?;
    let recorded = correct::objects_now(cell, None)?;
    if recorded == objects {
        return Ok(result);
    }
    let calls = correct::calls_now(&correct::calls(cell)?, objects)?;
    let (karyotype, decision) = correct::read(cell, &calls)?;
    let kept = objects.iter().filter(|o| o.label != NOT_A_CHROMOSOME);
    result.objects = kept
        .zip(calls)
        .map(|(o, call)| ObjectResult { bbox: o.bbox, split_from: None, call, mask: Vec::new() })
        .collect();
    result.count = result.objects.len();
    result.verdict = decision.verdict;
    result.karyotype = karyotype;
    result.karyotype_determined = true;
    result.reasons = decision.reasons;
    Ok(result)
}

/// `picture` of the recorded `cell` with `objects`, drawn on the frame in `frame`, as PNG.
pub fn render(cell: &Value, objects: &[ReviewedObject], frame: &Path, picture: Picture) -> Result<Vec<u8>> {
    let image = load_frame(frame)?.image;
    if Some(frame_sha256(&image).as_str()) != cell["frame_sha256"].as_str() {
        bail!("{}: the frame's pixels are not the ones recorded (sha256 differs)", frame.display());
    }
    let limits: Thresholds =
        serde_json::from_value(cell["thresholds"].clone()).context("the cell's recorded limits cannot be read")?;
    let result = as_reviewed(cell, objects)?;
    let drawn = match picture {
        Picture::Annotated => annotated(&image, &result, &limits),
        Picture::Karyogram => karyogram(&image, &result, &limits),
    };
    let mut png = Vec::new();
    drawn.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}
