//! The cell page's pictures: the annotated frame and the karyogram, drawn by the code that draws
//! `analyze --report`, from the recorded cell with the reviewer's current classes. The frame is
//! the one kept beside the record (`--record-frames`) or, failing that, the file the cell was
//! read from; either is used only if its pixels still have the recorded sha256.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::correct;
use crate::device::capture::load_frame;
use crate::integrity::frame_store::kept_frame;
use crate::integrity::record::frame_sha256;
use crate::pipeline::decide::Thresholds;
use crate::pipeline::CellResult;
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

/// The cell as the reviewer has it now: objects marked not a chromosome left out, moved ones
/// relabelled, karyotype, verdict and reasons recomputed.
fn as_reviewed(cell: &Value, classes: &[String]) -> Result<CellResult> {
    let mut result: CellResult = serde_json::from_value(cell.clone()).context("the recorded cell cannot be read")?;
    let (kept, changes) = correct::apply(correct::calls(cell)?, classes)?;
    let mut objects = Vec::with_capacity(kept.len());
    for (i, call) in kept {
        let mut object = result.objects.get(i).context("the cell's objects and calls differ")?.clone();
        object.call = call;
        objects.push(object);
    }
    if !changes.is_empty() {
        // what the review line records for these classes
        let corrected = correct::recompute(cell, classes)?;
        result.verdict = serde_json::from_value(Value::from(corrected.verdict))?;
        result.karyotype = corrected.karyotype;
        result.karyotype_determined = true;
        result.reasons = corrected.reasons;
    }
    result.count = objects.len();
    result.objects = objects;
    Ok(result)
}

/// `picture` of the recorded `cell` with `classes`, drawn on the frame in `frame`, as PNG.
pub fn render(cell: &Value, classes: &[String], frame: &Path, picture: Picture) -> Result<Vec<u8>> {
    let image = load_frame(frame)?.image;
    if Some(frame_sha256(&image).as_str()) != cell["frame_sha256"].as_str() {
        bail!("{}: the frame's pixels are not the ones recorded (sha256 differs)", frame.display());
    }
    let limits: Thresholds =
        serde_json::from_value(cell["thresholds"].clone()).context("the cell's recorded limits cannot be read")?;
    let result = as_reviewed(cell, classes)?;
    let drawn = match picture {
        Picture::Annotated => annotated(&image, &result, &limits),
        Picture::Karyogram => karyogram(&image, &result, &limits),
    };
    let mut png = Vec::new();
    drawn.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}
