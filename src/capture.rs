//! Where frames come from. Every source yields 8-bit gray frames behind one trait, so the run
//! loop does not care whether a camera, a folder or the demo feeds it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::GrayImage;

use crate::demo;
use crate::model::ClassStats;

/// Frames larger than this on either side are refused before decoding.
pub const MAX_FRAME_SIDE: u32 = 8192;

pub struct Frame {
    pub image: GrayImage,
    /// File name, camera device or demo index: what the record and messages name.
    pub origin: String,
}

pub trait FrameSource {
    /// The next frame, or `None` when the source is exhausted.
    fn next_frame(&mut self) -> Result<Option<Frame>>;
}

/// Decodes PNG, JPEG, TIFF or BMP (any bit depth, gray or colour) to 8-bit gray.
pub fn load_frame(path: &Path) -> Result<Frame> {
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open frame", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read frame", path.display()))?;
    let mut reader = reader;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_FRAME_SIDE);
    limits.max_image_height = Some(MAX_FRAME_SIDE);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .with_context(|| format!("{}: not a readable PNG, JPEG, TIFF or BMP image", path.display()))?;
    Ok(Frame { image: decoded.to_luma8(), origin: path.display().to_string() })
}

/// The files given, in order.
pub struct FileSource {
    paths: std::vec::IntoIter<PathBuf>,
}

impl FileSource {
    pub fn new(paths: Vec<PathBuf>) -> FileSource {
        FileSource { paths: paths.into_iter() }
    }
}

impl FrameSource for FileSource {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        self.paths.next().map(|p| load_frame(&p)).transpose()
    }
}

/// The built-in demo cells, rendered from the model card's class statistics.
pub struct DemoSource<'a> {
    stats: &'a [ClassStats],
    next: usize,
}

impl<'a> DemoSource<'a> {
    pub fn new(stats: &'a [ClassStats]) -> DemoSource<'a> {
        DemoSource { stats, next: 0 }
    }
}

impl FrameSource for DemoSource<'_> {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let Some((karyotype, _)) = demo::DEMO_CELLS.get(self.next) else {
            return Ok(None);
        };
        let image = demo::render_cell(karyotype, self.stats, self.next as u64)
            .map_err(|e| anyhow::anyhow!("demo frame {}: {e}", self.next))?;
        self.next += 1;
        Ok(Some(Frame { image, origin: format!("demo {} ({karyotype})", self.next) }))
    }
}
