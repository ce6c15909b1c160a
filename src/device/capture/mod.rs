//! Where frames come from. Every source yields 8-bit gray frames behind one trait, so the run
//! loop does not care whether a camera, a folder or the demo feeds it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::GrayImage;

pub mod camera;

use crate::integrity::card::ClassStats;
use crate::tools::demo;

/// Frames larger than this on either side are refused before decoding.
pub const MAX_FRAME_SIDE: u32 = 8192;

/// Most memory one decoded frame may take (8192² RGBA, 4096² 16-bit RGBA).
pub const MAX_DECODE_BYTES: u64 = 256 << 20;

/// Most pixels a frame may have (4096 × 4096; microscope cameras give 0.3 to 12 MP). The
/// stages after decoding take about 16 bytes a pixel, so this bounds one frame's memory.
pub const MAX_FRAME_PIXELS: u64 = 4096 * 4096;

pub struct Frame {
    pub image: GrayImage,
    /// File name, camera device or demo index: what the record and messages name.
    pub origin: String,
}

/// Why a source gave no frame. The run loop acts differently on each: a bad frame is skipped,
/// a failed source is reopened with backoff while the fault LED blinks.
#[derive(Debug)]
pub enum CaptureError {
    /// This one frame cannot be used (not an image, truncated, too large); the next may be fine.
    Frame(anyhow::Error),
    /// The source itself failed (camera lost, folder gone).
    Source(anyhow::Error),
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureError::Frame(e) | CaptureError::Source(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for CaptureError {}

pub trait FrameSource {
    /// The next frame, or `None` when there is none (now, or ever: see `finished`).
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError>;

    /// True when no frame will ever come again. Sources that wait for frames (a watched
    /// folder) return `None` from `next_frame` after a short wait and stay unfinished.
    fn finished(&self) -> bool {
        true
    }

    /// After an error: open the device again and re-apply its settings.
    fn reopen(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Decodes PNG, JPEG, TIFF or BMP (any bit depth, gray or colour) to 8-bit gray. Only a
/// regular file is read (a FIFO would block, a device never end), at most
/// [`MAX_FRAME_FILE`](crate::integrity::input::MAX_FRAME_FILE) bytes.
pub fn load_frame(path: &Path) -> Result<Frame> {
    let bytes = crate::integrity::input::read_regular(path, crate::integrity::input::MAX_FRAME_FILE, "frame")?;
    frame_from_bytes(&bytes, &path.display().to_string())
}

/// `load_frame` on bytes already in memory (what the fuzz target feeds).
pub fn frame_from_bytes(bytes: &[u8], origin: &str) -> Result<Frame> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("{origin}: cannot read frame"))?;
    // JPEG decoders fill a cut-off scan with grey and say nothing: a frame still being written,
    // or cut short in transfer, would be analysed as if whole.
    if reader.format() == Some(image::ImageFormat::Jpeg) && !ends_with_jpeg_eoi(bytes) {
        anyhow::bail!(
            "{origin}: not a readable PNG, JPEG, TIFF or BMP image: truncated JPEG (no end-of-image marker: cut short or still being written)"
        );
    }
    decode_frame(reader, origin)
}

/// A whole JPEG ends with its end-of-image marker (FF D9), perhaps followed by padding bytes
/// (00 or FF) that some cameras append.
fn ends_with_jpeg_eoi(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0x00 && b != 0xFF).map_or(0, |i| i + 1);
    bytes[..end].ends_with(&[0xFF, 0xD9])
}

/// Decoded size and memory are bounded before anything is allocated, so a decompression
/// bomb or an absurd header is refused, not decoded.
fn decode_frame<R: std::io::BufRead + std::io::Seek>(mut reader: image::ImageReader<R>, origin: &str) -> Result<Frame> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_FRAME_SIDE);
    limits.max_image_height = Some(MAX_FRAME_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let too_large = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => anyhow::anyhow!(
            "{origin}: image too large: more than {MAX_FRAME_SIDE} pixels on a side or {} MiB decoded ({e})",
            MAX_DECODE_BYTES >> 20
        ),
        e => anyhow::Error::new(e).context(format!("{origin}: not a readable PNG, JPEG, TIFF or BMP image")),
    };
    let decoder = reader.into_decoder().map_err(too_large)?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    if width as u64 * height as u64 > MAX_FRAME_PIXELS {
        anyhow::bail!(
            "{origin}: image too large: {width}x{height} is more than the {} megapixels a frame may have",
            MAX_FRAME_PIXELS / 1_000_000
        );
    }
    let decoded = image::DynamicImage::from_decoder(decoder).map_err(too_large)?;
    if decoded.width() == 0 || decoded.height() == 0 {
        anyhow::bail!("{origin}: not a readable PNG, JPEG, TIFF or BMP image: it has no pixels");
    }
    Ok(Frame { image: decoded.to_luma8(), origin: origin.to_string() })
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
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        self.paths.next().map(|p| load_frame(&p)).transpose().map_err(CaptureError::Frame)
    }
}

/// A folder that microscope software saves images into: every new image file, in name
/// order, once; waits for more until stopped.
pub struct DirectorySource {
    dir: PathBuf,
    seen: std::collections::HashSet<PathBuf>,
    queue: std::collections::VecDeque<PathBuf>,
    poll: std::time::Duration,
    /// Finished after this long without a new file; `None` waits forever.
    idle_limit: Option<std::time::Duration>,
    last_file: std::time::Instant,
    /// Files that did not decode yet, with when they first failed: still being written, perhaps.
    unfinished: std::collections::HashMap<PathBuf, std::time::Instant>,
}

/// How long a file that does not decode is retried before it is skipped as unreadable: a
/// microscope program may take this long to finish writing a large frame.
const WRITE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "tif", "tiff", "bmp"];

pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

impl DirectorySource {
    pub fn new(dir: &Path, idle_limit: Option<std::time::Duration>) -> Result<DirectorySource> {
        if !dir.is_dir() {
            anyhow::bail!("{}: not a directory", dir.display());
        }
        Ok(DirectorySource {
            dir: dir.to_path_buf(),
            seen: Default::default(),
            queue: Default::default(),
            poll: std::time::Duration::from_millis(250),
            idle_limit,
            last_file: std::time::Instant::now(),
            unfinished: Default::default(),
        })
    }

    fn scan(&mut self) -> Result<()> {
        let mut fresh: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("{}: cannot list", self.dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_image_file(p) && !self.seen.contains(p))
            .collect();
        fresh.sort();
        for path in fresh {
            self.seen.insert(path.clone());
            self.queue.push_back(path);
        }
        Ok(())
    }
}

impl FrameSource for DirectorySource {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        if self.queue.is_empty() {
            self.scan().map_err(CaptureError::Source)?;
        }
        let Some(path) = self.queue.pop_front() else {
            std::thread::sleep(self.poll);
            return Ok(None);
        };
        self.last_file = std::time::Instant::now();
        // A file still being written fails to decode (a JPEG without its end yet): it goes to
        // the back of the queue until it decodes or WRITE_GRACE has passed.
        match load_frame(&path) {
            Ok(frame) => {
                self.unfinished.remove(&path);
                Ok(Some(frame))
            }
            Err(error) => {
                let first = *self.unfinished.entry(path.clone()).or_insert_with(std::time::Instant::now);
                if first.elapsed() >= WRITE_GRACE {
                    self.unfinished.remove(&path);
                    return Err(CaptureError::Frame(error));
                }
                self.queue.push_back(path);
                std::thread::sleep(self.poll);
                Ok(None)
            }
        }
    }

    fn finished(&self) -> bool {
        self.queue.is_empty() && self.idle_limit.is_some_and(|limit| self.last_file.elapsed() >= limit)
    }
}

/// The built-in demo cells, rendered from the model card's class statistics.
pub struct DemoSource<'a> {
    stats: &'a [ClassStats],
    next: usize,
    /// Round and round, each pass with fresh layouts (a demo stand, a soak test).
    cycle: bool,
}

impl<'a> DemoSource<'a> {
    /// The demo cells once each.
    pub fn new(stats: &'a [ClassStats]) -> DemoSource<'a> {
        DemoSource { stats, next: 0, cycle: false }
    }

    /// The demo cells again and again until the loop stops.
    pub fn cycling(stats: &'a [ClassStats]) -> DemoSource<'a> {
        DemoSource { stats, next: 0, cycle: true }
    }
}

impl FrameSource for DemoSource<'_> {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let cells = demo::DEMO_CELLS.len();
        if !self.cycle && self.next >= cells {
            return Ok(None);
        }
        let (karyotype, _) = demo::DEMO_CELLS[self.next % cells];
        let image = demo::render_cell(karyotype, self.stats, self.next as u64)
            .map_err(|e| CaptureError::Source(anyhow::anyhow!("demo frame {}: {e}", self.next)))?;
        self.next += 1;
        Ok(Some(Frame { image, origin: format!("demo {} ({karyotype})", self.next) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jpeg_still_being_written_waits_in_the_queue_until_it_is_whole() {
        let dir = std::env::temp_dir().join(format!("karyoscreen-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let image = GrayImage::from_fn(96, 64, |x, y| image::Luma([((x * 7 + y * 3) % 200 + 20) as u8]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode_image(&image).unwrap();
        let path = dir.join("frame.jpg");
        std::fs::write(&path, &jpeg[..jpeg.len() / 2]).unwrap();

        let mut source = DirectorySource::new(&dir, None).unwrap();
        assert!(matches!(source.next_frame(), Ok(None)), "half a JPEG is not a frame yet");
        assert!(!source.finished());
        std::fs::write(&path, &jpeg).unwrap();
        let frame = source.next_frame().unwrap().expect("the whole file is read once written");
        assert_eq!(frame.image.dimensions(), (96, 64));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
